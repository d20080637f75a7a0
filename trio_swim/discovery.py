"""Multicast discovery: members of one cluster on a link find each other unaided.

With ``Config.multicast_enabled``, the member runs discovery in its nursery.
Discovery joins the group ``multicast_address:multicast_port`` on the
interface that owns ``listen_ip``, announces the member once at start and then
every ``multicast_announce_interval`` seconds (0: only at start), and passes
every datagram it hears on the group to the member's protocol core.

An announcement is an ordinary packet (protocol version, cluster name, sender
address) holding one :class:`~trio_swim.wire.Announce`, so the rules of the
unicast path apply unchanged: a packet of another cluster, of a newer protocol
version, too large, or that does not decode is dropped and counted in
``Member.statistics()``; an announcer of this cluster that the member does not
know yet is sent a full-state exchange, after which each knows the other. The
member's own announcements, looped back by the kernel, are recognised by their
exact bytes and ignored. Discovery traffic is included in the member's packet
and byte counters (its own looped-back announcements are not); a failed
announcement counts as a send error.

Several members on one host share the group port: the socket sets
``SO_REUSEADDR`` before binding the group address, which on Linux and on BSD
stacks lets any number of sockets bind the same multicast ``address:port`` and
gives each of them a copy of every datagram. ``SO_REUSEPORT`` is not set: on
Linux it would let only sockets of one user share the port.

Announcements go out with a TTL (hop limit) of 1, so they never leave the link,
and the default groups are scoped to match: ``239.255.90.90`` lies in the IPv4
organisation-local scope (RFC 2365) and ``ff02::5357`` has IPv6 link-local
scope. Linux's loopback interface carries IPv4 multicast but not IPv6
multicast, so IPv6 discovery needs ``listen_ip`` on a real or virtual ethernet
interface; a cluster on ``::1`` is joined through ``initial_hosts``.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Final

import trio

from .addresses import format_address
from .config import Config, ConfigError

DEFAULT_GROUP_V4: Final = "239.255.90.90"
"""Group joined when ``multicast_address`` is empty and ``listen_ip`` is IPv4."""
DEFAULT_GROUP_V6: Final = "ff02::5357"
"""Group joined when ``multicast_address`` is empty and ``listen_ip`` is IPv6."""

# Hop limit of announcements: one link, never routed.
_HOPS: Final = 1
# Linux lists every IPv6 address here with the index of its interface.
_IF_INET6: Final = Path("/proc/net/if_inet6")

_SockAddr = tuple[str, int] | tuple[str, int, int, int]


def multicast_group(config: Config) -> str:
    """The group a member with ``config`` joins: the configured one, else its family's default."""
    if config.multicast_address:
        return config.multicast_address
    return DEFAULT_GROUP_V6 if _is_ipv6(config.listen_ip) else DEFAULT_GROUP_V4


class MulticastSocket:
    """A UDP socket bound to a multicast group and joined on one interface.

    Made by :func:`open_multicast_socket`. What it sends goes to the group on
    that interface, and the kernel loops a copy back to every socket of this
    host joined there, this one included.
    """

    def __init__(self, sock: trio.socket.SocketType, target: _SockAddr) -> None:
        self._sock = sock
        self._target = target

    @property
    def group_address(self) -> str:
        """The group as ``host:port`` (``[v6]:port`` for IPv6)."""
        return format_address(self._target[0], self._target[1])

    async def send(self, data: bytes) -> bool:
        """Send one datagram to the group; False if the system refused it."""
        try:
            await self._sock.sendto(data, self._target)
        except OSError:
            return False
        return True

    async def receive(self, max_bytes: int) -> bytes:
        """Wait for the next datagram heard on the group, cut to ``max_bytes``."""
        return (await self.receive_from(max_bytes))[0]

    async def receive_from(self, max_bytes: int) -> tuple[bytes, str]:
        """The next datagram heard on the group and its source ``host:port``."""
        data, source = await self._sock.recvfrom(max_bytes)
        return data, format_address(source[0], source[1])

    def close(self) -> None:
        """Close the socket (which leaves the group)."""
        self._sock.close()


def open_multicast_socket(listen_ip: str, group: str, port: int) -> MulticastSocket:
    """Join ``group:port`` on the interface that owns ``listen_ip``.

    The socket is bound to the group address itself, so it hears that group
    only; it shares the port with other sockets of this host, loops its own
    sends back to them, and sends with a hop limit of 1. Raises
    :class:`ValueError` if ``group`` and ``listen_ip`` differ in family, and
    :class:`OSError` naming the group and interface address when the system
    refuses (no such local address, port held exclusively elsewhere, ...).
    """
    v6 = _is_ipv6(listen_ip)
    if _is_ipv6(group) != v6:
        raise ValueError(f"multicast group {group!r} is not in the family of {listen_ip!r}")
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        target = (
            _join_v6(sock, listen_ip, group, port) if v6 else _join_v4(sock, listen_ip, group, port)
        )
    except OSError as exc:
        sock.close()
        where = format_address(group, port)
        raise OSError(
            exc.errno, f"cannot join multicast group {where} via {listen_ip}: {exc.strerror}"
        ) from None
    return MulticastSocket(trio.socket.from_stdlib_socket(sock), target)


def _join_v4(sock: socket.socket, listen_ip: str, group: str, port: int) -> _SockAddr:
    interface = socket.inet_aton(listen_ip)
    sock.bind((group, port))
    sock.setsockopt(
        socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + interface
    )
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, _HOPS)
    return (group, port)


def _join_v6(sock: socket.socket, listen_ip: str, group: str, port: int) -> _SockAddr:
    index = interface_index(listen_ip)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if index:
        # A link-scoped group address means nothing without its interface.
        sock.bind((group, port, 0, index))
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    else:
        sock.bind(("::", port, 0, 0))
    membership = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, membership)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, _HOPS)
    return (group, port, 0, index)


def interface_index(ip: str) -> int:
    """Index of the interface that holds the IPv6 address ``ip``; 0 if unknown.

    A scoped address (``fe80::1%eth0``) names its interface. Otherwise the
    address is looked up in Linux's ``/proc/net/if_inet6``. Elsewhere, or for
    an address no interface holds, the answer is 0: the kernel then picks the
    interface from its routes.
    """
    address, _, scope = ip.partition("%")
    if scope:
        try:
            return int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
        except OSError:
            return 0
    try:
        wanted = ipaddress.IPv6Address(address)
        lines = _IF_INET6.read_text().splitlines()
    except (ValueError, OSError):
        return 0
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and ipaddress.IPv6Address(int(fields[0], 16)) == wanted:
            return int(fields[1], 16)
    return 0


def open_discovery_socket(config: Config) -> MulticastSocket:
    """Join the multicast group of ``config`` now, before the member starts.

    Opening first makes a refused socket an :class:`OSError` from
    ``open_member`` itself, and a group of the other family than
    ``listen_ip`` a :class:`ConfigError`.
    """
    group = multicast_group(config)
    if _is_ipv6(group) != _is_ipv6(config.listen_ip):
        family = "IPv6" if _is_ipv6(config.listen_ip) else "IPv4"
        raise ConfigError(
            f"multicast_address={group!r}: must be an {family} group, as listen_ip "
            f"{config.listen_ip!r} is"
        )
    return open_multicast_socket(config.listen_ip, group, config.multicast_port)


async def run_discovery(
    sock: MulticastSocket,
    announcement: bytes,
    *,
    interval: float,
    max_packet_bytes: int,
    deliver: Callable[[bytes, str], None],
    count_send: Callable[[int | None], None],
) -> None:
    """Announce on ``sock`` and hand every other datagram heard there, with its
    source address, to ``deliver``.

    ``announcement`` goes out at once and then every ``interval`` seconds
    (0: only at start); ``count_send`` is told the size of each one sent, or
    None when the system refused it. Runs until cancelled, then closes
    ``sock`` (also when cancelled before it first ran).
    """
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_listen, sock, announcement, max_packet_bytes, deliver)
            nursery.start_soon(_announce, sock, announcement, interval, count_send)
    finally:
        sock.close()


async def _announce(
    sock: MulticastSocket,
    announcement: bytes,
    interval: float,
    count_send: Callable[[int | None], None],
) -> None:
    while True:
        count_send(len(announcement) if await sock.send(announcement) else None)
        if interval <= 0:
            return
        await trio.sleep(interval)


async def _listen(
    sock: MulticastSocket,
    announcement: bytes,
    max_packet_bytes: int,
    deliver: Callable[[bytes, str], None],
) -> None:
    # One byte over the limit, so an oversized datagram is seen (and counted)
    # as oversized rather than cut to a plausible length.
    while True:
        data, source = await sock.receive_from(max_packet_bytes + 1)
        if data != announcement:
            deliver(data, source)


def _is_ipv6(ip: str) -> bool:
    return ":" in ip
