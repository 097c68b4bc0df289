-- Deliveries by endpoint, newest first: how each endpoint is doing (sanad_partner_endpoints) is read from
-- its latest attempts every few seconds.
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id, created_at DESC);
