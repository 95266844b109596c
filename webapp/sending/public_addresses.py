"""Which addresses are the public internet: the media probe connects to no other."""

from __future__ import annotations

import ipaddress

# Our own table of addresses that are not the public internet, rather than trusting
# ipaddress.is_global alone: Python 3.11's tables were wrong for some ranges until later
# patch releases (CVE-2024-4032). IANA special-purpose registries, IPv4 and IPv6.
_NOT_PUBLIC_V4 = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24",
    "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4"))
_NOT_PUBLIC_V6 = tuple(ipaddress.ip_network(n) for n in (
    "::/96",  # unspecified, loopback and the deprecated IPv4-compatible addresses
    "::ffff:0:0/96", "::ffff:0:0:0/96",  # IPv4-mapped, and SIIT's IPv4-translated
    "64:ff9b:1::/48",  # local-use NAT64
    "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16",
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, where a translator on the way may
    deliver to them: mapped, compatible, SIIT, NAT64, 6to4 and Teredo."""
    found: list[ipaddress.IPv4Address] = []
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 in (0, 0xFFFF, 0xFFFF0000) or ip in _NAT64:
        found.append(low32)
    if ip in _SIX_TO_FOUR:
        found.append(ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF))
    if ip.teredo:
        found.extend(ip.teredo)
    return found


def _is_public_v4(ip: ipaddress.IPv4Address) -> bool:
    return ip.is_global and not any(ip in network for network in _NOT_PUBLIC_V4)


def is_public(address: str) -> bool:
    """Whether an address (IPv4 or IPv6, zone allowed) is on the public internet."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _is_public_v4(ip)
    if any(not _is_public_v4(embedded) for embedded in _embedded_ipv4(ip)):
        return False
    if ip in _NAT64 or ip in _SIX_TO_FOUR:  # translated: its IPv4 address decides
        return True
    return (ip.is_global and not ip.is_multicast
            and not any(ip in network for network in _NOT_PUBLIC_V6))
