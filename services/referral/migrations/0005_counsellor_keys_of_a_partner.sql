-- A counsellor's key names the partner organisation they work for, and moves only its referrals; a
-- supervisor's and an admin's name none. Counsellors' keys issued before name none: they still open
-- the calls they did, but change no referral until a new one is issued with --partner-id.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_partner_by_role CHECK (
    CASE role WHEN 'partner' THEN partner_id IS NOT NULL WHEN 'counsellor' THEN true ELSE partner_id IS NULL END
);
