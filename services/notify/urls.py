"""Which webhook URLs Sanad may send to. Pure: the DNS lookup is handed in.

A stored URL must never become a way into the hotline's own network (a partner's server, or someone who
took over its DNS, pointing a name at 127.0.0.1, the database or a cloud metadata address). So a URL is
checked when it is registered and again before every send, and the address actually connected to is
checked once more by the sender (a name can resolve differently a moment later). Outside development
only https is accepted; private, loopback, link-local and other non-public addresses are refused unless
explicitly allowed (development and the tests run their receivers on loopback).
"""
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class UrlPolicy:
    require_https: bool
    allow_private: bool


class UnsafeUrl(ValueError):
    """A URL Sanad will not send to. `reason` is a stable code, safe to record and to count."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


class UnresolvableHost(ValueError):
    """The host has no address right now. Not a refusal: DNS may be briefly down or not yet updated."""


def check_url(url: str, policy: UrlPolicy, resolve) -> tuple:
    """Refuse (UnsafeUrl) a URL Sanad must not send to; return the addresses its host resolves to.

    `resolve(host, port)` returns the host's IP addresses as strings and raises OSError when it cannot.
    Raises UnresolvableHost when the host has no address."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl("malformed", f"a webhook URL is 1 to {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UnsafeUrl("malformed", "a webhook URL holds no spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise UnsafeUrl("scheme", "a webhook URL starts with https://")
    if parts.scheme == "http" and policy.require_https:
        raise UnsafeUrl("https_required", "webhook URLs must use https outside development")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("credentials", "a webhook URL must not carry a user name or password")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("no_host", "a webhook URL names a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeUrl("bad_port", "the webhook URL's port is not a valid port number") from None
    literal = _ip_or_none(host)
    if literal is not None:
        check_address(str(literal), policy)
        return (str(literal),)
    try:
        addresses = tuple(resolve(host, port))
    except OSError:
        raise UnresolvableHost(f"{host} does not resolve") from None
    if not addresses:
        raise UnresolvableHost(f"{host} does not resolve")
    for address in addresses:
        check_address(address, policy)
    return addresses


def check_address(address: str, policy: UrlPolicy) -> None:
    """Refuse (UnsafeUrl) an address that is not on the public internet, unless private ones are allowed."""
    ip = _ip_or_none(address)
    if ip is None:
        raise UnsafeUrl("malformed", "not an IP address")
    if policy.allow_private:
        return
    if not is_public(ip):
        raise UnsafeUrl("private_address", "the webhook URL leads to a private, loopback or reserved address")


def is_public(ip) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address written as IPv6 (::ffff:127.0.0.1) is that address; one tunnelled in 6to4 or
        # Teredo must be public as well as the IPv6 address carrying it.
        if ip.ipv4_mapped is not None:
            return is_public(ip.ipv4_mapped)
        embedded = ip.sixtofour or (ip.teredo and ip.teredo[1])
        if embedded is not None and not is_public(embedded):
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _ip_or_none(text):
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone index is not part of the address
    except ValueError:
        return None
