"""Client addresses and the networks the settings name (trusted proxies, the metrics
allow-list): IP addresses and CIDR blocks, IPv4 or IPv6."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache, lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

Network = IPv4Network | IPv6Network


@cache
def networks_parse(spec: tuple[str, ...]) -> tuple[Network, ...]:
    """ "10.0.0.0/8", "127.0.0.1", "::1": a host is a /32 (/128). Raises ValueError."""
    return tuple(ip_network(item.strip(), strict=False) for item in spec)


# A client's address is parsed once (every request's peer is checked: core.middleware).
@lru_cache(maxsize=4096)
def address_parse(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text.strip())
    except ValueError:
        return None


# How many leading bits of an IPv6 address name one client in the counts per address.
IPV6_CLIENT_PREFIX = 64


@lru_cache(maxsize=4096)
def client_bucket(address: str) -> str:
    """What a count per client address (failed logins, registrations, password-reset mails,
    the streams' connections and snapshots) counts `address` under: an IPv4 address itself;
    an IPv6 address by its /64 (the block's first address, itself a valid address: axes stores
    it in an IP column), as one subscriber or one rented server holds a whole /64: per
    address, such a client had a fresh count for each of 2^64 source addresses. An
    IPv4-mapped IPv6 address is its IPv4 address; text that is no address is kept as it is."""
    parsed = address_parse(address)
    if not isinstance(parsed, IPv6Address):
        return address
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False).network_address)


def address_in(address: str, spec: Iterable[str]) -> bool:
    """Whether `address` (text) lies in one of the networks of `spec` (a settings list)."""
    if not spec:  # no network: nothing to parse
        return False
    parsed = address_parse(address)
    return parsed is not None and any(parsed in network for network in networks_parse(tuple(spec)))


def forwarded_client(*, peer: str, forwarded_for: str, trusted: Iterable[str]) -> str:
    """The client behind a chain of proxies. X-Forwarded-For lists the addresses each proxy
    saw, the nearest last; walk it from the right while the hop is a trusted proxy. The first
    hop that is not trusted is the client; anything left of it was written by that client
    and proves nothing. An unreadable entry stops the walk at the proxy that added it."""
    spec = tuple(trusted)
    client = peer
    if not address_in(peer, spec):
        return peer
    for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
        if address_parse(hop) is None:
            break
        client = hop
        if not address_in(hop, spec):
            break
    return client
