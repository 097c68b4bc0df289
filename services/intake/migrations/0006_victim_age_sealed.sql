-- The victim's exact age, sealed with the data key ring under "case:<id>:victim_age" as the other personal
-- fields are (the age band stays in the clear, for statistics). Cases recorded before this migration keep
-- it in the clear in `victim_age` until `sanad keys reseal` seals it; no new row writes that column.
ALTER TABLE cases ADD COLUMN victim_age_sealed text;
