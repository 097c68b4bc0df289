-- What the victim asked of her helpers (her exact age among it), sealed with the data key ring under
-- "case:<id>:preferences". Rows assessed before this migration keep it in the clear in `preferences` until
-- `sanad keys reseal` seals it; no new row writes that column.
ALTER TABLE assessments ADD COLUMN preferences_sealed text;
