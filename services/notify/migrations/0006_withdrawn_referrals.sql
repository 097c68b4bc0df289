-- Referrals referral withdrew (referral.status_changed to withdrawn): the webhook offering one is no longer
-- tried (its delivery is set 'cancelled'), replayed, or, should the withdrawal arrive first, sent at all.
CREATE TABLE withdrawn_referrals (
    referral_id   uuid PRIMARY KEY,
    withdrawn_at  timestamptz NOT NULL
);
-- A referral's deliveries (its offer, and the pages about it), for cancelling the offer when it is withdrawn.
CREATE INDEX deliveries_by_referral ON deliveries (referral_id);
