"""Unit tier: pure logic only. These tests touch no broker, no database and no network; time, randomness
and files are handed in (a fixed `now`, an injected random, pytest's tmp_path). The guard below turns
any attempt to open a connection into a failure, so a test that strays out of the tier says so."""
import socket
from datetime import datetime, timezone

import psycopg2
import pytest


class ConnectionRefusedInUnitTier(AssertionError):
    pass


def _refuse(*args, **kwargs):
    raise ConnectionRefusedInUnitTier("unit tests must not open connections; move this test to a higher tier")


@pytest.fixture(autouse=True)
def no_connections(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(psycopg2, "connect", _refuse)


@pytest.fixture
def now():
    """A fixed, timezone-aware moment, so schedules computed from it are exact."""
    return datetime(2024, 3, 10, 9, 30, tzinfo=timezone.utc)
