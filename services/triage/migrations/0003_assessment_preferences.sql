-- What the victim asked of whoever helps her (her age, a counsellor's gender, whether her family may be
-- contacted), as case.received brought it: an override's case.triaged carries it on, so that referral
-- never matches an overridden case as if she had asked nothing. Blanked by `sanad purge`.
ALTER TABLE assessments ADD COLUMN preferences jsonb;
