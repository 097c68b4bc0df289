-- Each endpoint's latest attempts, for the failing-endpoint gauge (ENDPOINT_STATES): read from this index
-- instead of joining a week of the endpoint's deliveries with their attempts every few seconds, a cost
-- that grew with every webhook.
ALTER TABLE delivery_attempts ADD COLUMN endpoint_id uuid;
UPDATE delivery_attempts a SET endpoint_id = d.endpoint_id FROM deliveries d WHERE d.id = a.delivery_id;
ALTER TABLE delivery_attempts ALTER COLUMN endpoint_id SET NOT NULL;
CREATE INDEX delivery_attempts_latest_by_endpoint ON delivery_attempts (endpoint_id, attempted_at DESC);
