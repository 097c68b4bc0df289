"""Whose address a request is from, behind reverse proxies or not: what the login limit and the audit log
count by."""
from types import SimpleNamespace

import pytest

from sanad.platform.http import client_address
from sanad.settings import from_environment

PROXIES = from_environment({"SANAD_TRUSTED_PROXIES": "10.0.0.2, 172.18.0.0/16"}).trusted_proxies


def request(peer, forwarded=None):
    return SimpleNamespace(remote_addr=peer, headers={"X-Forwarded-For": forwarded} if forwarded else {})


@pytest.mark.parametrize("peer,forwarded,client", [
    ("10.0.0.2", "203.0.113.9", "203.0.113.9"),                     # one trusted proxy
    ("172.18.0.1", "203.0.113.9, 10.0.0.2", "203.0.113.9"),         # a chain of trusted proxies
    ("10.0.0.2", "1.2.3.4, 203.0.113.9", "203.0.113.9"),            # what the client wrote itself is ignored
    ("10.0.0.2", None, "10.0.0.2"),                                 # a proxy that forwarded nothing
    ("10.0.0.2", "203.0.113.9, not-an-address", "10.0.0.2"),        # a garbled header: the proxy is all we know
    ("198.51.100.7", "203.0.113.9", "198.51.100.7"),                # not a proxy we trust: the header is a lie
])
def test_behind_trusted_proxies_the_client_is_the_nearest_address_they_did_not_add(peer, forwarded, client):
    assert client_address(request(peer, forwarded), PROXIES) == client


def test_with_no_proxy_trusted_the_forwarded_header_is_ignored():
    assert from_environment({}).trusted_proxies == ()
    assert client_address(request("10.0.0.2", "203.0.113.9")) == "10.0.0.2"


def test_a_trusted_proxy_setting_that_is_not_an_address_is_refused_naming_the_variable():
    with pytest.raises(ValueError, match="SANAD_TRUSTED_PROXIES"):
        from_environment({"SANAD_TRUSTED_PROXIES": "10.0.0.2, the-proxy"})
