"""Nameko plumbing every service needs: PostgreSQL, the outbox and its relay, idempotent event
handling with dead letters, metrics, health and JSON HTTP errors. No domain logic lives here."""
