"""Small helpers for kombu connections shared by the outbox relay and the health probe."""


def release_quietly(connection):
    """Release a connection that may already be broken; closing a dead one can fail, and it is gone either
    way. Returns None, for `self.connection = release_quietly(self.connection)`."""
    if connection is not None:
        try:
            connection.release()
        except Exception:  # noqa: BLE001 -- see the docstring
            pass
    return None
