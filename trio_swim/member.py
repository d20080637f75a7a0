"""The trio runner: ``open_member()``, :class:`Member` and the nursery behind it.

Every protocol decision is made by the sans-I/O core, :class:`~trio_swim.protocol.Swim`.
The runner owns the clock and the sockets and does nothing but feed the core
and carry out what it asks, in four tasks:

- the **receiver** hands each datagram to ``Swim.receive``;
- the **clock** sleeps until ``Swim.next_deadline()`` (or an earlier wake-up)
  and calls ``Swim.tick``;
- the **sender** writes what cannot go out at once: after every input the
  runner pulls ``Swim.next_datagram()`` and sends without waiting while the
  socket takes it (a UDP socket almost always does); when it would block, the
  sender task takes over, in order, and waits for the socket;
- the **seeds** task resolves ``initial_hosts`` (DNS is I/O) for the core;
- the **stream listener** answers TCP exchanges (``Swim.handle_stream``), and
  each exchange the core asks for (``Swim.next_stream``) runs in a task of
  its own, bounded by its timeout,

plus multicast discovery when enabled. After every input the runner drains
the core's events: user events go to the subscribers (never blocking the
protocol), notices wake a waiting ``join()`` or leave. Every input is a
synchronous call between awaits, so a cancellation never leaves half of one.
"""

from __future__ import annotations

import errno
import logging
import math
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

import msgspec
import trio

from ._hub import EventHub, EventStream
from .addresses import AddressError, canonical_address
from .config import Config
from .discovery import open_discovery_socket, run_discovery
from .events import StatusChanged
from .membership import Node, Status
from .protocol import (
    BroadcastTooLarge,
    Declared,
    DropReport,
    HealthWarning,
    Joined,
    JoinRetrying,
    LeaveAcked,
    MemberStatistics,
    MessageTooLarge,
    MetadataTooLarge,
    ProbeFailed,
    Refuted,
    StreamDone,
    StreamRequest,
    Swim,
    SyncAnswered,
    default_join_wait,
)
from .security import Keyring
from .transport import StreamLimits, Transport, open_udp_transport

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "AddressError",
    "BroadcastTooLarge",
    "DeliveryFailed",
    "Member",
    "MemberStatistics",
    "MessageTooLarge",
    "MetadataTooLarge",
    "open_member",
    "run_member",
]

logger = logging.getLogger("trio_swim.member")
# Drops and send errors are logged at most once per this many seconds, a
# few lines each time: a flood of junk must not flood the log.
REPORT_SECONDS: Final = 60.0
# Sources named in one report, by reason; the rest are summed in one line.
REPORT_LINES: Final = 5

# How often the names in initial_hosts are resolved again once they resolved;
# while some do not, the first retries come sooner (1, 2, 4 ... seconds).
SEED_RESOLVE_SECONDS: Final = 30.0


class DeliveryFailed(OSError):
    """``Member.send_reliable``: the receiver did not acknowledge the message in time."""


def wall_clock_incarnation() -> int:
    """Where a freshly started member's incarnation begins: the wall clock in
    milliseconds, so that a restarted member comes back above its old self."""
    return time.time_ns() // 1_000_000


class Member:
    """One member of a cluster. Made by :func:`open_member`; not constructed directly."""

    def __init__(
        self,
        config: Config,
        transport: Transport,
        *,
        rng: random.Random,
        incarnation: int,
    ) -> None:
        self.config = config
        self._transport = transport
        self.address: str = config.advertise_address or transport.local_address
        """The ``host:port`` this member is known by: ``Config.advertise_address``,
        or else the address it is bound to."""
        self._swim = Swim(
            config,
            self.address,
            rng=rng,
            incarnation=incarnation,
            now=trio.current_time(),
            keyring=Keyring(config.secret_keys) if config.secret_keys else None,
        )
        self._hub = EventHub()
        self._join_replies: dict[str, trio.Event] = {}
        self._leave_acked = False
        # The clock's sleep, whose deadline follows the core's next deadline
        # (earlier when an input set a sooner timer, later when the due timer
        # went stale, as an answered probe's timeout does).
        self._clock_sleep = trio.CancelScope()
        self._sender_wakeup = trio.Event()
        # True while the sender task holds datagrams the socket would not
        # take: later ones queue behind them (in the core), in order.
        self._sender_busy = False
        self._blocked: tuple[str, bytes] | None = None
        self._sent = 0
        self._sent_bytes = 0
        self._send_errors = 0
        self._closed = False
        self._joined = trio.Event()
        if not config.initial_hosts:
            self._joined.set()  # the first member: nobody to join
        # send_reliable callers waiting for their StreamDone, by token.
        self._stream_waiters: dict[int, trio.Event] = {}
        self._stream_results: dict[int, bool] = {}
        self._stream_limits = StreamLimits(
            max_frame=config.max_stream_bytes, timeout=config.stream_timeout_millis / 1000
        )
        self._nursery: trio.Nursery | None = None
        self._stream_bytes_sent = 0
        self.http_address: str | None = None
        """Where the status endpoint listens (``Config.http_address``, with the
        port chosen if it was 0); None when it is off."""
        # Every record carries the member's address as ``record.member``:
        # many members may share a process and a logger.
        self._log = logging.LoggerAdapter(logger, {"member": self.address})

    # ------------------------------------------------------------ public API

    def events(self, *, buffer: int | None = None) -> EventStream:
        """Subscribe to events from now on (see :class:`EventStream`).

        ``buffer`` defaults to ``Config.event_buffer``.
        """
        return self._hub.subscribe(self.config.event_buffer if buffer is None else buffer)

    def members(self) -> list[Node]:
        """Every known member, this one included, in no particular order."""
        return self._swim.members()

    def healthy_members(self) -> list[Node]:
        """The ALIVE members, this one included."""
        return self._swim.healthy_members()

    @property
    def node(self) -> Node:
        """This member's own record."""
        return self._swim.me

    def get(self, address: str) -> Node | None:
        """The record of the member at ``address`` (any spelling of it), if known.

        Raises :class:`AddressError` if ``address`` is not an address.
        """
        return self._swim.get(canonical_address(address))

    async def wait_joined(self) -> None:
        """Return once this member has exchanged state with another member.

        At once if it already has, or if it has no ``initial_hosts`` (it is
        the first). Waits for as long as no seed answers: bound it with
        ``trio.fail_after``.
        """
        await self._joined.wait()

    async def set_metadata(self, metadata: bytes) -> None:
        """Announce new metadata for this member (``Node.metadata`` everywhere).

        Every other member sees it as :class:`~trio_swim.MetadataChanged`.
        Raises :class:`MetadataTooLarge` over ``Config.max_metadata_bytes``.
        """
        self._check_open()
        self._swim.set_metadata(metadata, trio.current_time())
        self._after_input()
        await trio.lowlevel.checkpoint()

    async def broadcast(self, payload: bytes) -> None:
        """Send ``payload`` once to every other member (not to this one).

        Raises :class:`BroadcastTooLarge` over ``Config.max_broadcast_bytes``.
        """
        self._check_open()
        self._swim.broadcast(payload, trio.current_time())
        self._after_input()
        await trio.lowlevel.checkpoint()

    async def send(self, address: str, payload: bytes) -> None:
        """Send ``payload`` to the member at ``address`` in one datagram.

        Best effort: it may be lost, and nothing tells. The receiver gets it
        as :class:`~trio_swim.MessageReceived` (``reliable`` False). Raises
        :class:`MessageTooLarge` over what one datagram carries (the message
        names the limit) and :class:`AddressError` if ``address`` is not one.
        """
        self._check_open()
        self._swim.send(canonical_address(address), payload, trio.current_time())
        self._after_input()
        await trio.lowlevel.checkpoint()

    async def send_reliable(self, address: str, payload: bytes) -> None:
        """Send ``payload`` to the member at ``address`` over a TCP stream.

        Returns once the receiver has acknowledged it (it got it as
        :class:`~trio_swim.MessageReceived`, ``reliable`` True). Raises
        :class:`DeliveryFailed` if that does not happen within
        ``Config.stream_timeout_millis`` (unreachable, refused, too slow),
        and :class:`MessageTooLarge` over ``Config.max_stream_bytes``.
        """
        self._check_open()
        target = canonical_address(address)
        token = self._swim.send_reliable(target, payload, trio.current_time())
        done = self._stream_waiters[token] = trio.Event()
        try:
            self._after_input()
            await done.wait()
        finally:
            del self._stream_waiters[token]
        if not self._stream_results.pop(token, False):
            seconds = self.config.stream_timeout_millis / 1000
            raise DeliveryFailed(
                errno.ETIMEDOUT,
                f"{target} did not acknowledge the message within {seconds:g} s "
                "(unreachable, refused or too slow)",
            )

    async def join(self, *addresses: str, wait: float | None = None) -> int:
        """Exchange full state with each address; return how many answered.

        Addresses are ``host``, ``host:port`` or ``[v6]:port``; names are
        resolved (to every address they have). Waits at most ``wait`` seconds
        (default: four protocol periods, at least one second) for the answers.
        """
        self._check_open()
        targets = [a for text in addresses for a in await self._transport.resolve(text)]
        targets = [t for t in dict.fromkeys(targets) if t != self.address]
        if not targets:
            return 0
        waiters = {t: self._join_replies.setdefault(t, trio.Event()) for t in targets}
        self._swim.join(targets, trio.current_time())
        self._after_input()
        with trio.move_on_after(default_join_wait(self.config) if wait is None else wait):
            for event in waiters.values():
                await event.wait()
        for target in targets:
            self._join_replies.pop(target, None)
        return sum(1 for event in waiters.values() if event.is_set())

    def statistics(self) -> MemberStatistics:
        """A snapshot of this member's counters."""
        core = self._swim.statistics()
        streams = self._transport.stream_counters
        # The core counts the stream frames it wrote; the runner the datagrams.
        return msgspec.structs.replace(
            core,
            packets_sent=self._sent + core.stream_exchanges + core.stream_failures,
            bytes_sent=self._sent_bytes + self._stream_bytes_sent,
            send_errors=self._send_errors,
            streams_accepted=streams.accepted,
            streams_refused=streams.refused,
            streams_dropped=streams.dropped,
        )

    @property
    def keyring(self) -> Keyring | None:
        """The cluster's keys, for rotation on a live member (None without keys).

        Install a new key on every member, then ``use`` it everywhere, then
        ``remove`` the old one: at every step each member can open what every
        other sends.
        """
        return self._swim.keyring

    def receive_datagram(self, data: bytes, source: str | None = None) -> None:
        """Handle one datagram now, as if it had arrived on the socket from
        ``source`` (None: from the sender it claims)."""
        self._swim.receive(data, trio.current_time(), source)
        self._after_input()

    # ------------------------------------------------------------ plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this member has left its cluster")

    def _after_input(self) -> None:
        """Carry out what the last input to the core asked for."""
        while (event := self._swim.next_event()) is not None:
            if isinstance(event, SyncAnswered):
                waiter = self._join_replies.get(event.address)
                if waiter is not None:
                    waiter.set()
            elif isinstance(event, LeaveAcked):
                self._leave_acked = True
            elif isinstance(event, StreamDone):
                done = self._stream_waiters.get(event.token)
                if done is not None:
                    self._stream_results[event.token] = event.ok
                    done.set()
            elif isinstance(event, Joined):
                if not self._joined.is_set():  # the first member joins nobody
                    self._log.info("joined via %s (%d members)", event.address, event.members)
                    self._joined.set()
            elif isinstance(event, JoinRetrying):
                self._log.info(
                    "no answer from %s, retrying in %.1f s", ", ".join(event.seeds), event.retry_in
                )
            elif isinstance(event, (Declared, Refuted, HealthWarning, ProbeFailed)):
                _log_notice(self._log, event)
            else:
                if isinstance(event, StatusChanged) and event.status is Status.LEFT:
                    self._log.info("%s left the cluster", event.node.address)
                self._hub.publish(event)
        while (request := self._swim.next_stream()) is not None:
            if self._nursery is None:
                self._swim.stream_reply(request.token, None, trio.current_time())
            else:
                self._nursery.start_soon(self._exchange, request)
        self._send_now()
        deadline = self._swim.next_deadline()
        self._clock_sleep.deadline = math.inf if deadline is None else deadline

    async def _send(self, address: str, data: bytes) -> None:
        if await self._transport.send(data, address):
            self._count_send(len(data))
        else:
            self._count_send(None)

    def _count_send(self, size: int | None) -> None:
        """One datagram went out (``size`` bytes), or could not (None)."""
        if size is None:
            self._send_errors += 1
        else:
            self._sent += 1
            self._sent_bytes += size

    def _send_now(self) -> None:
        """Send what the core has while the socket takes it without waiting."""
        if self._sender_busy:
            return
        while (out := self._swim.next_datagram()) is not None:
            sent = self._transport.send_nowait(out[1], out[0])
            if sent is None:
                self._blocked = out
                self._sender_busy = True
                self._sender_wakeup.set()
                return
            self._count_send(len(out[1]) if sent else None)

    async def _exchange(self, request: StreamRequest) -> None:
        """Carry out one stream exchange the core asked for, and give it the answer."""
        answer: bytes | None = None
        with trio.move_on_after(request.timeout):
            try:
                answer = await self._transport.request(
                    request.address, request.data, self._stream_limits
                )
            except (OSError, trio.BrokenResourceError):
                pass  # refused, reset, closed early: the exchange failed
        self._stream_bytes_sent += len(request.data)
        self._swim.stream_reply(request.token, answer, trio.current_time())
        self._after_input()

    def _answer_stream(self, data: bytes, source: str) -> bytes | None:
        answer = self._swim.handle_stream(data, trio.current_time(), source)
        self._after_input()
        if answer is not None:
            self._stream_bytes_sent += len(answer)
        return answer

    async def _reporter(self) -> None:
        """Every REPORT_SECONDS: what was dropped, and send errors, if any."""
        errors = self._send_errors
        while True:
            await trio.sleep(REPORT_SECONDS)
            _log_drops(self._log, self._swim.take_drops())
            if self._send_errors > errors:
                self._log.warning(
                    "%s datagrams could not be sent in the last %d s",
                    f"{self._send_errors - errors:,}",
                    REPORT_SECONDS,
                )
                errors = self._send_errors

    async def _sender(self) -> None:
        while True:
            await self._sender_wakeup.wait()
            self._sender_wakeup = trio.Event()
            out, self._blocked = self._blocked, None
            while out is not None:
                await self._send(*out)
                out = self._swim.next_datagram()
            self._sender_busy = False

    async def _receiver(self) -> None:
        while True:
            data, source = await self._transport.receive()
            self.receive_datagram(data, source)

    async def _clock(self) -> None:
        while True:
            self._swim.tick(trio.current_time())
            with trio.CancelScope() as self._clock_sleep:
                self._after_input()  # sets the deadline
                await trio.sleep_forever()

    async def _seeds(self) -> None:
        """Resolve ``initial_hosts`` for the core, which joins them; again later,
        as names may move. Names that do not resolve yet are tried again soon."""
        retry = 1.0
        while True:
            targets: list[str] = []
            resolved = 0
            for host in self.config.initial_hosts:
                try:
                    targets += await self._transport.resolve(host)
                except (OSError, ValueError):
                    continue
                resolved += 1
            if targets and all(t == self.address for t in targets):
                # Only ourselves to join (the first pod behind a name): we are
                # the first member. The name is resolved again later all the
                # same: after a long partition it is the way back.
                self._joined.set()
            elif targets:
                self._swim.set_seeds(targets, trio.current_time())
                self._after_input()
            if resolved == len(self.config.initial_hosts):
                await trio.sleep(SEED_RESOLVE_SECONDS)
            else:
                await trio.sleep(retry)
                retry = min(retry * 2, SEED_RESOLVE_SECONDS)

    async def _leave(self) -> None:
        """Announce LEFT and wait (bounded by the caller) for one member to ack it.

        Runs after the member's tasks have stopped, so it writes to and reads
        from the transport itself: a block left by an outer cancellation still
        says goodbye.
        """
        if not self._swim.leave(trio.current_time()):
            return
        while (out := self._swim.next_datagram()) is not None:
            await self._send(*out)
        while not self._leave_acked:
            data, source = await self._transport.receive()
            self.receive_datagram(data, source)

    async def _run(
        self,
        extra_tasks: tuple[Callable[[Member], Awaitable[None]], ...],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._sender)
            nursery.start_soon(self._receiver)
            nursery.start_soon(self._clock)
            nursery.start_soon(self._reporter)
            nursery.start_soon(
                self._transport.serve_streams, self._answer_stream, self._stream_limits
            )
            if self.config.initial_hosts:
                nursery.start_soon(self._seeds)
            for task in extra_tasks:
                nursery.start_soon(task, self)
            task_status.started()


_Log = logging.LoggerAdapter[logging.Logger]


def _log_notice(log: _Log, notice: Declared | Refuted | HealthWarning | ProbeFailed) -> None:
    if isinstance(notice, Declared):
        if notice.status is Status.DEAD:
            log.info(
                "declared %s DEAD (incarnation %d): no answer, no refutation",
                notice.address,
                notice.incarnation,
            )
        else:
            log.info("%s answers again after being held DEAD: healed", notice.address)
    elif isinstance(notice, Refuted):
        log.info(
            "refuted a suspicion of this member raised by %s (incarnation now %d)",
            notice.accuser,
            notice.incarnation,
        )
    elif isinstance(notice, HealthWarning):
        log.warning(
            "local health %d of %d: this member misses answers it should get "
            "(overloaded, or its network is slow); its timeouts are scaled x%d",
            notice.score,
            notice.maximum,
            notice.score + 1,
        )
    else:
        log.debug(
            "probe of %s failed (%d members asked to help, %d nacks)",
            notice.target,
            notice.helpers,
            notice.nacks,
        )


def _log_drops(log: _Log, reports: list[DropReport]) -> None:
    """A few WARNING lines for the drops of the last report period."""
    for report in reports[:REPORT_LINES]:
        if report.cluster is not None:
            what = f"packets of cluster {report.cluster!r}"
        else:
            what = f"{report.reason.value} packets"
        log.warning(
            "dropped %s %s from %s in the last %d s",
            f"{report.count:,}",
            what,
            report.source,
            REPORT_SECONDS,
        )
    rest = reports[REPORT_LINES:]
    if rest:
        log.warning(
            "dropped %s more packets from %d more sources in the last %d s",
            f"{sum(r.count for r in rest):,}",
            len(rest),
            REPORT_SECONDS,
        )


@asynccontextmanager
async def run_member(
    config: Config,
    transport: Transport,
    *,
    rng: random.Random,
    incarnation: int,
    extra_tasks: tuple[Callable[[Member], Awaitable[None]], ...] = (),
) -> AsyncIterator[Member]:
    """Run a member on a given transport (used by UDP and the simulator)."""
    member = Member(config, transport, rng=rng, incarnation=incarnation)
    body_error: BaseException | None = None
    try:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(member._run, extra_tasks)
                try:
                    yield member
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            member._closed = True
            member._nursery = None
            for done in member._stream_waiters.values():
                done.set()  # no answer will come: they fail
            # Every task has stopped; say goodbye even if we are being cancelled.
            with trio.CancelScope(shield=True):
                with trio.move_on_after(config.leave_timeout_millis / 1000):
                    await member._leave()
            member._hub.close()
    except BaseExceptionGroup as group:
        # Give the caller back its own exception, not a group around it.
        if body_error is not None and list(group.exceptions) == [body_error]:
            raise body_error from None
        raise
    finally:
        transport.close()


def _discovery_tasks(config: Config) -> tuple[Callable[[Member], Awaitable[None]], ...]:
    """Open the multicast socket now (so its errors come from open_member) and
    return the task that runs discovery on it."""
    if not config.multicast_enabled:
        return ()
    sock = open_discovery_socket(config)

    async def discovery(member: Member) -> None:
        await run_discovery(
            sock,
            member._swim.announcement(),
            interval=config.multicast_announce_interval,
            max_packet_bytes=config.max_packet_bytes,
            deliver=member.receive_datagram,
            count_send=member._count_send,
        )

    return (discovery,)


@asynccontextmanager
async def open_member(config: Config | None = None) -> AsyncIterator[Member]:
    """Bind a UDP socket, start a member, and leave the cluster on exit.

    ::

        async with trio_swim.open_member(Config(initial_hosts=["10.0.0.1"])) as m:
            async for event in m.events():
                ...

    Raises :class:`OSError` if the address (or ``Config.http_address``, the
    status endpoint's) is in use.
    """
    from .status import open_status_endpoint

    config = Config() if config is None else config
    transport = await open_udp_transport(config.listen_ip, config.listen_port)
    status = None
    try:
        # Listening at once, so that a taken HTTP port raises here.
        status = await open_status_endpoint(config)
        tasks = _discovery_tasks(config) + (() if status is None else (status,))
    except BaseException:
        transport.close()
        if status is not None:
            status.close()
        raise
    try:
        async with run_member(
            config,
            transport,
            # Unpredictable: probe sequence numbers are drawn from it, and an
            # outsider must not guess which ack a member is waiting for.
            rng=random.SystemRandom(),
            incarnation=wall_clock_incarnation(),
            extra_tasks=tasks,
        ) as member:
            member.http_address = None if status is None else status.address
            yield member
    finally:
        if status is not None:
            status.close()
