"""How members reach each other: the Transport protocol, and UDP plus a TCP
stream listener over trio sockets.

Datagrams carry the protocol. Streams carry what does not fit in one, or
must arrive: one exchange per connection, a request frame and an answer
frame (see :func:`trio_swim.wire.stream_frame`), bounded in size, time and
number (:class:`StreamLimits`).
"""

from __future__ import annotations

import dataclasses
import errno
import socket
from collections.abc import Callable
from typing import Protocol

import trio

from .addresses import AddressError, format_address, split_address
from .wire import STREAM_HEADER_BYTES, stream_frame, stream_frame_length

_RECEIVE_BYTES = 65_536
# Connections the stream listener serves at once; more are closed at once.
MAX_STREAM_CONNECTIONS = 64
# Bytes read from a stream per receive call.
_STREAM_CHUNK = 65_536
_LISTEN_BACKLOG = 128
# Tries at a port free for both UDP and TCP when binding port 0.
_BIND_ATTEMPTS = 20

StreamHandler = Callable[[bytes, str], "bytes | None"]
"""Answers one request frame's body from a peer (``ip:port``): the answer's body, or None."""


@dataclasses.dataclass
class StreamLimits:
    """Bounds of one stream exchange, either side."""

    max_frame: int
    """Largest frame body read (larger: the connection is cut at its header)."""
    timeout: float
    """Seconds a connection may take, from accept to answer sent."""


@dataclasses.dataclass
class StreamCounters:
    """What the stream listener refused (read by ``Member.statistics()``)."""

    accepted: int = 0
    refused: int = 0
    """Closed at once: MAX_STREAM_CONNECTIONS were being served."""
    dropped: int = 0
    """Cut: a frame that is not one, too large, or not complete in time."""


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

    async def resolve(self, text: str) -> list[str]:
        """Turn ``host[:port]`` (a name or an IP) into canonical IP addresses
        (every address a name has in this endpoint's family, in order)."""
        ...

    async def request(self, address: str, data: bytes, limits: StreamLimits) -> bytes:
        """One stream exchange with ``address``: send ``data``, return the answer.

        Raises :class:`OSError` or :class:`trio.BrokenResourceError` if it
        cannot be done (refused, reset, closed without an answer, an answer
        over the limit); the caller bounds the time.
        """
        ...

    async def serve_streams(self, handler: StreamHandler, limits: StreamLimits) -> None:
        """Answer stream exchanges with ``handler`` until cancelled."""
        ...

    @property
    def stream_counters(self) -> StreamCounters:
        """What the stream listener accepted and refused so far."""
        ...

    def close(self) -> None:
        """Release the endpoint."""
        ...


class UdpTransport:
    """A bound UDP socket (IPv4 or IPv6) and, on the same port number, a TCP
    listener for streams."""

    def __init__(self, sock: socket.socket, listener: socket.socket | None = None) -> None:
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
        self._listener = None if listener is None else trio.socket.from_stdlib_socket(listener)
        self._stream_counters = StreamCounters()

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

    async def resolve(self, text: str) -> list[str]:
        """Resolve a name (e.g. ``localhost:9999``) in this socket's family: every
        address it has (a headless service or a round-robin name has several)."""
        return await resolve_address(text, self._family)

    @property
    def stream_counters(self) -> StreamCounters:
        """What the stream listener accepted and refused so far."""
        return self._stream_counters

    async def request(self, address: str, data: bytes, limits: StreamLimits) -> bytes:
        """Connect over TCP to ``address``, send one frame, read one back."""
        host, port = split_address(address)
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(stream_frame(data))
            answer = await _read_frame(stream, limits.max_frame)
        if answer is None:
            raise ConnectionResetError(errno.ECONNRESET, f"{address}: no answer on the stream")
        return answer

    async def serve_streams(self, handler: StreamHandler, limits: StreamLimits) -> None:
        """Accept connections and answer each one's frame with ``handler``.

        At most :data:`MAX_STREAM_CONNECTIONS` at once (more are closed at
        once, counted as refused); each must deliver a frame of at most
        ``limits.max_frame`` bytes and be answered within ``limits.timeout``
        seconds (else it is cut, counted as dropped).
        """
        listener = self._listener
        if listener is None:
            await trio.sleep_forever()
            return
        counters = self._stream_counters
        active = 0

        async def serve(sock: trio.socket.SocketType) -> None:
            nonlocal active
            stream = trio.SocketStream(sock)
            try:
                peer = sock.getpeername()
                source = format_address(str(peer[0]).partition("%")[0], int(peer[1]))
                with trio.move_on_after(limits.timeout) as scope:
                    request = await _read_frame(stream, limits.max_frame)
                    if request is None:
                        counters.dropped += 1
                        return
                    answer = handler(request, source)
                    if answer is not None:
                        await stream.send_all(stream_frame(answer))
                if scope.cancelled_caught:
                    counters.dropped += 1
            except (OSError, trio.BrokenResourceError):
                counters.dropped += 1
            finally:
                active -= 1
                sock.close()

        async with trio.open_nursery() as nursery:
            while True:
                try:
                    sock, _ = await listener.accept()
                except OSError:
                    # Out of file descriptors and the like: let it pass.
                    await trio.sleep(0.01)
                    continue
                if active >= MAX_STREAM_CONNECTIONS:
                    counters.refused += 1
                    sock.close()
                    continue
                active += 1
                counters.accepted += 1
                nursery.start_soon(serve, sock)

    def close(self) -> None:
        """Close the sockets."""
        self._sock.close()
        if self._listener is not None:
            self._listener.close()


async def _read_frame(stream: trio.SocketStream, max_frame: int) -> bytes | None:
    """One frame's body; None if the stream ends early, is not framed, or the
    frame is over ``max_frame`` (known from its header, before reading it)."""
    header = await _read_exactly(stream, STREAM_HEADER_BYTES)
    length = None if header is None else stream_frame_length(header)
    if length is None or length > max_frame:
        return None
    return await _read_exactly(stream, length)


async def _read_exactly(stream: trio.SocketStream, size: int) -> bytes | None:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = await stream.receive_some(min(_STREAM_CHUNK, size - len(buffer)))
        if not chunk:
            return None
        buffer += chunk
    return bytes(buffer)


async def resolve_address(text: str, family: int) -> list[str]:
    """Every canonical address of ``host[:port]`` in ``family``, first seen first.

    Raises :class:`AddressError` if it does not resolve.
    """
    host, port = split_address(text)
    try:
        infos = await trio.socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise AddressError(f"{text!r}: cannot resolve ({exc.strerror})") from None
    addresses = [
        format_address(str(info[4][0]).partition("%")[0], int(info[4][1])) for info in infos
    ]
    if not addresses:
        raise AddressError(f"{text!r}: no address in this member's family")
    return list(dict.fromkeys(addresses))


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

    async def resolve(self, text: str) -> list[str]:
        """Resolve like the wrapped transport."""
        return await self._inner.resolve(text)

    async def request(self, address: str, data: bytes, limits: StreamLimits) -> bytes:
        """A stream exchange, unless killed (then it never completes)."""
        if self.killed:
            await trio.sleep_forever()
        return await self._inner.request(address, data, limits)

    async def serve_streams(self, handler: StreamHandler, limits: StreamLimits) -> None:
        """Serve streams like the wrapped transport; once killed, leave them unanswered."""

        def answer(data: bytes, source: str) -> bytes | None:
            return None if self.killed else handler(data, source)

        await self._inner.serve_streams(answer, limits)

    @property
    def stream_counters(self) -> StreamCounters:
        """The wrapped transport's counters."""
        return self._inner.stream_counters

    def close(self) -> None:
        """Close the wrapped transport."""
        self._inner.close()

    def kill(self) -> None:
        """Stop sending and receiving from now on."""
        self.killed = True


async def open_udp_transport(ip: str, port: int, *, streams: bool = True) -> UdpTransport:
    """Bind a UDP socket on ``ip:port`` (port 0: any free port) and, with
    ``streams``, a TCP listener on the same port number.

    Raises :class:`OSError` (errno ``EADDRINUSE``) if the port is taken.
    """
    await trio.lowlevel.checkpoint()
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for attempt in range(_BIND_ATTEMPTS):
        sock = _bound_socket(family, socket.SOCK_DGRAM, ip, port)
        if not streams:
            return UdpTransport(sock)
        try:
            listener = _bound_socket(family, socket.SOCK_STREAM, ip, sock.getsockname()[1])
        except OSError as exc:
            sock.close()
            if port != 0 or exc.errno != errno.EADDRINUSE or attempt == _BIND_ATTEMPTS - 1:
                raise
            continue  # the free UDP port is taken over TCP: pick another
        listener.listen(_LISTEN_BACKLOG)
        return UdpTransport(sock, listener)
    raise AssertionError("unreachable")


def _bound_socket(family: int, kind: int, ip: str, port: int) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            # A restarted member rebinds its port while old connections linger.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            what = "TCP" if kind == socket.SOCK_STREAM else "UDP"
            raise OSError(
                exc.errno, f"address {format_address(ip, port)} is already in use ({what})"
            ) from None
        raise
    return sock
