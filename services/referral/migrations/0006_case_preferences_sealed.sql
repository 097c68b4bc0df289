-- What the victim asked of her helpers (her exact age among it), sealed with the data key ring under
-- "case:<id>:preferences". Cases recorded before this migration keep it in the clear in `preferences`
-- until `sanad keys reseal` seals it or the case is triaged again; no new row writes that column.
ALTER TABLE cases ADD COLUMN preferences_sealed text;
