"""Which URLs notify may send to: https outside development, no credentials, and no private, loopback,
link-local or otherwise non-public address, whether written out or reached through a name."""
import pytest

from services.notify.urls import UnresolvableHost, UnsafeUrl, UrlPolicy, check_address, check_url

PRODUCTION = UrlPolicy(require_https=True, allow_private=False)
DEVELOPMENT = UrlPolicy(require_https=False, allow_private=True)


def resolver(table):
    """A DNS of our own: {host: [addresses]}; a missing host does not resolve."""
    def resolve(host, port):
        if host not in table:
            raise OSError("no such host")
        return table[host]
    return resolve


GOOD_DNS = resolver({"partner.example.org": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})


def test_an_https_url_of_a_public_host_is_accepted_and_its_addresses_returned():
    assert check_url("https://partner.example.org/hooks/sanad", PRODUCTION, GOOD_DNS) == (
        "93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")


def test_a_public_ip_literal_is_accepted_without_asking_dns():
    def no_dns(host, port):
        raise AssertionError("an address needs no lookup")
    assert check_url("https://93.184.215.14:8443/hook", PRODUCTION, no_dns) == ("93.184.215.14",)


def test_plain_http_is_refused_outside_development_and_accepted_in_it():
    with pytest.raises(UnsafeUrl) as refused:
        check_url("http://partner.example.org/hook", PRODUCTION, GOOD_DNS)
    assert refused.value.reason == "https_required"
    check_url("http://partner.example.org/hook", UrlPolicy(require_https=False, allow_private=False), GOOD_DNS)


@pytest.mark.parametrize("url,reason", [
    ("ftp://partner.example.org/hook", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "scheme"),
    ("https://user:secret@partner.example.org/hook", "credentials"),
    ("https:///hook", "no_host"),
    ("https://partner.example.org:99999/hook", "bad_port"),
    ("https://partner.example.org/ho ok", "malformed"),
    ("https://partner.example.org/\r\nX-Injected: 1", "malformed"),
    ("", "malformed"),
    ("https://partner.example.org/" + "a" * 3000, "malformed"),
], ids=["ftp", "file", "gopher", "credentials", "no-host", "bad-port", "space", "header-injection", "empty",
        "too-long"])
def test_urls_that_are_not_plain_web_addresses_are_refused(url, reason):
    with pytest.raises(UnsafeUrl) as refused:
        check_url(url, PRODUCTION, GOOD_DNS)
    assert refused.value.reason == reason


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.0.0.5", "172.16.3.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1",
    "::ffff:127.0.0.1", "::ffff:10.1.2.3", "2002:7f00:1::1", "ff02::1", "fe80::1%eth0",
], ids=lambda a: a)
def test_private_loopback_link_local_and_reserved_addresses_are_refused(address):
    with pytest.raises(UnsafeUrl) as refused:
        check_address(address, PRODUCTION)
    assert refused.value.reason == "private_address"


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_accepted(address):
    check_address(address, PRODUCTION)


def test_a_name_that_resolves_to_a_private_address_is_refused():
    dns = resolver({"partner.example.org": ["127.0.0.1"]})
    with pytest.raises(UnsafeUrl) as refused:
        check_url("https://partner.example.org/hook", PRODUCTION, dns)
    assert refused.value.reason == "private_address"


def test_a_name_with_one_private_address_among_public_ones_is_refused():
    dns = resolver({"partner.example.org": ["93.184.215.14", "10.0.0.7"]})
    with pytest.raises(UnsafeUrl):
        check_url("https://partner.example.org/hook", PRODUCTION, dns)


@pytest.mark.parametrize("url", ["https://127.0.0.1/hook", "https://[::1]:8443/hook", "https://10.0.0.7/hook"])
def test_a_private_ip_literal_is_refused(url):
    with pytest.raises(UnsafeUrl):
        check_url(url, PRODUCTION, GOOD_DNS)


def test_private_addresses_are_accepted_only_when_explicitly_allowed():
    dns = resolver({"localhost": ["127.0.0.1"]})
    assert check_url("http://localhost:9000/hook", DEVELOPMENT, dns) == ("127.0.0.1",)
    check_address("10.0.0.7", DEVELOPMENT)


def test_a_host_that_does_not_resolve_is_told_apart_from_a_refusal():
    with pytest.raises(UnresolvableHost):
        check_url("https://nowhere.example.org/hook", PRODUCTION, GOOD_DNS)
    with pytest.raises(UnresolvableHost):
        check_url("https://partner.example.org/hook", PRODUCTION, resolver({"partner.example.org": []}))


def test_unresolvable_is_not_a_kind_of_refusal():
    assert not issubclass(UnresolvableHost, UnsafeUrl)
