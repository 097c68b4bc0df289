"""The four Sanad services: intake, triage, referral, notify. Each owns one PostgreSQL schema."""
