-- What the victim asked of whoever helps her, from the case's latest case.triaged: a re-offer (after a
-- decline, a missed deadline or a failed delivery) is matched on it as the first offer was, so a girl
-- of 15 is never re-offered to a shelter for adults. Blanked by `sanad purge`.
ALTER TABLE cases ADD COLUMN preferences jsonb;
