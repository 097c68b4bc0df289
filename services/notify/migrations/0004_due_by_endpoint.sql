-- The endpoints with deliveries waiting, and each one's oldest: CLAIM_DUE skips through this index one
-- endpoint at a time instead of ranking every pending delivery of the lane at every claim.
CREATE INDEX deliveries_pending_by_endpoint ON deliveries (lane, endpoint_id, next_attempt_at) WHERE status = 'pending';
