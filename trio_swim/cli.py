"""The ``trio-swim`` command: run one member, or watch a small cluster at work.

``trio-swim run`` runs one member until SIGINT or SIGTERM, prints what it
learns on stdout (one line per event, or one JSON object per line with
``--json``) and broadcasts each non-empty line read on stdin. ``trio-swim demo`` starts
a few members in one process on real UDP, kills one without a leave and shows
the others detect it.

Settings come from ``SWIM_*`` variables (see :meth:`Config.from_env`); flags
win over them. Logs go to stderr, events to stdout. A mistake in the command
line, the environment or the address ends with one line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import errno
import json
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final, NoReturn

import trio

from ._hub import EventStream
from .addresses import AddressError, format_address, is_ip_literal, split_address
from .config import Config, ConfigError
from .events import (
    BroadcastReceived,
    Event,
    MemberRemoved,
    MessageReceived,
    MetadataChanged,
    StatusChanged,
)
from .member import Member, open_member, run_member, wall_clock_incarnation
from .membership import Status
from .security import MAX_KEYS, check_key, decode_key
from .transport import KillableTransport, open_udp_transport

_PROG: Final = "trio-swim"
_EXIT_OK: Final = 0
_EXIT_FAILED: Final = 1
_EXIT_USAGE: Final = 2
_EXIT_INTERRUPTED: Final = 130

# A key file larger than this is refused rather than read (16 keys in base64,
# with comments, take far less).
_KEY_FILE_MAX_BYTES: Final = 65_536

# Largest chunk read from stdin at once; an unfinished line is held only up to
# the broadcast limit (the rest of an oversize line is counted, not kept).
_STDIN_CHUNK: Final = 65_536


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line on stderr (status 2)."""

    def error(self, message: str) -> NoReturn:
        """Report a command-line mistake on one line and exit with status 2."""
        self.exit(_EXIT_USAGE, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trio-swim`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status; argument errors and ``--help`` raise
    :class:`SystemExit` as argparse does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    return command(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trio-swim`` and its subcommands."""
    parser = _Parser(
        prog=_PROG,
        description="SWIM cluster membership for trio: run a member, or watch a demo cluster.",
        epilog="Settings not given as flags come from SWIM_* environment variables.",
    )
    subcommands = parser.add_subparsers(metavar="COMMAND", required=True)

    run = subcommands.add_parser(
        "run",
        help="run one member until SIGINT/SIGTERM",
        description=(
            "Run one member until SIGINT or SIGTERM, then leave the cluster and exit 0. "
            "Events go to stdout, logs to stderr; each non-empty line read on stdin is broadcast."
        ),
        epilog=(
            "Every setting can also come from SWIM_<SETTING> variables, e.g. "
            "SWIM_LISTEN_PORT, SWIM_INITIAL_HOSTS (comma separated); flags win over them."
        ),
    )
    run.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=_listen_address,
        help="IP address and UDP port to bind; port 0 picks a free one (default 127.0.0.1:9999)",
    )
    run.add_argument(
        "--join",
        metavar="HOST:PORT",
        action="append",
        type=_join_address,
        help="a member to join; repeat for several (replaces SWIM_INITIAL_HOSTS)",
    )
    run.add_argument("--cluster", metavar="NAME", help="cluster name (default trio-swim)")
    run.add_argument(
        "--heartbeat-ms",
        metavar="N",
        type=_whole_number,
        help="protocol period in milliseconds (default 250)",
    )
    discovery = run.add_mutually_exclusive_group()
    discovery.add_argument(
        "--multicast",
        dest="multicast",
        action="store_const",
        const=True,
        help="announce and find members of the same cluster by multicast",
    )
    discovery.add_argument(
        "--no-multicast",
        dest="multicast",
        action="store_const",
        const=False,
        help="do not announce or listen for members by multicast (the default)",
    )
    run.add_argument(
        "--key-file",
        metavar="PATH",
        type=_key_file,
        help=(
            "seal packets with AES-GCM: one base64 key (16, 24 or 32 bytes) per line, "
            "the first the primary; blank lines and # comments are ignored "
            "(replaces SWIM_SECRET_KEYS)"
        ),
    )
    run.add_argument(
        "--accept-plaintext",
        action=argparse.BooleanOptionalAction,
        help="with keys, also accept unsealed packets (turning encryption on: step 1 and 2)",
    )
    run.add_argument(
        "--send-plaintext",
        action=argparse.BooleanOptionalAction,
        help="with keys, still send unsealed packets (turning encryption on: step 1)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per line instead of readable lines",
    )
    run.set_defaults(command=_command_run)

    demo = subcommands.add_parser(
        "demo",
        help="start a small cluster in this process, kill a member, watch it be detected",
        description=(
            "Start N members on 127.0.0.1 over real UDP, show who sees whom, kill one member "
            "without a leave, show each other member detect it, send a broadcast and show "
            "who received it. Ends by itself."
        ),
    )
    demo.add_argument(
        "--size",
        metavar="N",
        type=_demo_size,
        default=_DEMO_DEFAULT_SIZE,
        help=(
            f"number of members, {_DEMO_MIN_SIZE}..{_DEMO_MAX_SIZE} (default {_DEMO_DEFAULT_SIZE})"
        ),
    )
    demo.set_defaults(command=_command_demo)
    return parser


# ------------------------------------------------------------ argument types


def _listen_address(text: str) -> tuple[str, int]:
    try:
        host, port = split_address(text)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not is_ip_literal(host):
        raise argparse.ArgumentTypeError(f"{text!r}: the host must be an IP address")
    return host, port


def _join_address(text: str) -> str:
    try:
        host, port = split_address(text)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if port == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: port 0 cannot be joined")
    return format_address(host, port)


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _key_file(path: str) -> list[bytes]:
    """The keys in the file at ``path``; errors name the line, never the key."""
    try:
        with open(path, "rb") as file:
            data = file.read(_KEY_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{path!r}: {exc.strerror or exc}") from None
    if len(data) > _KEY_FILE_MAX_BYTES:
        raise argparse.ArgumentTypeError(
            f"{path!r}: more than {_KEY_FILE_MAX_BYTES} bytes: not a key file"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{path!r}: not a text file") from None
    keys: list[bytes] = []
    line_of: dict[bytes, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        where = f"{path!r}, line {number}"
        try:
            key = check_key(decode_key(content))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{where}: {exc}") from None
        if key in line_of:
            raise argparse.ArgumentTypeError(f"{where}: the same key as line {line_of[key]}")
        if len(keys) == MAX_KEYS:
            raise argparse.ArgumentTypeError(
                f"{where}: more than {MAX_KEYS} keys "
                "(each received packet may be tried against every key)"
            )
        line_of[key] = number
        keys.append(key)
    if not keys:
        raise argparse.ArgumentTypeError(f"{path!r}: no keys")
    return keys


def _demo_size(text: str) -> int:
    size = _whole_number(text)
    if not _DEMO_MIN_SIZE <= size <= _DEMO_MAX_SIZE:
        raise argparse.ArgumentTypeError(f"{size}: must be {_DEMO_MIN_SIZE}..{_DEMO_MAX_SIZE}")
    return size


# ---------------------------------------------------------------- messages


def _clock() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]


def _log(message: str) -> None:
    print(f"{_clock()} {message}", file=sys.stderr, flush=True)


def _fail(command: str, message: str) -> int:
    print(f"{command}: error: {message}", file=sys.stderr, flush=True)
    return _EXIT_USAGE


# --------------------------------------------------------------------- run

# Which flag set which Config field, so an error names what the user typed.
_FLAG_OF_FIELD: Final = {
    "listen_ip": "--listen",
    "listen_port": "--listen",
    "initial_hosts": "--join",
    "cluster_name": "--cluster",
    "heartbeat_millis": "--heartbeat-ms",
    "multicast_enabled": "--multicast",
    "secret_keys": "--key-file",
    "accept_plaintext": "--accept-plaintext",
    "send_plaintext": "--send-plaintext",
}


def run_config(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """The Config of ``trio-swim run``: ``SWIM_*`` variables, overridden by flags.

    Raises :class:`ConfigError`; a bad flag value is named by its flag.
    """
    flags: dict[str, Any] = {}
    if args.listen is not None:
        flags["listen_ip"], flags["listen_port"] = args.listen
    if args.join:
        flags["initial_hosts"] = list(args.join)
    if args.cluster is not None:
        flags["cluster_name"] = args.cluster
    if args.heartbeat_ms is not None:
        flags["heartbeat_millis"] = args.heartbeat_ms
    if args.multicast is not None:
        flags["multicast_enabled"] = args.multicast
    if args.key_file is not None:
        flags["secret_keys"] = args.key_file
    if args.accept_plaintext is not None:
        flags["accept_plaintext"] = args.accept_plaintext
    if args.send_plaintext is not None:
        flags["send_plaintext"] = args.send_plaintext
    try:
        return Config.from_env(environ, **flags)
    except ConfigError as exc:
        message = str(exc)
        # "field=value: why", or "field: why" for a secret.
        for field in flags:
            if message.startswith((f"{field}=", f"{field}:")):
                raise ConfigError(_FLAG_OF_FIELD[field] + message[len(field) :]) from None
        raise


def _command_run(args: argparse.Namespace) -> int:
    command = f"{_PROG} run"
    try:
        config = run_config(args)
    except ConfigError as exc:
        return _fail(command, str(exc))
    render = event_json if args.json else _human_renderer(_stdout_encoding())
    try:
        return trio.run(_run_member, config, render, command)
    except KeyboardInterrupt:
        return _EXIT_INTERRUPTED


async def _run_member(config: Config, render: Callable[[Event], str], command: str) -> int:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        started = False
        try:
            async with open_member(config) as member:
                started = True
                _log(f"listening on {member.address} (cluster {config.cluster_name!r})")
                if config.initial_hosts:
                    _log(f"joining {', '.join(config.initial_hosts)}")
                events = member.events()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_print_events, events, render, nursery.cancel_scope)
                    nursery.start_soon(_broadcast_stdin, member)
                    nursery.start_soon(_stop_on_signal, signals, nursery.cancel_scope)
                _log(f"leaving the cluster as {member.address}")
        except OSError as exc:
            if started:
                raise
            return _fail(command, _bind_error(config, exc))
    _log("left")
    return _EXIT_OK


def _bind_error(config: Config, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE and exc.strerror:
        return exc.strerror
    address = format_address(config.listen_ip, config.listen_port)
    return f"cannot listen on {address}: {exc.strerror or exc}"


async def _stop_on_signal(signals: AsyncIterator[int], stop: trio.CancelScope) -> None:
    async for signum in signals:
        _log(f"received {signal.Signals(signum).name}")
        stop.cancel()
        return


async def _print_events(
    events: EventStream, render: Callable[[Event], str], stop: trio.CancelScope
) -> None:
    """Write each event to stdout as it comes, off the trio thread.

    The write happens in a worker thread so that a slow reader of stdout holds
    up only this task; the member keeps running and this subscriber reports
    what it missed. ``os.write`` rather than ``sys.stdout``: a worker abandoned
    on exit must not hold the lock of a Python file object.
    """
    sys.stdout.flush()
    fd = sys.stdout.fileno()
    encoding = _stdout_encoding()
    async for event in events:
        data = (render(event) + "\n").encode(encoding, errors="replace")
        try:
            await trio.to_thread.run_sync(_write_all, fd, data, abandon_on_cancel=True)
        except BrokenPipeError:
            _log("stdout was closed")
            _silence_stdout()
            stop.cancel()
            return


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _silence_stdout() -> None:
    # Python flushes stdout at exit; on a closed pipe that would print an error.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _stdout_encoding() -> str:
    return getattr(sys.stdout, "encoding", None) or "utf-8"


class LineSplitter:
    """Cuts a byte stream into lines, holding at most ``limit`` bytes of one line.

    :meth:`feed` returns, per completed line, ``(line, length)``: the line
    without its end (``\\n`` or ``\\r\\n``), or None in place of a line longer
    than ``limit`` bytes, whose bytes were dropped as they came. ``length``
    counts the bytes of the line without its end.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pending = bytearray()
        self._dropped = 0
        self._dropped_cr = False

    def feed(self, chunk: bytes) -> list[tuple[bytes | None, int]]:
        """Add ``chunk``; return the lines it completed."""
        lines: list[tuple[bytes | None, int]] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._hold(chunk[start:])
                return lines
            self._hold(chunk[start:end])
            lines.append(self._take())
            start = end + 1

    def finish(self) -> list[tuple[bytes | None, int]]:
        """The last line, if the stream ended without a line end."""
        if self._pending or self._dropped:
            return [self._take()]
        return []

    def _hold(self, part: bytes) -> None:
        if not part:
            return
        # One byte over the limit is held: it may be the "\r" of "\r\n".
        if self._dropped or len(self._pending) + len(part) > self.limit + 1:
            self._dropped += len(self._pending) + len(part)
            self._dropped_cr = part.endswith(b"\r")
            self._pending.clear()
        else:
            self._pending += part

    def _take(self) -> tuple[bytes | None, int]:
        line = bytes(self._pending)
        dropped = self._dropped - (1 if self._dropped_cr else 0)
        self._pending.clear()
        self._dropped = 0
        self._dropped_cr = False
        if dropped:
            return None, dropped
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.limit:
            return None, len(line)
        return line, len(line)


async def _broadcast_stdin(member: Member) -> None:
    """Broadcast every non-empty line read on stdin; keep running after EOF."""
    limit = member.config.max_broadcast_bytes
    splitter = LineSplitter(limit)
    while True:
        try:
            chunk = await trio.to_thread.run_sync(
                os.read, sys.stdin.fileno(), _STDIN_CHUNK, abandon_on_cancel=True
            )
        except (OSError, ValueError, AttributeError):
            chunk = b""
        lines = splitter.feed(chunk) if chunk else splitter.finish()
        for line, length in lines:
            if line is None:
                _log(f"line of {length} bytes not broadcast: the limit is {limit} bytes")
            elif line:
                await member.broadcast(line)
        if not chunk:
            return


def event_json(event: Event) -> str:
    """One event as one line of JSON, as ``trio-swim run --json`` prints it.

    ``{"event": "status", "node", "status", "previous", "incarnation",
    "metadata"}``, ``{"event": "metadata", "node", "metadata", "previous"}``,
    ``{"event": "broadcast", "origin", "payload"}``, ``{"event": "message",
    "origin", "payload", "reliable"}``, ``{"event": "removed", "node",
    "status", "incarnation"}`` and ``{"event": "missed", "count"}``. Bytes
    that are not UTF-8 (a payload, metadata) go under the same key with
    ``_b64`` appended, in base64.
    """
    record: dict[str, Any]
    if isinstance(event, StatusChanged):
        record = {
            "event": "status",
            "node": event.node.address,
            "status": event.status.value,
            "previous": None if event.previous is None else event.previous.value,
            "incarnation": event.node.incarnation,
        }
        _put_bytes(record, "metadata", event.node.metadata)
    elif isinstance(event, MetadataChanged):
        record = {"event": "metadata", "node": event.node.address}
        _put_bytes(record, "metadata", event.node.metadata)
        _put_bytes(record, "previous", event.previous)
    elif isinstance(event, BroadcastReceived):
        record = {"event": "broadcast", "origin": event.origin}
        _put_bytes(record, "payload", event.payload)
    elif isinstance(event, MessageReceived):
        record = {"event": "message", "origin": event.origin}
        _put_bytes(record, "payload", event.payload)
        record["reliable"] = event.reliable
    elif isinstance(event, MemberRemoved):
        record = {
            "event": "removed",
            "node": event.node.address,
            "status": event.node.status.value,
            "incarnation": event.node.incarnation,
        }
    else:
        record = {"event": "missed", "count": event.count}
    return json.dumps(record)


def _put_bytes(record: dict[str, Any], key: str, data: bytes) -> None:
    """``record[key]`` = ``data`` as text, or ``record[key + "_b64"]`` if not UTF-8."""
    try:
        record[key] = data.decode("utf-8")
    except UnicodeDecodeError:
        record[key + "_b64"] = base64.b64encode(data).decode("ascii")


def _bytes_text(data: bytes) -> str:
    """``data`` for a human: its text quoted, or its size and base64."""
    try:
        return repr(data.decode("utf-8"))
    except UnicodeDecodeError:
        return f"{len(data)} bytes (base64 {base64.b64encode(data)!r})"


def _human_renderer(encoding: str) -> Callable[[Event], str]:
    arrow = "→" if _can_encode("→", encoding) else "->"

    def render(event: Event) -> str:
        return f"{_clock()}  {_describe(event, arrow)}"

    return render


def _can_encode(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _describe(event: Event, arrow: str) -> str:
    if isinstance(event, StatusChanged):
        before = "new" if event.previous is None else event.previous.value
        return f"{event.node.address}  {before} {arrow} {event.status.value}"
    if isinstance(event, MetadataChanged):
        return f"{event.node.address}  metadata {_bytes_text(event.node.metadata)}"
    if isinstance(event, BroadcastReceived):
        return f"{event.origin}  broadcast {_bytes_text(event.payload)}"
    if isinstance(event, MessageReceived):
        kind = "reliable message" if event.reliable else "message"
        return f"{event.origin}  {kind} {_bytes_text(event.payload)}"
    if isinstance(event, MemberRemoved):
        return f"{event.node.address}  removed (was {event.node.status.value})"
    return f"({event.count} events missed: output too slow)"


# -------------------------------------------------------------------- demo

_DEMO_DEFAULT_SIZE: Final = 5
_DEMO_MIN_SIZE: Final = 3
_DEMO_MAX_SIZE: Final = 16
# A short period keeps the whole demo to a few seconds; loopback answers in
# well under the probe timeout.
_DEMO_CONFIG: Final[dict[str, Any]] = {
    "cluster_name": "trio-swim-demo",
    "listen_port": 0,
    "heartbeat_millis": 100,
    "probe_timeout_millis": 40,
    "gossip_interval_millis": 50,
    "multicast_enabled": False,
}
# Upper bounds of the demo's phases; together well under 30 seconds.
_DEMO_FORM_SECONDS: Final = 8.0
_DEMO_SETTLE_SECONDS: Final = 1.0
_DEMO_DETECT_SECONDS: Final = 12.0
_DEMO_BROADCAST_SECONDS: Final = 4.0
_DEMO_REDRAW_SECONDS: Final = 0.1


class _DemoNode:
    """One member of the demo and what the demo has seen of it."""

    def __init__(
        self,
        label: str,
        member: Member,
        transport: KillableTransport,
        kill_scope: trio.CancelScope,
    ) -> None:
        self.label = label
        self.member = member
        self.transport = transport
        self.kill_scope = kill_scope
        self.view: dict[str, Status] = {}
        """What this member believes of every other member, from its events."""
        self.suspected_after: float | None = None
        self.dead_after: float | None = None
        self.received_after: float | None = None

    @property
    def address(self) -> str:
        return self.member.address

    @property
    def killed(self) -> bool:
        return self.transport.killed


class _Screen:
    """Where the demo writes: on a terminal the membership table stays below
    the scrolling log and is redrawn in place; otherwise plain lines only, with
    the table printed at the end of each phase."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self._table_height = 0
        self._table: list[str] = []
        self._logs: list[str] = []

    def log(self, line: str) -> None:
        if self.live:
            self._logs.append(line)
        else:
            self._write([line])

    def redraw(self, table: list[str]) -> None:
        if not self.live or (table == self._table and not self._logs):
            return
        self._table = table
        move_up = f"\x1b[{self._table_height}F\x1b[J" if self._table_height else ""
        self._write([*self._logs, *table], prefix=move_up)
        self._logs.clear()
        self._table_height = len(table)

    def snapshot(self, table: list[str]) -> None:
        if self.live:
            self.redraw(table)
        else:
            self._write([*table, ""])

    def _write(self, lines: list[str], prefix: str = "") -> None:
        sys.stdout.write(prefix + "".join(line + "\n" for line in lines))
        sys.stdout.flush()


_COLOURS: Final = {
    "alive": "\x1b[32m",
    "suspect": "\x1b[33m",
    "dead": "\x1b[31m",
    "left": "\x1b[2m",
}
_CELL_WIDTH: Final = 8


class _Demo:
    """Runs the demonstration; :meth:`run` returns the exit status."""

    def __init__(self, size: int, screen: _Screen) -> None:
        self.size = size
        self.screen = screen
        self.nodes: list[_DemoNode] = []
        self.started_at = trio.current_time()
        self.killed_at = 0.0
        self.broadcast_at = 0.0
        self._changed = trio.Event()
        self._finished = trio.Event()

    # ---------------------------------------------------------- narrative

    async def run(self) -> int:
        period = _DEMO_CONFIG["heartbeat_millis"]
        self.say(
            f"{self.size} members on 127.0.0.1 over UDP, one probe per {period} ms; "
            "a row shows what that member believes of each column"
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._redraw_loop)
            status = await self._story(nursery)
            self._finished.set()
            if status != _EXIT_OK:
                self.screen.snapshot(self.table())
            self.say("the others leave gracefully")
        self.screen.redraw(self.table())
        return status

    async def _story(self, nursery: trio.Nursery) -> int:
        seed = await nursery.start(self._host, "m1", [])
        for number in range(2, self.size + 1):
            await nursery.start(self._host, f"m{number}", [seed.address])
        if not await self._wait(self._converged, _DEMO_FORM_SECONDS):
            self.say(f"the cluster did not form within {_DEMO_FORM_SECONDS:g} s")
            return _EXIT_FAILED
        self.say(f"every member sees all {self.size} alive")
        self.screen.snapshot(self.table())
        await trio.sleep(_DEMO_SETTLE_SECONDS)

        victim = self.nodes[-1]
        self.killed_at = trio.current_time()
        victim.transport.kill()
        victim.kill_scope.cancel()
        self.say(f"killed {victim.label} ({victim.address}) without a leave: it falls silent")
        if not await self._wait(self._all_see_dead, _DEMO_DETECT_SECONDS):
            self.say(f"not every member saw {victim.label} dead within {_DEMO_DETECT_SECONDS:g} s")
            return _EXIT_FAILED
        times = sorted(n.dead_after for n in self._survivors() if n.dead_after is not None)
        self.say(
            f"{victim.label} is DEAD at every other member, "
            f"detected after {times[0]:.2f} s .. {times[-1]:.2f} s"
        )
        self.screen.snapshot(self.table())

        sender = self.nodes[0]
        payload = f"hello from {sender.label}"
        self.broadcast_at = trio.current_time()
        await sender.member.broadcast(payload.encode())
        self.say(f"{sender.label} broadcasts {payload!r}")
        if not await self._wait(self._all_received, _DEMO_BROADCAST_SECONDS):
            limit = _DEMO_BROADCAST_SECONDS
            self.say(f"not every member received the broadcast within {limit:g} s")
            return _EXIT_FAILED
        receivers = [n.label for n in self._survivors() if n is not sender]
        self.say(f"the broadcast reached {', '.join(receivers)} (not {victim.label}: it is dead)")
        return _EXIT_OK

    def say(self, message: str) -> None:
        elapsed = trio.current_time() - self.started_at
        self.screen.log(f"[{elapsed:6.2f}s] {message}")

    # ----------------------------------------------------------- members

    async def _host(
        self,
        label: str,
        initial_hosts: list[str],
        *,
        task_status: trio.TaskStatus[_DemoNode] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run one member until the demo ends (leaving) or kills it (silently)."""
        config = Config(initial_hosts=initial_hosts, **_DEMO_CONFIG)
        transport = KillableTransport(await open_udp_transport(config.listen_ip, 0))
        # Killing cancels this scope around the member, so it never leaves;
        # ending the demo instead returns from the block, so it does leave.
        kill_scope = trio.CancelScope()
        with kill_scope:
            async with run_member(
                config, transport, rng=random.Random(), incarnation=wall_clock_incarnation()
            ) as member:
                node = _DemoNode(label, member, transport, kill_scope)
                events = member.events()
                self.nodes.append(node)
                self.say(f"started {label} at {member.address}")
                task_status.started(node)
                async with trio.open_nursery() as watchers:
                    watchers.start_soon(self._watch, node, events)
                    await self._finished.wait()
                    watchers.cancel_scope.cancel()

    async def _watch(self, node: _DemoNode, events: EventStream) -> None:
        async for event in events:
            self._observe(node, event)
            self._changed.set()
            self._changed = trio.Event()

    def _observe(self, node: _DemoNode, event: Event) -> None:
        now = trio.current_time()
        if isinstance(event, StatusChanged):
            node.view[event.node.address] = event.status
            victim = self.nodes[-1]
            if victim.killed and event.node.address == victim.address:
                after = now - self.killed_at
                if event.status is Status.SUSPECT and node.suspected_after is None:
                    node.suspected_after = after
                    self.say(f"{node.label} suspects {victim.label} (+{after:.2f} s)")
                elif event.status is Status.DEAD and node.dead_after is None:
                    node.dead_after = after
                    self.say(f"{node.label} sees {victim.label} DEAD (+{after:.2f} s)")
        elif isinstance(event, BroadcastReceived):
            if node.received_after is None:
                node.received_after = now - self.broadcast_at
                text = event.payload.decode("utf-8", errors="replace")
                self.say(
                    f"{node.label} received {text!r} from {self._label(event.origin)} "
                    f"(+{node.received_after:.2f} s)"
                )
        elif isinstance(event, MemberRemoved):
            node.view.pop(event.node.address, None)

    def _label(self, address: str) -> str:
        for node in self.nodes:
            if node.address == address:
                return node.label
        return address

    # -------------------------------------------------------- conditions

    def _survivors(self) -> list[_DemoNode]:
        return [n for n in self.nodes if not n.killed]

    def _converged(self) -> bool:
        return len(self.nodes) == self.size and all(
            observer.view.get(subject.address) is Status.ALIVE
            for observer in self.nodes
            for subject in self.nodes
            if subject is not observer
        )

    def _all_see_dead(self) -> bool:
        return all(n.dead_after is not None for n in self._survivors())

    def _all_received(self) -> bool:
        sender = self.nodes[0]
        return all(n.received_after is not None for n in self._survivors() if n is not sender)

    async def _wait(self, condition: Callable[[], bool], seconds: float) -> bool:
        """Wait at most ``seconds`` for ``condition``; False if it did not come true."""
        with trio.move_on_after(seconds):
            while not condition():
                await self._changed.wait()
        return condition()

    # ------------------------------------------------------------- table

    async def _redraw_loop(self) -> None:
        while not self._finished.is_set():
            self.screen.redraw(self.table())
            await trio.sleep(_DEMO_REDRAW_SECONDS)

    def table(self) -> list[str]:
        """The membership table: row = observer, column = the member observed."""
        colour = self.screen.live
        corner = "believes".ljust(_CELL_WIDTH + 7)
        lines = [(corner + "".join(n.label.ljust(_CELL_WIDTH) for n in self.nodes)).rstrip()]
        for observer in self.nodes:
            port = observer.address.rsplit(":", 1)[1]
            row = f"{observer.label} :{port}".ljust(_CELL_WIDTH + 7)
            if observer.killed:
                lines.append(row + "(killed: silent, no leave)")
                continue
            cells = []
            for subject in self.nodes:
                if subject is observer:
                    word = "self"
                else:
                    status = observer.view.get(subject.address)
                    word = "-" if status is None else status.value
                cell = word.ljust(_CELL_WIDTH)
                if colour and word in _COLOURS:
                    cell = f"{_COLOURS[word]}{cell}\x1b[0m"
                cells.append(cell)
            lines.append((row + "".join(cells)).rstrip())
        return lines


def _command_demo(args: argparse.Namespace) -> int:
    live = sys.stdout.isatty() and os.environ.get("TERM", "dumb") != "dumb"

    async def demo() -> int:
        return await _Demo(args.size, _Screen(live)).run()

    try:
        return trio.run(demo)
    except KeyboardInterrupt:
        return _EXIT_INTERRUPTED
