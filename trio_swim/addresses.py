"""Parsing and formatting of member addresses.

A member is identified by the address it listens on, written ``host:port`` for
IPv4 and ``[host]:port`` for IPv6. Every address inside trio_swim is kept in
this canonical text form, so two spellings of one endpoint never become two
members.
"""

from __future__ import annotations

import ipaddress
import re

DEFAULT_PORT = 9999

# Canonical IPv4 ``a.b.c.d:port`` (no leading zeros, port 1..65535): checked
# without a parse, as every address heard from the network is.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_CANONICAL_V4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}:{_PORT}")


class AddressError(ValueError):
    """An address string that is not ``host``, ``host:port`` or ``[v6]:port``."""


def split_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """Split ``host:port``, ``[v6]:port``, ``host`` or a bare IPv6 address.

    The host is returned without brackets; it may be a name (``localhost``)
    that still needs resolving. A missing port becomes ``default_port``.
    """
    text = text.strip()
    if not text:
        raise AddressError("empty address")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise AddressError(f"{text!r}: missing ']'")
        host = text[1:close]
        rest = text[close + 1 :]
        if rest == "":
            port = default_port
        elif rest.startswith(":"):
            port = _parse_port(text, rest[1:])
        else:
            raise AddressError(f"{text!r}: expected ':port' after ']'")
        _check_ipv6(text, host)
        return host, port
    if text.count(":") > 1:
        # A bare IPv6 address, without a port.
        _check_ipv6(text, text)
        return text, default_port
    host, sep, port_text = text.partition(":")
    if not host:
        raise AddressError(f"{text!r}: missing host")
    port = _parse_port(text, port_text) if sep else default_port
    if any(c.isspace() for c in host):
        raise AddressError(f"{text!r}: host has white space")
    return host, port


def format_address(host: str, port: int) -> str:
    """Write an address in canonical form (IPv6 hosts in brackets)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"{host}:{port}"
    if ip.version == 6:
        return f"[{ip.compressed}]:{port}"
    return f"{ip}:{port}"


def canonical_address(text: str, default_port: int = DEFAULT_PORT) -> str:
    """Parse and re-format ``text``; raise :class:`AddressError` if malformed."""
    host, port = split_address(text, default_port)
    return format_address(host, port)


def is_ip_literal(host: str) -> bool:
    """True if ``host`` is an IPv4 or IPv6 address rather than a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_canonical_ip_address(text: str) -> bool:
    """True if ``text`` is an IP literal address in canonical form.

    Used on addresses heard from the network: anything else (names, odd
    spellings, garbage) is refused rather than added to the member table.
    """
    if _CANONICAL_V4.fullmatch(text):
        return True
    if not text.startswith("["):
        return False
    try:
        host, port = split_address(text)
    except AddressError:
        return False
    return is_ip_literal(host) and format_address(host, port) == text and port > 0


def _parse_port(text: str, port_text: str) -> int:
    if not port_text.isdigit():
        raise AddressError(f"{text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise AddressError(f"{text!r}: port must be 0..65535")
    return port


def _check_ipv6(text: str, host: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise AddressError(f"{text!r}: {host!r} is not an IPv6 address") from None
