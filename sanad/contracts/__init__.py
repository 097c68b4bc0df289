"""Event contracts shared by every service: the envelope, the versioned payload schemas, the vocabulary,
and the routing (which queue hears which event). No domain logic lives here."""
