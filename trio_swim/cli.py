"""The ``trio-swim`` command: run one member, ask a running one, or watch a demo.

``trio-swim run`` runs one member until SIGINT or SIGTERM, prints what it
learns on stdout (one line per event, or one JSON object per line with
``--json``) and broadcasts each non-empty line read on stdin.
``trio-swim members`` and ``trio-swim stats`` print the membership table and
the statistics of a running member, read from its status endpoint
(``--http``). ``trio-swim demo`` starts a few members in one process on real
UDP, kills one without a leave, shows the others detect it, and has the rest
leave gracefully.

Settings come from ``SWIM_*`` variables (see :meth:`Config.from_env`); flags
win over them. Logs go to stderr (through :mod:`logging`: one line each, with
a UTC time and the level), events to stdout. A mistake in the command line,
the environment or the address ends with one line on stderr and exit status 2;
a status endpoint that cannot be read, with one line and exit status 1.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import errno
import functools
import http.client
import ipaddress
import json
import logging
import os
import random
import re
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Final, NoReturn

import trio

from . import __version__
from ._hub import EventStream
from .addresses import DEFAULT_PORT, AddressError, format_address, is_ip_literal, split_address
from .config import Config, ConfigError, _printable, check_env_variables, env_variable
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

_logger: Final = logging.getLogger(__name__)

# A key file larger than this is refused rather than read (16 keys in base64,
# with comments, take far less).
_KEY_FILE_MAX_BYTES: Final = 65_536

# Largest chunk read from stdin at once; an unfinished line is held only up to
# the broadcast limit (the rest of an oversize line is counted, not kept).
_STDIN_CHUNK: Final = 65_536

# Largest answer read from a status endpoint: a full table of 10,000 members
# with 512 bytes of metadata each is about 8 MiB of JSON.
_HTTP_MAX_BYTES: Final = 32 * 1_048_576
_HTTP_DEFAULT_TIMEOUT: Final = 5.0
# The status endpoint's port when an address gives none (status.DEFAULT_HTTP_PORT,
# not imported: that module loads the HTTP server, which only ``run`` needs).
_DEFAULT_HTTP_PORT: Final = 9990

_LOG_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line on stderr (status 2)."""

    def error(self, message: str) -> NoReturn:
        """Report a command-line mistake on one line and exit with status 2."""
        self.exit(_EXIT_USAGE, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trio-swim`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status; argument errors, ``--help`` and ``--version``
    raise :class:`SystemExit` as argparse does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    return command(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trio-swim`` and its subcommands."""
    parser = _Parser(
        prog=_PROG,
        description=(
            "SWIM cluster membership for trio: run a member, ask a running one, "
            "or watch a demo cluster."
        ),
        epilog="Settings not given as flags come from SWIM_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"{_PROG} {__version__}")
    subcommands = parser.add_subparsers(metavar="COMMAND", required=True)
    _add_run_parser(subcommands)
    for name, what in (("members", "membership table"), ("stats", "statistics")):
        _add_query_parser(subcommands, name, what)

    demo = subcommands.add_parser(
        "demo",
        help="start a small cluster in this process, kill a member, watch it be detected",
        description=(
            "Start N members on 127.0.0.1 over real UDP, show who sees whom, kill one member "
            "without a leave, show each other member detect it, send a broadcast and show "
            "who received it, then have the others leave one by one and show it seen. "
            "Ends by itself."
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


def _add_run_parser(subcommands: Any) -> None:
    run = subcommands.add_parser(
        "run",
        help="run one member until SIGINT/SIGTERM",
        description=(
            "Run one member until SIGINT or SIGTERM, then leave the cluster and exit 0. "
            "Events go to stdout, logs to stderr; each non-empty line read on stdin is broadcast."
        ),
        epilog=(
            "Every setting can also come from SWIM_<SETTING> variables, e.g. "
            "SWIM_LISTEN_PORT, SWIM_INITIAL_HOSTS (comma separated); flags win over them. "
            "An unknown SWIM_* variable is a warning (an error with --strict-env)."
        ),
    )
    run.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=_listen_address,
        help=(
            "IP address and UDP port to bind; port 0 picks a free one; without a port, "
            f"SWIM_LISTEN_PORT or {DEFAULT_PORT} (default 127.0.0.1:{DEFAULT_PORT})"
        ),
    )
    run.add_argument(
        "--advertise",
        metavar="HOST:PORT",
        type=_advertise_address,
        help=(
            "IP address and port other members reach this one at, when not the bound one "
            "(a wildcard --listen, a port mapping)"
        ),
    )
    run.add_argument(
        "--join",
        metavar="HOST:PORT",
        action="append",
        type=_join_address,
        help=(
            f"a member to join (port {DEFAULT_PORT} if none); repeat for several "
            "(replaces SWIM_INITIAL_HOSTS)"
        ),
    )
    run.add_argument("--cluster", metavar="NAME", help="cluster name (default trio-swim)")
    run.add_argument(
        "--heartbeat-ms",
        metavar="N",
        type=_whole_number,
        help="protocol period in milliseconds (default 250)",
    )
    run.add_argument(
        "--metadata",
        metavar="TEXT",
        type=_metadata,
        help="what this member tells the others about itself (UTF-8 text, e.g. role=db)",
    )
    run.add_argument(
        "--http",
        metavar="HOST:PORT",
        type=_http_address,
        help=(
            "serve the status endpoint (/members, /stats ...) on this TCP address "
            f"(port {_DEFAULT_HTTP_PORT} if none)"
        ),
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
        "--strict-env",
        action="store_true",
        help="refuse to start when a SWIM_* variable names no setting (instead of a warning)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per line instead of readable lines",
    )
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument(
        "--log-level",
        metavar="LEVEL",
        type=_log_level,
        # None rather than INFO: argparse sees a conflict with -v only when
        # the value given differs from the default.
        default=None,
        help="least level of the log lines on stderr: debug, info, warning or error (default info)",
    )
    verbosity.add_argument(
        "-v",
        "--verbose",
        dest="log_level",
        action="store_const",
        const=logging.DEBUG,
        help="log everything, per-probe detail included (--log-level debug)",
    )
    run.set_defaults(command=_command_run)


def _add_query_parser(subcommands: Any, name: str, what: str) -> None:
    query = subcommands.add_parser(
        name,
        help=f"print the {what} of a running member (its --http status endpoint)",
        description=(
            f"Print the {what} of a running member, read from its status endpoint "
            f"(trio-swim run --http, Config.http_address). Exit status 1 if it cannot be read."
        ),
    )
    query.add_argument(
        "--http",
        metavar="HOST:PORT",
        type=_endpoint_address,
        help=(
            f"the member's status endpoint (port {_DEFAULT_HTTP_PORT} if none; "
            f"default {env_variable('http_address')})"
        ),
    )
    query.add_argument(
        "--json",
        action="store_true",
        help="print the endpoint's JSON answer, on one line",
    )
    query.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_timeout,
        default=_HTTP_DEFAULT_TIMEOUT,
        help=f"give up after this long (default {_HTTP_DEFAULT_TIMEOUT:g})",
    )
    query.set_defaults(command=_command_members if name == "members" else _command_stats)


# ------------------------------------------------------------ argument types

# split_address's port for an address written without one.
_NO_PORT: Final = -1
# A DNS label (RFC 1123; underscores too, as resolvers accept them).
_HOST_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def _is_host_name(host: str) -> bool:
    """True if ``host`` can be a DNS name: labels of letters, digits and hyphens
    (internationalised names through IDNA), and not all digits at the end, so
    that ``1.2.3.4.5`` or ``256.0.0.1`` is neither an IPv4 address nor a name."""
    try:
        name = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    name = name.removesuffix(".")
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    return all(_HOST_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _unbracketed_ipv6_hint(text: str) -> str:
    """Why ``text`` (an IPv6 address without brackets, perhaps with a port) is
    refused, with the spellings it may have meant."""
    head, _, tail = text.rpartition(":")
    options = []
    if tail.isdigit() and int(tail) <= 65535 and _is_ipv6(head):
        options.append(f"[{head}]:{tail} (port {tail})")
    if _is_ipv6(text):
        options.append(f"[{text}]:PORT")
    if not options:
        return f"{text!r}: not an address (an IPv6 address goes in brackets: [2001:db8::1]:9999)"
    return f"{text!r}: an IPv6 address goes in brackets: {' or '.join(options)}"


def _flag_address(text: str, *, ip_only: bool = False) -> tuple[str, int | None]:
    """``(host, port)`` of a ``HOST:PORT`` flag; port None when it was left out.

    Refuses an IPv6 address without brackets (``::1:9107`` could be
    ``[::1]:9107`` or an address of its own) and a host that is neither an IP
    address nor a possible DNS name.
    """
    text = text.strip()
    if not text.startswith("[") and text.count(":") > 1:
        raise argparse.ArgumentTypeError(_unbracketed_ipv6_hint(text))
    try:
        host, port = split_address(text, default_port=_NO_PORT)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if ip_only and not is_ip_literal(host):
        raise argparse.ArgumentTypeError(f"{text!r}: the host must be an IP address")
    if not is_ip_literal(host) and not _is_host_name(host):
        raise argparse.ArgumentTypeError(
            f"{text!r}: {host!r} is neither an IP address nor a host name"
        )
    return host, None if port == _NO_PORT else port


def _flag_address_with_port(text: str, *, ip_only: bool = False) -> tuple[str, int]:
    host, port = _flag_address(text, ip_only=ip_only)
    if port is None:
        example = format_address(host, DEFAULT_PORT)
        raise argparse.ArgumentTypeError(f"{text!r}: give the port too, as {example}")
    return host, port


def _listen_address(text: str) -> tuple[str, int | None]:
    return _flag_address(text, ip_only=True)


def _join_address(text: str) -> str:
    host, port = _flag_address(text)
    if port == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: port 0 cannot be joined")
    return format_address(host, DEFAULT_PORT if port is None else port)


def _advertise_address(text: str) -> str:
    host, port = _flag_address_with_port(text, ip_only=True)
    if port == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: port 0 cannot be reached")
    return format_address(host, port)


def _http_address(text: str) -> str:
    host, port = _flag_address(text)
    return format_address(host, _DEFAULT_HTTP_PORT if port is None else port)


def _endpoint_address(text: str) -> str:
    address = _http_address(text)
    if address.endswith(":0"):
        raise argparse.ArgumentTypeError(f"{text!r}: port 0 cannot be reached")
    return address


def _metadata(text: str) -> bytes:
    # surrogateescape gives back the very bytes of the command line, even
    # where they were not UTF-8.
    return text.encode("utf-8", "surrogateescape")


def _log_level(text: str) -> int:
    try:
        return _LOG_LEVELS[text.strip().lower()]
    except KeyError:
        names = ", ".join(_LOG_LEVELS)
        raise argparse.ArgumentTypeError(f"{text!r}: must be one of {names}") from None


def _timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0, at most 3600")
    return seconds


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


def rfc3339(timestamp: float) -> str:
    """A POSIX time as RFC 3339 UTC with milliseconds: ``2026-12-01T22:05:01.123Z``."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _clock() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]


class _LogFormatter(logging.Formatter):
    """``2026-12-01T22:05:01.123Z INFO message``: the time in UTC, then the level."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """The record's time in RFC 3339 UTC with milliseconds."""
        return rfc3339(record.created)


@contextlib.contextmanager
def log_to_stderr(level: int) -> Iterator[None]:
    """Send the ``trio_swim`` loggers' records of ``level`` and above to stderr.

    One handler on the ``trio_swim`` logger, one line per record; removed
    again (and the logger's level restored) on the way out, so that running
    the command in a process that logs on its own leaves that process as it
    was.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    package = logging.getLogger("trio_swim")
    previous_level = package.level
    package.addHandler(handler)
    package.setLevel(level)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(previous_level)


def _fail(command: str, message: str, status: int = _EXIT_USAGE) -> int:
    print(f"{command}: error: {message}", file=sys.stderr, flush=True)
    return status


# --------------------------------------------------------------------- run

# Which flag set which Config field, so an error names what the user typed.
_FLAG_OF_FIELD: Final = {
    "listen_ip": "--listen",
    "listen_port": "--listen",
    "advertise_address": "--advertise",
    "initial_hosts": "--join",
    "cluster_name": "--cluster",
    "heartbeat_millis": "--heartbeat-ms",
    "metadata": "--metadata",
    "http_address": "--http",
    "multicast_enabled": "--multicast",
    "secret_keys": "--key-file",
    "accept_plaintext": "--accept-plaintext",
    "send_plaintext": "--send-plaintext",
}


def run_config(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """The Config of ``trio-swim run``: ``SWIM_*`` variables, overridden by flags.

    Raises :class:`ConfigError`; a bad flag value is named by its flag. With
    ``--strict-env``, an unknown ``SWIM_*`` variable is an error too (without,
    a warning on the ``trio_swim.config`` logger).
    """
    flags: dict[str, Any] = {}
    if args.listen is not None:
        flags["listen_ip"], port = args.listen
        if port is not None:
            flags["listen_port"] = port
    if args.advertise is not None:
        flags["advertise_address"] = args.advertise
    if args.join:
        flags["initial_hosts"] = list(args.join)
    if args.cluster is not None:
        flags["cluster_name"] = args.cluster
    if args.heartbeat_ms is not None:
        flags["heartbeat_millis"] = args.heartbeat_ms
    if args.metadata is not None:
        flags["metadata"] = args.metadata
    if args.http is not None:
        flags["http_address"] = args.http
    if args.multicast is not None:
        flags["multicast_enabled"] = args.multicast
    if args.key_file is not None:
        flags["secret_keys"] = args.key_file
    if args.accept_plaintext is not None:
        flags["accept_plaintext"] = args.accept_plaintext
    if args.send_plaintext is not None:
        flags["send_plaintext"] = args.send_plaintext
    if args.strict_env:
        check_env_variables(environ)
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
    with log_to_stderr(logging.INFO if args.log_level is None else args.log_level):
        try:
            config = run_config(args)
        except ConfigError as exc:
            return _fail(command, str(exc))
        try:
            return trio.run(_run_member, config, args.json, command)
        except KeyboardInterrupt:
            return _EXIT_INTERRUPTED


async def _run_member(config: Config, json_output: bool, command: str) -> int:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        started = False
        try:
            async with open_member(config) as member:
                started = True
                _logger.info(
                    "listening on %s (cluster %r)%s",
                    member.address,
                    config.cluster_name,
                    _bound_note(config, member.address),
                )
                if member.http_address is not None:
                    _logger.info("status endpoint on http://%s/", member.http_address)
                if config.initial_hosts:
                    _logger.info("joining %s", ", ".join(config.initial_hosts))
                render = _json_renderer(member.address) if json_output else _human_renderer()
                events = member.events()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_print_events, events, render, nursery.cancel_scope)
                    nursery.start_soon(_broadcast_stdin, member)
                    nursery.start_soon(_stop_on_signal, signals, nursery.cancel_scope)
                _logger.info("leaving the cluster as %s", member.address)
        except OSError as exc:
            if started:
                raise
            return _fail(command, _bind_error(config, exc))
    _logger.info("left")
    return _EXIT_OK


def _bound_note(config: Config, address: str) -> str:
    """`` (bound to 0.0.0.0:9000)`` when other members reach this one elsewhere."""
    if not config.advertise_address:
        return ""
    bound = format_address(config.listen_ip, config.listen_port)
    return "" if bound == address else f" (bound to {bound})"


def _bind_error(config: Config, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE and exc.strerror:
        return exc.strerror
    address = format_address(config.listen_ip, config.listen_port)
    return f"cannot listen on {address}: {exc.strerror or exc}"


async def _stop_on_signal(signals: AsyncIterator[int], stop: trio.CancelScope) -> None:
    async for signum in signals:
        _logger.info("received %s", signal.Signals(signum).name)
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
            _logger.warning("stdout was closed")
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
                _logger.warning(
                    "line of %d bytes not broadcast: the limit is %d bytes", length, limit
                )
            elif line:
                await member.broadcast(line)
        if not chunk:
            return


def event_json(event: Event, *, member: str, timestamp: float | None = None) -> str:
    """One event as one line of JSON, as ``trio-swim run --json`` prints it.

    Every line starts with ``"time"`` (``timestamp``, a POSIX time, default
    now, in RFC 3339 UTC with milliseconds: ``"2026-12-01T22:05:01.123Z"``)
    and ``"member"`` (the address of the member that saw the event), then
    ``{"event": "status", "node", "status", "previous", "incarnation",
    "metadata"}``, ``{"event": "metadata", "node", "metadata", "previous"}``,
    ``{"event": "broadcast", "origin", "payload"}``, ``{"event": "message",
    "origin", "payload", "reliable"}``, ``{"event": "removed", "node",
    "status", "incarnation"}`` and ``{"event": "missed", "count"}``. Bytes
    that are not UTF-8 (a payload, metadata) go under the same key with
    ``_b64`` appended, in base64.
    """
    record: dict[str, Any] = {
        "time": rfc3339(time.time() if timestamp is None else timestamp),
        "member": member,
    }
    if isinstance(event, StatusChanged):
        record |= {
            "event": "status",
            "node": event.node.address,
            "status": event.status.value,
            "previous": None if event.previous is None else event.previous.value,
            "incarnation": event.node.incarnation,
        }
        _put_bytes(record, "metadata", event.node.metadata)
    elif isinstance(event, MetadataChanged):
        record |= {"event": "metadata", "node": event.node.address}
        _put_bytes(record, "metadata", event.node.metadata)
        _put_bytes(record, "previous", event.previous)
    elif isinstance(event, BroadcastReceived):
        record |= {"event": "broadcast", "origin": event.origin}
        _put_bytes(record, "payload", event.payload)
    elif isinstance(event, MessageReceived):
        record |= {"event": "message", "origin": event.origin}
        _put_bytes(record, "payload", event.payload)
        record["reliable"] = event.reliable
    elif isinstance(event, MemberRemoved):
        record |= {
            "event": "removed",
            "node": event.node.address,
            "status": event.node.status.value,
            "incarnation": event.node.incarnation,
        }
    else:
        record |= {"event": "missed", "count": event.count}
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


def _json_renderer(member: str) -> Callable[[Event], str]:
    def render(event: Event) -> str:
        return event_json(event, member=member)

    return render


def _human_renderer() -> Callable[[Event], str]:
    arrow = "→" if _can_encode("→", _stdout_encoding()) else "->"

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


# --------------------------------------------------------- members, stats


class EndpointError(Exception):
    """A status endpoint could not be read; the message is one line for the user."""


def _endpoint_url(args: argparse.Namespace, path: str) -> str:
    """``http://HOST:PORT/path`` of ``--http``, or of ``SWIM_HTTP_ADDRESS``.

    A wildcard host (the address a member may bind) becomes the loopback
    address of its family. Raises :class:`ConfigError` when neither is given.
    """
    address: str | None = args.http
    if address is None:
        variable = env_variable("http_address")
        raw = os.environ.get(variable, "").strip()
        if not raw:
            raise ConfigError(f"give --http HOST:PORT (or set {variable})")
        try:
            address = _endpoint_address(raw)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"{variable}: {exc}") from None
    host, port = split_address(address)
    if is_ip_literal(host) and ipaddress.ip_address(host).is_unspecified:
        host = "::1" if ":" in host else "127.0.0.1"
    return f"http://{format_address(host, port)}{path}"


def fetch_json(url: str, timeout: float) -> Any:
    """GET ``url`` and decode its JSON answer.

    Raises :class:`EndpointError` with one line that says what went wrong:
    refused, no answer within ``timeout`` seconds, an HTTP error, more than
    32 MiB, or an answer that is not JSON.
    """
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    # No proxy, whatever http_proxy says: the endpoint is a member on this
    # network, and a proxy would answer for it (or not at all).
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with direct.open(request, timeout=timeout) as response:
            body = response.read(_HTTP_MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise EndpointError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise EndpointError(f"cannot reach {url}: {_network_reason(exc.reason, timeout)}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise EndpointError(f"cannot read {url}: {_network_reason(exc, timeout)}") from None
    if len(body) > _HTTP_MAX_BYTES:
        raise EndpointError(f"{url}: the answer is over {_HTTP_MAX_BYTES // 1_048_576} MiB")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise EndpointError(f"{url}: the answer is not JSON") from None


def _network_reason(reason: object, timeout: float) -> str:
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the member running with --http?)"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    if isinstance(reason, socket.gaierror):
        return str(reason)
    return str(reason) or type(reason).__name__


def _unexpected(url: str, why: str) -> EndpointError:
    return EndpointError(f"{url}: unexpected answer: {why}")


def members_table(document: Any, url: str = "the endpoint") -> list[str]:
    """The lines ``trio-swim members`` prints for a ``GET /members`` answer.

    A title (the member and its local health), then one row per member,
    sorted by address: address, status, incarnation and metadata (its text,
    or ``base64:...`` when not UTF-8). Raises :class:`EndpointError` for an
    answer of another shape.
    """
    if not isinstance(document, dict) or not isinstance(document.get("members"), list):
        raise _unexpected(url, 'no "members" list')
    rows = []
    for entry in document["members"]:
        if not isinstance(entry, dict):
            raise _unexpected(url, "a member that is not an object")
        address, status, incarnation = (entry.get(k) for k in ("address", "status", "incarnation"))
        if not (isinstance(address, str) and isinstance(status, str)):
            raise _unexpected(url, "a member without an address or a status")
        if not isinstance(incarnation, int) or isinstance(incarnation, bool):
            raise _unexpected(url, f"incarnation of {_printable(address)} is not a whole number")
        if isinstance(entry.get("metadata"), str):
            metadata = _printable(entry["metadata"]) or "-"
        elif isinstance(entry.get("metadata_b64"), str):
            metadata = "base64:" + _printable(entry["metadata_b64"])
        else:
            metadata = "-"
        rows.append((_printable(address), _printable(status), str(incarnation), metadata))
    rows.sort(key=lambda row: _address_order(row[0]))
    header = ("ADDRESS", "STATUS", "INCARNATION", "METADATA")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    title = f"members seen by {_printable(str(document.get('address', '?')))}"
    if isinstance(document.get("cluster"), str):
        title += f" in cluster {_printable(document['cluster'])!r}"
    health = document.get("local_health")
    if isinstance(health, int) and not isinstance(health, bool):
        title += f" (local health {health})"
    lines = [title]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2])]
        lines.append("  ".join([*cells, row[3]]))
    return lines


def _address_order(address: str) -> tuple[int, str, int]:
    """Sort key: IPv4 before IPv6 before names, then by host and port number."""
    try:
        host, port = split_address(address)
    except AddressError:
        return (3, address, 0)
    if not is_ip_literal(host):
        return (2, host, port)
    ip = ipaddress.ip_address(host)
    return (ip.version // 2 - 2, ip.exploded, port)


def stats_lines(document: Any, url: str = "the endpoint") -> list[str]:
    """The lines ``trio-swim stats`` prints for a ``GET /stats`` answer: a title,
    then one ``name  value`` line per statistic, in the endpoint's order."""
    if not isinstance(document, dict) or not isinstance(document.get("statistics"), dict):
        raise _unexpected(url, 'no "statistics" object')
    statistics: dict[str, Any] = document["statistics"]
    rows = [
        (_printable(str(name)), _printable(json.dumps(value, ensure_ascii=False)))
        for name, value in statistics.items()
    ]
    title = f"statistics of {_printable(str(document.get('address', '?')))}"
    if not rows:
        return [title]
    name_width = max(len(name) for name, _ in rows)
    value_width = max(len(value) for _, value in rows)
    return [
        title,
        *(f"{name.ljust(name_width)}  {value.rjust(value_width)}" for name, value in rows),
    ]


def _query(args: argparse.Namespace, path: str, lines: Callable[[Any, str], list[str]]) -> int:
    command = f"{_PROG} {path.strip('/')}"
    try:
        url = _endpoint_url(args, path)
    except ConfigError as exc:
        return _fail(command, str(exc))
    try:
        document = fetch_json(url, args.timeout)
        text = lines(document, url)
    except EndpointError as exc:
        return _fail(command, str(exc), _EXIT_FAILED)
    if args.json:
        print(json.dumps(document))
    else:
        print("\n".join(text))
    return _EXIT_OK


def _command_members(args: argparse.Namespace) -> int:
    return _query(args, "/members", members_table)


def _command_stats(args: argparse.Namespace) -> int:
    return _query(args, "/stats", stats_lines)


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
_DEMO_LEAVE_SECONDS: Final = 3.0
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
        self.leave = trio.Event()
        """Set to have this member leave gracefully (it announces LEFT)."""

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
            # The last view, before the members still running leave.
            self.screen.redraw(self.table())
            for node in self.nodes:
                node.leave.set()
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

        self.say("the others leave gracefully, the last started first")
        staying = self._survivors()
        while len(staying) > 1:
            leaver = staying.pop()
            left_at = trio.current_time()
            leaver.leave.set()
            all_see_left = functools.partial(self._all_see_left, leaver, staying)
            if not await self._wait(all_see_left, _DEMO_LEAVE_SECONDS):
                limit = _DEMO_LEAVE_SECONDS
                self.say(f"not every member saw {leaver.label} leave within {limit:g} s")
                return _EXIT_FAILED
            after = trio.current_time() - left_at
            watchers = ", ".join(n.label for n in staying)
            verb = "sees" if len(staying) == 1 else "see"
            self.say(f"{leaver.label} left: {watchers} {verb} it LEFT (+{after:.2f} s)")
        self.screen.snapshot(self.table())
        self.say(f"{staying[0].label} leaves last, and the demo ends")
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
        """Run one member until it is asked to leave (gracefully) or killed (silently)."""
        config = Config(initial_hosts=initial_hosts, **_DEMO_CONFIG)
        transport = KillableTransport(await open_udp_transport(config.listen_ip, 0))
        # Killing cancels this scope around the member, so it never leaves;
        # node.leave instead returns from the block, so it does leave.
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
                    await node.leave.wait()
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

    def _all_see_left(self, leaver: _DemoNode, observers: list[_DemoNode]) -> bool:
        return all(n.view.get(leaver.address) is Status.LEFT for n in observers)

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
            if observer.leave.is_set():
                lines.append(row + "(left the cluster)")
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

    # Only trouble is logged: the story is on stdout.
    with log_to_stderr(logging.WARNING):
        try:
            return trio.run(demo)
        except KeyboardInterrupt:
            return _EXIT_INTERRUPTED
