"""How members exchange datagrams: the Transport protocol and UDP over trio.socket."""

from __future__ import annotations

import errno
import socket
from typing import Protocol

import trio

from .addresses import AddressError, format_address, split_address

_RECEIVE_BYTES = 65_536
# Parsed destination addresses and formatted source addresses kept; each cache
# is cleared when it fills.
_ADDRESS_CACHE_LIMIT = 4096


class Transport(Protocol):
    """A datagram endpoint. Sends are best effort; nothing here raises on loss."""

    @property
    def local_address(self) -> str:
        """The ``host:port`` this endpoint is bound to."""
        ...

    async def send(self, data: bytes, address: str) -> bool:
        """Send one datagram; False if it could not be handed to the network."""
        ...

    def send_nowait(self, data: bytes, address: str) -> bool | None:
        """Send one datagram now if that needs no waiting: True if sent, False
        if refused (as :meth:`send`), None if it would block (use :meth:`send`)."""
        ...

    async def receive(self) -> tuple[bytes, str]:
        """Wait for the next datagram: (data, source address)."""
        ...

    async def resolve(self, text: str) -> str:
        """Turn ``host[:port]`` (a name or an IP) into a canonical IP address."""
        ...

    def close(self) -> None:
        """Release the endpoint."""
        ...


class UdpTransport:
    """A bound UDP socket (IPv4 or IPv6)."""

    def __init__(self, sock: socket.socket) -> None:
        # One socket: the trio wrapper waits for datagrams, and the plain
        # (non-blocking) one sends at once when it can.
        self._raw = sock
        self._sock = trio.socket.from_stdlib_socket(sock)
        self._family = sock.family
        host, port = sock.getsockname()[:2]
        self._local_address = format_address(host, port)
        self._targets: dict[str, tuple[str, int]] = {}
        # Source addresses seen, as canonical text: formatting one parses the IP.
        self._sources: dict[tuple[str, int], str] = {}
        self.send_errors = 0

    @property
    def local_address(self) -> str:
        """The ``host:port`` actually bound (so port 0 shows the chosen port)."""
        return self._local_address

    async def send(self, data: bytes, address: str) -> bool:
        """Send one datagram; errors (unreachable, refused, bad address) are counted."""
        target = self._target(address)
        if target is None:
            return False
        try:
            await self._sock.sendto(data, target)
        except OSError:
            self.send_errors += 1
            return False
        return True

    def send_nowait(self, data: bytes, address: str) -> bool | None:
        """Send one datagram if the socket can take it now (None: it would block)."""
        target = self._target(address)
        if target is None:
            return False
        try:
            self._raw.sendto(data, target)
        except BlockingIOError:
            return None
        except OSError:
            self.send_errors += 1
            return False
        return True

    def _target(self, address: str) -> tuple[str, int] | None:
        target = self._targets.get(address)
        if target is None:
            try:
                target = split_address(address)
            except AddressError:
                self.send_errors += 1
                return None
            if len(self._targets) >= _ADDRESS_CACHE_LIMIT:
                self._targets.clear()
            self._targets[address] = target
        return target

    async def receive(self) -> tuple[bytes, str]:
        """Next datagram; ICMP errors reported on the socket are skipped."""
        while True:
            try:
                data, source = await self._sock.recvfrom(_RECEIVE_BYTES)
            except OSError:
                continue
            key = (source[0], source[1])
            text = self._sources.get(key)
            if text is None:
                if len(self._sources) >= _ADDRESS_CACHE_LIMIT:
                    self._sources.clear()
                # A link-local source carries its zone (fe80::1%eth0); members
                # are known by the address alone.
                host = source[0].partition("%")[0]
                text = self._sources[key] = format_address(host, source[1])
            return data, text

    async def resolve(self, text: str) -> str:
        """Resolve a name (e.g. ``localhost:9999``) in this socket's family."""
        host, port = split_address(text)
        try:
            infos = await trio.socket.getaddrinfo(host, port, self._family, socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise AddressError(f"{text!r}: cannot resolve ({exc.strerror})") from None
        if not infos:
            raise AddressError(f"{text!r}: no address in this member's family")
        sockaddr = infos[0][4]
        return format_address(str(sockaddr[0]), int(sockaddr[1]))

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


class KillableTransport:
    """Wraps a transport so that it can fall silent at once, as a killed process would.

    After :meth:`kill` nothing is sent (a graceful leave included) and nothing
    is received. Used by the demo and by tests that kill members on real sockets.
    """

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.killed = False

    @property
    def local_address(self) -> str:
        """The address of the wrapped transport."""
        return self._inner.local_address

    async def send(self, data: bytes, address: str) -> bool:
        """Send, unless killed (then the datagram vanishes, as from a dead host)."""
        if self.killed:
            await trio.lowlevel.checkpoint()
            return True
        return await self._inner.send(data, address)

    def send_nowait(self, data: bytes, address: str) -> bool | None:
        """Send at once, unless killed (then the datagram vanishes)."""
        return True if self.killed else self._inner.send_nowait(data, address)

    async def receive(self) -> tuple[bytes, str]:
        """The next datagram; once killed, wait forever instead."""
        data, source = await self._inner.receive()
        if self.killed:
            await trio.sleep_forever()
        return data, source

    async def resolve(self, text: str) -> str:
        """Resolve like the wrapped transport."""
        return await self._inner.resolve(text)

    def close(self) -> None:
        """Close the wrapped transport."""
        self._inner.close()

    def kill(self) -> None:
        """Stop sending and receiving from now on."""
        self.killed = True


async def open_udp_transport(ip: str, port: int) -> UdpTransport:
    """Bind a UDP socket on ``ip:port`` (port 0: any free port).

    Raises :class:`OSError` (errno ``EADDRINUSE``) if the port is taken.
    """
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        await trio.lowlevel.checkpoint()
        sock.bind((ip, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(
                exc.errno, f"address {format_address(ip, port)} is already in use"
            ) from None
        raise
    return UdpTransport(sock)
