-- Each partner's open referrals (offered, accepted, in progress), which matching ranks partners by.
--
-- Counting them at every match read every open referral of every candidate partner, a cost that grew with
-- each offer a partner had not yet answered: in a surge, exactly when matching must be quick. Instead a
-- trigger notes each change (+1 when a referral opens, -1 when it closes) as a row of its own in the same
-- transaction, and a timer folds those rows into partner_load every second. Only inserts happen at
-- referral time, so concurrent referrals to one partner never wait for each other's row lock (a critical
-- case's offer would otherwise queue behind the backlog's). The open count is partner_load.open_referrals
-- plus the partner's unfolded changes.
CREATE TABLE partner_load (
    partner_id      uuid PRIMARY KEY REFERENCES partners (id) ON DELETE CASCADE,
    open_referrals  integer NOT NULL DEFAULT 0
);
CREATE TABLE partner_load_changes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id  uuid    NOT NULL,
    change      integer NOT NULL
);
CREATE INDEX partner_load_changes_by_partner ON partner_load_changes (partner_id);

INSERT INTO partner_load (partner_id, open_referrals)
SELECT p.id, (SELECT count(*) FROM referrals r
              WHERE r.partner_id = p.id AND r.status IN ('offered', 'accepted', 'in_progress'))
FROM partners p;

CREATE FUNCTION note_partner_load() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_open boolean := TG_OP <> 'INSERT' AND OLD.status IN ('offered', 'accepted', 'in_progress');
    is_open  boolean := TG_OP <> 'DELETE' AND NEW.status IN ('offered', 'accepted', 'in_progress');
BEGIN
    IF was_open AND (NOT is_open OR OLD.partner_id IS DISTINCT FROM NEW.partner_id) THEN
        INSERT INTO partner_load_changes (partner_id, change) VALUES (OLD.partner_id, -1);
    END IF;
    IF is_open AND (NOT was_open OR OLD.partner_id IS DISTINCT FROM NEW.partner_id) THEN
        INSERT INTO partner_load_changes (partner_id, change) VALUES (NEW.partner_id, 1);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER referrals_partner_load AFTER INSERT OR UPDATE OF status, partner_id OR DELETE ON referrals
FOR EACH ROW EXECUTE FUNCTION note_partner_load();

CREATE FUNCTION open_partner_load() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO partner_load (partner_id) VALUES (NEW.id);
    RETURN NULL;
END $$;

CREATE TRIGGER partners_load AFTER INSERT ON partners FOR EACH ROW EXECUTE FUNCTION open_partner_load();
