"""The status endpoint: a small read-only HTTP server (h11 on trio) beside a member.

Off by default; ``Config.http_address`` (``SWIM_HTTP_ADDRESS``) turns it on.
It serves, for GET and HEAD only:

- ``/`` -- a self-contained HTML page that shows the membership live;
- ``/members`` -- every member (this one included) and the last events, as JSON;
- ``/stats`` -- every field of ``Member.statistics()``, as JSON;
- ``/metrics`` -- the same counters and the membership by status, in
  Prometheus' text exposition format 0.0.4;
- ``/health`` -- 200 while the member runs, with its address.

Whoever can reach the port can connect, so every connection is treated as
hostile. The bounds, each counted in :class:`HttpStatistics` when it bites:

- at most ``max_connections`` (16) connections at once; one more is closed as
  soon as it is accepted (``connections_refused``);
- a request head of at most ``max_request_bytes`` (8 KiB) is read, in chunks
  of 4 KiB, so at most 12 KiB are held per connection; a longer one is answered
  431 (``requests_oversized``), a malformed one 400 (``requests_malformed``);
  a request body is never read (the answer comes first, then the connection
  closes);
- each connection lives at most ``connection_timeout`` (5 s) from accept to
  close, whatever the client does (``connections_timed_out``);
- only GET and HEAD: anything else is answered 405 (``methods_refused``);
- one request per connection: every answer says ``Connection: close``.

Answers are built from the member's current state, whose size the member
bounds (``Config.max_members``); the last events are a ring of
``event_history`` (50) entries.
"""

from __future__ import annotations

import ast
import base64
import errno
import functools
import hashlib
import inspect
import itertools
import math
import socket
import textwrap
import time
from collections import deque
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

import h11
import msgspec
import trio

from ._hub import HubStatistics
from ._status_page import PAGE, SCRIPT, STYLE
from .addresses import format_address, split_address
from .config import Config
from .events import EventsMissed, MemberRemoved, MetadataChanged, StatusChanged
from .membership import Node, Status
from .protocol import MemberStatistics

if TYPE_CHECKING:
    from .member import Member

__all__ = [
    "CONNECTION_TIMEOUT",
    "DEFAULT_HTTP_PORT",
    "EVENT_HISTORY",
    "MAX_CONNECTIONS",
    "MAX_REQUEST_BYTES",
    "HttpStatistics",
    "StatusServer",
    "members_document",
    "metrics_text",
    "open_status_endpoint",
    "open_status_server",
    "stats_document",
]

MAX_CONNECTIONS: Final = 16
"""Connections served at once; one more is closed as soon as it is accepted."""
MAX_REQUEST_BYTES: Final = 8192
"""Largest request head (request line and headers) read before answering 431."""
CONNECTION_TIMEOUT: Final = 5.0
"""Seconds a connection may live, from accept to close."""
EVENT_HISTORY: Final = 50
"""Membership events kept for ``/members`` and the page (a ring: the oldest goes)."""
DEFAULT_HTTP_PORT: Final = 9990
"""The port of an ``http_address`` written without one."""

_RECEIVE_CHUNK: Final = 4096
# After the answer, what the client still sends is read and thrown away (so
# that closing does not reset the connection under the answer), up to this
# much and this long.
_DRAIN_BYTES: Final = 65_536
_DRAIN_SECONDS: Final = 1.0
# The subscription that fills the event ring; when it falls behind, the ring
# records how many events it missed.
_EVENT_BUFFER: Final = 256
# accept() errors that mean "out of file descriptors or memory now": wait a
# little and accept again, rather than stop the member.
_ACCEPT_RETRY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_ACCEPT_RETRY_SECONDS: Final = 0.1

_JSON: Final = b"application/json"
_TEXT: Final = b"text/plain; charset=utf-8"
_HTML: Final = b"text/html; charset=utf-8"
_PROMETHEUS: Final = b"text/plain; version=0.0.4; charset=utf-8"


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# The page may run its own inline script and style and fetch from this
# server, nothing else: metadata shown on it comes from other members.
_PAGE_POLICY: Final = (
    f"default-src 'none'; script-src {_csp_hash(SCRIPT)}; style-src {_csp_hash(STYLE)}; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
).encode()


class HttpStatistics(msgspec.Struct, frozen=True):
    """Counters of one status endpoint since it started."""

    connections_accepted: int
    """Connections taken and served."""
    connections_refused: int
    """Connections closed at once: ``max_connections`` were already open."""
    connections_timed_out: int
    """Connections cut at their deadline (a client too slow to ask or to read)."""
    requests_served: int
    """Requests answered 200."""
    requests_malformed: int
    """Requests that were not HTTP/1.x (answered 400)."""
    requests_oversized: int
    """Request heads over ``max_request_bytes`` (answered 431)."""
    methods_refused: int
    """Requests with a method other than GET or HEAD (answered 405)."""
    not_found: int
    """Requests for a path that does not exist (answered 404)."""


class _Response(msgspec.Struct, frozen=True):
    status: int
    content_type: bytes
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


# ---------------------------------------------------------------- documents


def _metadata_fields(metadata: bytes) -> dict[str, str]:
    """Metadata as UTF-8 text under ``metadata``, or as base64 under ``metadata_b64``."""
    try:
        return {"metadata": metadata.decode("utf-8")}
    except UnicodeDecodeError:
        return {"metadata_b64": base64.b64encode(metadata).decode("ascii")}


def _node_document(node: Node) -> dict[str, Any]:
    return {
        "address": node.address,
        "status": node.status.value,
        "incarnation": node.incarnation,
        **_metadata_fields(node.metadata),
    }


def members_document(member: Member, events: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """What ``/members`` answers: this member, its cluster and local health,
    every member sorted by address, and ``events`` (newest first)."""
    return {
        "address": member.address,
        "cluster": member.config.cluster_name,
        "local_health": member.statistics().local_health,
        "members": [_node_document(n) for n in sorted(member.members(), key=_by_address)],
        "events": list(events),
    }


def _by_address(node: Node) -> str:
    return node.address


def stats_document(member: Member) -> dict[str, Any]:
    """What ``/stats`` answers: every field of ``member.statistics()``."""
    return {"address": member.address, "statistics": msgspec.to_builtins(member.statistics())}


def _event_entry(event: object, now: float) -> dict[str, Any] | None:
    """One entry of the event ring, or None for events the ring does not keep
    (broadcasts and messages: payloads, not membership)."""
    if isinstance(event, StatusChanged):
        return {
            "time": now,
            "kind": "status",
            "address": event.node.address,
            "status": event.status.value,
            "previous": None if event.previous is None else event.previous.value,
            "incarnation": event.node.incarnation,
        }
    if isinstance(event, MetadataChanged):
        return {
            "time": now,
            "kind": "metadata",
            "address": event.node.address,
            "status": event.node.status.value,
            "incarnation": event.node.incarnation,
            **_metadata_fields(event.node.metadata),
        }
    if isinstance(event, MemberRemoved):
        return {
            "time": now,
            "kind": "removed",
            "address": event.node.address,
            "status": event.node.status.value,
            "incarnation": event.node.incarnation,
        }
    if isinstance(event, EventsMissed):
        return {
            "time": now,
            "kind": "missed",
            "address": None,
            "status": None,
            "count": event.count,
        }
    return None


# ---------------------------------------------------------------- metrics

_PREFIX: Final = "trio_swim_"

# Help for MemberStatistics fields that have no docstring of their own.
_FALLBACK_HELP: Final[Mapping[str, str]] = {
    "packets_sent": "Datagrams sent.",
    "bytes_sent": "Bytes sent in datagrams.",
    "packets_received": "Datagrams received.",
    "bytes_received": "Bytes received in datagrams.",
    "dropped_oversized": "Over max_packet_bytes.",
    "dropped_malformed": "Did not decode.",
    "dropped_version": "Of a newer protocol version.",
    "dropped_foreign_cluster": "Of another cluster.",
    "dropped_send_queue_full": "Outgoing, while the send queue was full.",
    "send_errors": "Datagrams the socket would not send.",
    "refused_ping_reqs": "Indirect probe requests refused (non-members, or too many at once).",
    "refused_table_full": "Members refused because the member table was full.",
}
# MemberStatistics fields that are a level now, not a count since start, and
# their metric names. Float fields are gauges too (named as the field).
_STATISTICS_GAUGES: Final[Mapping[str, str]] = {
    "local_health": "local_health",
    "probe_timeout": "probe_timeout_seconds",
}
# Fields with this prefix become one counter with a label.
_DROPPED_PREFIX: Final = "dropped_"
_DROPPED_METRIC: Final = "dropped_total"


@functools.cache
def _field_docs(cls: type) -> Mapping[str, str]:
    """The docstrings written under the fields of a struct, from its source
    (empty when the source cannot be read)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    if not tree.body or not isinstance(tree.body[0], ast.ClassDef):
        return {}
    body = tree.body[0].body
    docs: dict[str, str] = {}
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def _help_of(cls: type, field: str, fallback: Mapping[str, str] | None = None) -> str:
    doc = _field_docs(cls).get(field) or (fallback or {}).get(field)
    return doc if doc else field.replace("_", " ").capitalize() + "."


class _Family:
    """One metric: its name, type, help and samples (label sets and values)."""

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name = _PREFIX + name
        self.kind = kind
        self.help = help_text
        self.samples: list[tuple[tuple[tuple[str, str], ...], float | int]] = []

    def add(self, value: float | int, **labels: str) -> _Family:
        self.samples.append((tuple(labels.items()), value))
        return self

    def render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {_escape_help(self.help)}")
        out.append(f"# TYPE {self.name} {self.kind}")
        for labels, value in self.samples:
            if labels:
                text = ",".join(f'{key}="{_escape_label(val)}"' for key, val in labels)
                out.append(f"{self.name}{{{text}}} {_format_value(value)}")
            else:
                out.append(f"{self.name} {_format_value(value)}")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _statistics_families(statistics: MemberStatistics) -> list[_Family]:
    """One metric per field of MemberStatistics (the drops as one, by reason),
    derived from the fields, so that a new field shows up by itself."""
    families: list[_Family] = []
    dropped = _Family(_DROPPED_METRIC, "counter", "")
    reasons: list[str] = []
    for field in msgspec.structs.fields(MemberStatistics):
        name = field.name
        value = getattr(statistics, name)
        help_text = _help_of(MemberStatistics, name, _FALLBACK_HELP)
        if name.startswith(_DROPPED_PREFIX):
            reason = name.removeprefix(_DROPPED_PREFIX)
            dropped.add(value, reason=reason)
            reasons.append(f"{reason}: {help_text}")
            continue
        if name in _STATISTICS_GAUGES or isinstance(value, float):
            families.append(_Family(_STATISTICS_GAUGES.get(name, name), "gauge", help_text))
        else:
            families.append(_Family(f"{name}_total", "counter", help_text))
        families[-1].add(value)
    if reasons:
        dropped.help = "Datagrams dropped, by reason. " + " ".join(reasons)
        families.insert(0, dropped)
    return families


def metrics_text(
    *,
    address: str,
    cluster_name: str,
    members: Iterable[Node],
    statistics: MemberStatistics,
    hub: HubStatistics,
    http: HttpStatistics | None = None,
    http_connections_open: int = 0,
) -> str:
    """Prometheus text exposition (format 0.0.4) of one member's state."""
    families = [
        _Family("member_info", "gauge", "This member: its address and cluster (always 1).").add(
            1, address=address, cluster=cluster_name
        )
    ]
    by_status = dict.fromkeys(Status, 0)
    for node in members:
        by_status[node.status] += 1
    members_family = _Family("members", "gauge", "Members known, this one included, by status.")
    for status, count in by_status.items():
        members_family.add(count, status=status.value)
    families.append(members_family)
    families.extend(_statistics_families(statistics))
    families.append(
        _Family("event_subscribers", "gauge", _help_of(HubStatistics, "subscribers")).add(
            hub.subscribers
        )
    )
    families.append(
        _Family("event_subscribers_lagging", "gauge", _help_of(HubStatistics, "lagging")).add(
            hub.lagging
        )
    )
    families.append(
        _Family("events_dropped_total", "counter", _help_of(HubStatistics, "events_dropped")).add(
            hub.events_dropped
        )
    )
    if http is not None:
        families.append(
            _Family("http_connections_open", "gauge", "Status endpoint connections open now.").add(
                http_connections_open
            )
        )
        for field in msgspec.structs.fields(HttpStatistics):
            families.append(
                _Family(
                    f"http_{field.name}_total",
                    "counter",
                    "Status endpoint: " + _help_of(HttpStatistics, field.name),
                ).add(getattr(http, field.name))
            )
    out: list[str] = []
    for family in families:
        family.render(out)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the server


class StatusServer:
    """The status endpoint on a listening TCP socket; run it as a member task.

    Made by :func:`open_status_server` (the socket is bound and listening from
    then on); ``await server(member)`` serves until cancelled, then closes the
    socket. See the module's docstring for the paths and the bounds.
    """

    def __init__(
        self,
        sock: trio.socket.SocketType,
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        connection_timeout: float = CONNECTION_TIMEOUT,
        event_history: int = EVENT_HISTORY,
    ) -> None:
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.address: str = format_address(host, port)
        """The ``host:port`` the endpoint listens on (with port 0, the port chosen)."""
        self.max_connections = max_connections
        self.max_request_bytes = max_request_bytes
        self.connection_timeout = connection_timeout
        self._events: deque[dict[str, Any]] = deque(maxlen=event_history)
        self._open = 0
        self._counts = dict.fromkeys(HttpStatistics.__struct_fields__, 0)

    def statistics(self) -> HttpStatistics:
        """A snapshot of this endpoint's counters."""
        return HttpStatistics(**self._counts)

    @property
    def connections_open(self) -> int:
        """Connections being served now."""
        return self._open

    def close(self) -> None:
        """Stop listening (idempotent)."""
        self._sock.close()

    async def __call__(self, member: Member) -> None:
        """Serve ``member``'s status until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._record_events, member)
                await self._accept(member, nursery)
        finally:
            self.close()

    async def _record_events(self, member: Member) -> None:
        async with member.events(buffer=_EVENT_BUFFER) as events:
            async for event in events:
                entry = _event_entry(event, time.time())
                if entry is not None:
                    self._events.append(entry)

    async def _accept(self, member: Member, nursery: trio.Nursery) -> None:
        listener = trio.SocketListener(self._sock)
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                    raise
                await trio.sleep(_ACCEPT_RETRY_SECONDS)
                continue
            if self._open >= self.max_connections:
                self._counts["connections_refused"] += 1
                stream.socket.close()
                continue
            self._counts["connections_accepted"] += 1
            self._open += 1
            nursery.start_soon(self._serve_connection, stream, member)

    async def _serve_connection(self, stream: trio.SocketStream, member: Member) -> None:
        try:
            with trio.move_on_after(self.connection_timeout) as deadline:
                await self._converse(stream, member)
            if deadline.cancelled_caught:
                self._counts["connections_timed_out"] += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away: nothing to answer
        finally:
            self._open -= 1
            stream.socket.close()

    async def _converse(self, stream: trio.SocketStream, member: Member) -> None:
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_request_bytes)
        try:
            request = await self._read_request(connection, stream)
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:
                self._counts["requests_oversized"] += 1
                response = _Response(431, _TEXT, b"request head too large\n")
            else:
                self._counts["requests_malformed"] += 1
                response = _Response(400, _TEXT, b"bad request\n")
            await self._send(connection, stream, response, head_only=False)
            return
        if request is None:
            return
        response = self._answer(request, member)
        await self._send(connection, stream, response, head_only=request.method == b"HEAD")

    async def _read_request(
        self, connection: h11.Connection, stream: trio.SocketStream
    ) -> h11.Request | None:
        """The request, or None if the client closed first."""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some(_RECEIVE_CHUNK))
                continue
            if isinstance(event, h11.Request):
                return event
            return None  # ConnectionClosed: the client left without asking

    def _answer(self, request: h11.Request, member: Member) -> _Response:
        if request.method not in (b"GET", b"HEAD"):
            self._counts["methods_refused"] += 1
            return _Response(
                405, _TEXT, b"only GET and HEAD\n", headers=((b"Allow", b"GET, HEAD"),)
            )
        path = request.target.partition(b"?")[0]
        response = self._route(path, member)
        if response is None:
            self._counts["not_found"] += 1
            return _Response(404, _TEXT, b"not found\n")
        self._counts["requests_served"] += 1
        return response

    def _route(self, path: bytes, member: Member) -> _Response | None:
        if path == b"/":
            return _Response(
                200, _HTML, PAGE.encode(), headers=((b"Content-Security-Policy", _PAGE_POLICY),)
            )
        if path == b"/members":
            document = members_document(member, reversed(self._events))
            return _Response(200, _JSON, msgspec.json.encode(document))
        if path == b"/stats":
            return _Response(200, _JSON, msgspec.json.encode(stats_document(member)))
        if path == b"/metrics":
            text = metrics_text(
                address=member.address,
                cluster_name=member.config.cluster_name,
                members=member.members(),
                statistics=member.statistics(),
                hub=member._hub.statistics(),
                http=self.statistics(),
                http_connections_open=self._open,
            )
            return _Response(200, _PROMETHEUS, text.encode())
        if path == b"/health":
            document = {"status": "running", "address": member.address}
            return _Response(200, _JSON, msgspec.json.encode(document))
        return None

    async def _send(
        self,
        connection: h11.Connection,
        stream: trio.SocketStream,
        response: _Response,
        *,
        head_only: bool,
    ) -> None:
        headers = [
            (b"Content-Type", response.content_type),
            (b"Content-Length", str(len(response.body)).encode()),
            (b"Cache-Control", b"no-store"),
            (b"X-Content-Type-Options", b"nosniff"),
            (b"Connection", b"close"),
            *response.headers,
        ]
        reason = HTTPStatus(response.status).phrase.encode()
        head = h11.Response(status_code=response.status, headers=headers, reason=reason)
        data = connection.send(head) or b""
        if not head_only:
            data += connection.send(h11.Data(data=response.body)) or b""
        data += connection.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)
        await stream.send_eof()
        # Read what the client still sends (a body, more requests), so that
        # closing does not reset the connection before it read the answer.
        with trio.move_on_after(_DRAIN_SECONDS):
            drained = 0
            while drained < _DRAIN_BYTES:
                chunk = await stream.receive_some(_RECEIVE_CHUNK)
                if not chunk:
                    break
                drained += len(chunk)


async def open_status_server(
    address: str,
    *,
    max_connections: int = MAX_CONNECTIONS,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    connection_timeout: float = CONNECTION_TIMEOUT,
    event_history: int = EVENT_HISTORY,
) -> StatusServer:
    """Bind and listen on ``address`` (``host:port``; port 0 picks one) now.

    Raises :class:`OSError` if the address is in use or cannot be bound.
    """
    host, port = split_address(address, DEFAULT_HTTP_PORT)
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:  # pragma: no cover (getaddrinfo raises instead)
        raise OSError(f"http_address {address!r}: no address")
    family, _, _, _, sockaddr = infos[0]
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        await sock.bind(sockaddr)
        sock.listen(max_connections)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(
                exc.errno, f"http_address {format_address(host, port)} is already in use"
            ) from None
        raise
    return StatusServer(
        sock,
        max_connections=max_connections,
        max_request_bytes=max_request_bytes,
        connection_timeout=connection_timeout,
        event_history=event_history,
    )


async def open_status_endpoint(config: Config) -> StatusServer | None:
    """The status endpoint ``config.http_address`` asks for, listening already
    (so that a taken port raises from ``open_member``); None when it is off.
    Run it as a member task: ``await server(member)``."""
    if not config.http_address:
        return None
    return await open_status_server(config.http_address)
