"""A running member: ``open_member()`` and the nursery of tasks behind it.

The tasks own time and the socket; every decision is made by the pure rules in
:mod:`.membership`, :mod:`.dissemination` and :mod:`.suspicion`, called from
synchronous code between awaits (so cancellation never leaves half an update).
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

import msgspec
import trio

from .addresses import is_canonical_ip_address
from .config import Config
from .dissemination import PiggybackQueue, SeenSet, retransmit_limit
from .events import (
    BroadcastReceived,
    EventHub,
    EventStream,
    MemberRemoved,
    StatusChanged,
)
from .membership import Change, MemberTable, Node, Refused, Refute, Status
from .suspicion import (
    LocalHealth,
    RttEstimator,
    Suspicion,
    expected_confirmations,
    min_suspicion_timeout,
    nack_timeout,
    probe_health_delta,
)
from .timers import TimerHeap
from .transport import Transport, open_udp_transport
from .wire import (
    Ack,
    Announce,
    Codec,
    DropReason,
    Message,
    Nack,
    Packet,
    Ping,
    PingReq,
    Sync,
    Update,
    UserBroadcast,
    WireStatus,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

# Outgoing packets waiting for the sender task; when full, new ones are dropped
# (and counted), as a congested network would drop them.
SEND_QUEUE_SIZE: Final = 4096
# Outstanding pings (own probes and relayed ping-reqs); further ping-reqs are
# refused (counted) until some complete.
MAX_PENDING_PINGS: Final = 1024
# User broadcasts still being retransmitted; when full, the most-sent one is
# dropped to make room.
MAX_PENDING_BROADCASTS: Final = 1024
# Broadcast ids remembered for de-duplication, and for how long.
BROADCAST_MEMORY: Final = 8192
BROADCAST_MEMORY_SECONDS: Final = 120.0
# How often (on average) seeds that are no longer live members are asked again.
SEED_RECHECK_SECONDS: Final = 30.0

_WIRE_STATUS = {
    Status.ALIVE: WireStatus.ALIVE,
    Status.SUSPECT: WireStatus.SUSPECT,
    Status.DEAD: WireStatus.DEAD,
    Status.LEFT: WireStatus.LEFT,
}
_STATUS = {wire: status for status, wire in _WIRE_STATUS.items()}


class BroadcastTooLarge(ValueError):
    """A broadcast payload is over ``Config.max_broadcast_bytes``."""


class MemberStatistics(msgspec.Struct, frozen=True):
    """Counters since the member started (see :meth:`Member.statistics`)."""

    packets_sent: int
    bytes_sent: int
    packets_received: int
    bytes_received: int
    dropped_oversized: int
    dropped_malformed: int
    dropped_version: int
    dropped_foreign_cluster: int
    dropped_send_queue_full: int
    send_errors: int
    refused_ping_reqs: int
    refused_table_full: int
    refused_broadcasts: int
    local_health: int
    """Lifeguard's local health score now (0 = healthy)."""
    probe_timeout: float
    """The ack timeout now, in seconds."""


@dataclasses.dataclass
class _Counters:
    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    dropped_send_queue_full: int = 0
    send_errors: int = 0
    refused_ping_reqs: int = 0
    refused_table_full: int = 0
    refused_broadcasts: int = 0


class _Probe:
    """A ping this member sent and waits on."""

    __slots__ = ("acked", "done", "nacks", "round_trip", "sent_at", "target")

    def __init__(self, target: str, sent_at: float) -> None:
        self.target = target
        self.sent_at = sent_at
        self.acked = False
        self.nacks = 0
        self.round_trip: float | None = None
        """Time to the target's own ack, even one too late for the timeout."""
        self.done = trio.Event()


class _Relay:
    """A ping sent on behalf of another member's ping-req."""

    __slots__ = ("requester", "requester_seq")

    def __init__(self, requester: str, requester_seq: int) -> None:
        self.requester = requester
        self.requester_seq = requester_seq


# Timer items: (kind, key, detail). Kinds:
#   "suspicion"  key=address, detail=incarnation
#   "retry"      key=address, detail=attempt number (-1: a one-off early retry)
#   "remove"     key=address, detail=incarnation of the LEFT record
#   "relay"      key="",      detail=seq of the relayed ping (time to nack)
#   "relay-end"  key="",      detail=seq of the relayed ping (stop waiting)
_Timer = tuple[str, str, int]


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
        self._rng = rng
        self._codec = Codec(config.cluster_name, config.max_packet_bytes)
        self.address: str = transport.local_address
        """The ``host:port`` this member is bound to and known by."""
        self._table = MemberTable(
            self.address, incarnation, max_members=config.max_members, rng=rng
        )
        self._updates: PiggybackQueue[Message] = PiggybackQueue(config.max_members)
        self._broadcasts: PiggybackQueue[Message] = PiggybackQueue(MAX_PENDING_BROADCASTS)
        self._seen = SeenSet(BROADCAST_MEMORY, BROADCAST_MEMORY_SECONDS)
        self._hub = EventHub()
        self._timers: TimerHeap[_Timer] = TimerHeap()
        self._timer_wakeup = trio.Event()
        self._health = LocalHealth(config.awareness_max_multiplier)
        self._rtt = RttEstimator(config.min_probe_timeout, config.probe_timeout)
        self._suspicions: dict[str, Suspicion] = {}
        # Suspects whose unconfirmed suspicion ran out, probed next (in this
        # order) before any verdict; at most one entry per suspicion.
        self._rechecks: dict[str, None] = {}
        self._retry_attempt: dict[str, int] = {}
        self._pending: dict[int, _Probe | _Relay] = {}
        self._last_sync_reply: dict[str, float] = {}
        self._last_dead_notice: dict[str, float] = {}
        # Senders not in the table, and when they were first heard from.
        self._unknown_since: dict[str, float] = {}
        self._join_replies: dict[str, trio.Event] = {}
        self._seq = rng.getrandbits(40)
        self._broadcast_seq = rng.getrandbits(40)
        self._drops = {reason: 0 for reason in DropReason}
        self._counts = _Counters()
        self._outbox_send, self._outbox = trio.open_memory_channel[tuple[str, list[Message]]](
            SEND_QUEUE_SIZE
        )
        self._envelope = self._codec.envelope_size(self.address)

    # ------------------------------------------------------------ public API

    def events(self, *, buffer: int | None = None) -> EventStream:
        """Subscribe to events from now on (see :class:`EventStream`).

        ``buffer`` defaults to ``Config.event_buffer``.
        """
        return self._hub.subscribe(self.config.event_buffer if buffer is None else buffer)

    def members(self) -> list[Node]:
        """Every known member, this one included, in no particular order."""
        return self._table.nodes()

    def healthy_members(self) -> list[Node]:
        """The ALIVE members, this one included."""
        return [n for n in self._table.nodes() if n.status is Status.ALIVE]

    @property
    def node(self) -> Node:
        """This member's own record."""
        return self._table.me

    async def broadcast(self, payload: bytes) -> None:
        """Send ``payload`` once to every other member (not to this one).

        Raises :class:`BroadcastTooLarge` over ``Config.max_broadcast_bytes``.
        """
        if len(payload) > self.config.max_broadcast_bytes:
            raise BroadcastTooLarge(
                f"broadcast of {len(payload)} bytes is over max_broadcast_bytes="
                f"{self.config.max_broadcast_bytes}"
            )
        await trio.lowlevel.checkpoint()
        self._broadcast_seq += 1
        message = UserBroadcast(self.address, self._broadcast_seq, bytes(payload))
        self._seen.first_time((self.address, self._broadcast_seq), trio.current_time())
        self._queue_broadcast(message)

    async def join(self, *addresses: str, wait: float | None = None) -> int:
        """Exchange full state with each address; return how many answered.

        Addresses are ``host``, ``host:port`` or ``[v6]:port``; names are
        resolved. Waits at most ``wait`` seconds (default: four protocol
        periods, at least one second) for the answers.
        """
        targets = [await self._transport.resolve(text) for text in addresses]
        return await self._exchange(targets, wait)

    async def _exchange(self, targets: list[str], wait: float | None) -> int:
        """Send our state to each target and wait for their replies."""
        targets = [t for t in dict.fromkeys(targets) if t != self.address]
        if not targets:
            return 0
        waiters = {t: self._join_replies.setdefault(t, trio.Event()) for t in targets}
        for target in targets:
            self._send_state(target, want_reply=True)
        limit = max(1.0, 4 * self.config.period) if wait is None else wait
        with trio.move_on_after(limit):
            for event in waiters.values():
                await event.wait()
        for target in targets:
            self._join_replies.pop(target, None)
        return sum(1 for event in waiters.values() if event.is_set())

    def statistics(self) -> MemberStatistics:
        """A snapshot of this member's counters."""
        c = self._counts
        return MemberStatistics(
            packets_sent=c.packets_sent,
            bytes_sent=c.bytes_sent,
            packets_received=c.packets_received,
            bytes_received=c.bytes_received,
            dropped_oversized=self._drops[DropReason.OVERSIZED],
            dropped_malformed=self._drops[DropReason.MALFORMED],
            dropped_version=self._drops[DropReason.VERSION],
            dropped_foreign_cluster=self._drops[DropReason.FOREIGN_CLUSTER],
            dropped_send_queue_full=c.dropped_send_queue_full,
            send_errors=c.send_errors,
            refused_ping_reqs=c.refused_ping_reqs,
            refused_table_full=c.refused_table_full,
            refused_broadcasts=c.refused_broadcasts,
            local_health=self._health.score,
            probe_timeout=self._probe_timeout(),
        )

    # ------------------------------------------------------------- sending

    def _send(self, address: str, messages: list[Message]) -> None:
        try:
            self._outbox_send.send_nowait((address, messages))
        except trio.WouldBlock:
            self._counts.dropped_send_queue_full += 1

    async def _sender(self) -> None:
        async for address, messages in self._outbox:
            data = self._fill(address, messages)
            if data is None:
                continue
            if await self._transport.send(data, address):
                self._counts.packets_sent += 1
                self._counts.bytes_sent += len(data)
            else:
                self._counts.send_errors += 1

    def _fill(self, address: str, messages: list[Message]) -> bytes | None:
        """Encode ``messages`` plus as much piggyback as fits; None if nothing to send."""
        messages = list(messages)
        node = self._table.get(address)
        if (
            node is not None
            and node.status is not Status.ALIVE
            and (self.config.lifeguard or node.status is not Status.SUSPECT)
        ):
            # Tell the receiver what we believe of it, so it can refute.
            messages.append(self._update_message(node, self.address))
        budget = self.config.max_packet_bytes - self._envelope
        budget -= sum(self._codec.message_size(m) for m in messages)
        limit = retransmit_limit(self.config.retransmit_mult, self._table.live_count)
        piggyback = self._updates.take(budget, limit)
        if piggyback:
            budget -= sum(self._codec.message_size(m) for m in piggyback)
        piggyback += self._broadcasts.take(budget, limit)
        if not messages and not piggyback:
            return None
        return self._codec.encode(self.address, messages + piggyback)

    def _update_message(self, node: Node, source: str) -> Update:
        return Update(node.address, _WIRE_STATUS[node.status], node.incarnation, source)

    def _record_source(self, node: Node) -> str:
        """Who a relayed record is attributed to.

        A suspicion keeps the member that raised it: passed on in a state
        exchange under this member's name, it would count as an independent
        confirmation and cut the receiver's suspicion timeout.
        """
        suspicion = self._suspicions.get(node.address)
        if (
            node.status is Status.SUSPECT
            and suspicion is not None
            and suspicion.incarnation == node.incarnation
        ):
            return suspicion.origin
        return self.address

    def _queue_update(self, update: Update) -> None:
        self._updates.put(update.address, update, self._codec.message_size(update))

    def _queue_broadcast(self, message: UserBroadcast) -> None:
        key = (message.origin, message.seq)
        self._broadcasts.put(key, message, self._codec.message_size(message))

    def _send_state(self, address: str, *, want_reply: bool) -> None:
        """Send the whole table to ``address``, split over as many packets as needed."""
        budget = self.config.max_packet_bytes - self._envelope - 16
        chunk: list[Update] = []
        used = 0
        for node in self._table.nodes():
            update = self._update_message(node, self._record_source(node))
            size = self._codec.message_size(update)
            if chunk and used + size > budget:
                self._send(address, [Sync(want_reply, chunk)])
                want_reply, chunk, used = False, [], 0
            chunk.append(update)
            used += size
        self._send(address, [Sync(want_reply, chunk)])

    # ----------------------------------------------------------- receiving

    async def _receiver(self) -> None:
        while True:
            data, _source = await self._transport.receive()
            self._counts.packets_received += 1
            self._counts.bytes_received += len(data)
            self.receive_datagram(data)

    def receive_datagram(self, data: bytes) -> None:
        """Handle one datagram (also used by discovery for announcements)."""
        packet = self._codec.decode(data)
        if isinstance(packet, DropReason):
            self._drops[packet] += 1
            return
        if packet.sender == self.address or not self._valid_address(packet.sender):
            self._drops[DropReason.MALFORMED] += 1
            return
        self._handle_packet(packet)

    def _valid_address(self, address: str) -> bool:
        # Known members skip the parse: the common case.
        return self._table.get(address) is not None or is_canonical_ip_address(address)

    def _handle_packet(self, packet: Packet) -> None:
        now = trio.current_time()
        sender = packet.sender
        for message in packet.messages:
            if isinstance(message, Update):
                self._on_update(message, now, sender)
            elif isinstance(message, Ping):
                self._send(sender, [Ack(message.seq)])
            elif isinstance(message, Ack):
                self._on_ack(message.seq, now, sender)
            elif isinstance(message, PingReq):
                self._on_ping_req(sender, message, now)
            elif isinstance(message, Nack):
                probe = self._pending.get(message.seq)
                if isinstance(probe, _Probe):
                    probe.nacks += 1
            elif isinstance(message, UserBroadcast):
                self._on_broadcast(message, now)
            elif isinstance(message, Sync):
                self._on_sync(sender, message, now)
            elif isinstance(message, Announce):
                self._on_announce(sender, now)
        self._notice_if_dead(sender, now)
        self._notice_if_unknown(sender, now)

    def _notice_if_unknown(self, sender: str, now: float) -> None:
        """A member we do not know keeps talking to us: gossip about it passed us
        by. Once gossip has had its time, ask the member itself for its state."""
        if self._table.get(sender) is not None or self._table.tombstone(sender, now) is not None:
            return
        if len(self._unknown_since) >= self.config.max_members:
            self._unknown_since.clear()
        first = self._unknown_since.setdefault(sender, now)
        limit = retransmit_limit(self.config.retransmit_mult, self._table.live_count)
        if now - first >= limit * self.config.period and self._may_send_state(sender, now):
            del self._unknown_since[sender]
            self._send_state(sender, want_reply=True)

    def _notice_if_dead(self, sender: str, now: float) -> None:
        """A member we hold DEAD/LEFT (or removed) is talking: tell it, so it refutes."""
        node = self._table.get(sender)
        if node is None:
            removed_at = self._table.tombstone(sender, now)
            if removed_at is None:
                return
            node = Node(sender, Status.DEAD, removed_at)
        elif node.status in (Status.ALIVE, Status.SUSPECT):
            return
        last = self._last_dead_notice.get(sender)
        if last is not None and now - last < self.config.period:
            return
        if len(self._last_dead_notice) >= self.config.max_members:
            self._last_dead_notice.clear()
        self._last_dead_notice[sender] = now
        self._send(sender, [self._update_message(node, self.address)])

    def _on_ack(self, seq: int, now: float, sender: str) -> None:
        waiting = self._pending.get(seq)
        if isinstance(waiting, _Probe):
            if sender == waiting.target and waiting.round_trip is None:
                waiting.round_trip = now - waiting.sent_at
            if not waiting.acked:
                waiting.acked = True
                waiting.done.set()
        elif isinstance(waiting, _Relay):
            del self._pending[seq]
            self._send(waiting.requester, [Ack(waiting.requester_seq)])

    def _on_ping_req(self, requester: str, message: PingReq, now: float) -> None:
        if len(self._pending) >= MAX_PENDING_PINGS or not self._valid_address(message.target):
            self._counts.refused_ping_reqs += 1
            return
        seq = self._next_seq()
        self._pending[seq] = _Relay(requester, message.seq)
        self._send(message.target, [Ping(seq)])
        wait = nack_timeout(
            self._base_probe_timeout(),
            self.config.period,
            self.config.probe_timeout,
        )
        self._schedule(now + wait, ("relay", "", seq))

    def _on_broadcast(self, message: UserBroadcast, now: float) -> None:
        if len(message.payload) > self.config.max_broadcast_bytes:
            self._counts.refused_broadcasts += 1
            return
        if message.origin == self.address:
            return
        if not self._seen.first_time((message.origin, message.seq), now):
            return
        self._queue_broadcast(message)
        self._hub.publish(BroadcastReceived(message.origin, message.payload))

    def _on_sync(self, sender: str, message: Sync, now: float) -> None:
        for update in message.members:
            local = self._table.get(update.address)
            if update.status is WireStatus.DEAD and update.address != self.address:
                # Another member's verdict is only a suspicion here: the
                # member may be reachable from this side (a healed partition).
                suspicion = Update(update.address, WireStatus.SUSPECT, update.incarnation, sender)
                self._on_update(suspicion, now, sender)
                if self._table.get(update.address) == Node(
                    update.address, Status.SUSPECT, update.incarnation
                ):
                    # Tell the member itself: if it is alive it refutes to us
                    # at once, rather than when our probe round reaches it.
                    self._send(update.address, [suspicion])
                continue
            if (
                local is not None
                and local.status is Status.DEAD
                and update.status in (WireStatus.ALIVE, WireStatus.SUSPECT)
            ):
                # It is alive for the sender: probe it now rather than at the
                # next backoff step.
                self._schedule(now, ("retry", update.address, -1))
            self._on_update(update, now, sender)
        waiter = self._join_replies.get(sender)
        if waiter is not None:
            waiter.set()
        if message.want_reply and self._may_send_state(sender, now):
            self._send_state(sender, want_reply=False)

    def _may_send_state(self, address: str, now: float) -> bool:
        """At most one unsolicited full state per address per period: a forged
        request must not turn this member into an amplifier."""
        last = self._last_sync_reply.get(address)
        if last is not None and now - last < self.config.period:
            return False
        if len(self._last_sync_reply) >= self.config.max_members:
            self._last_sync_reply.clear()
        self._last_sync_reply[address] = now
        return True

    def _on_announce(self, sender: str, now: float) -> None:
        if self._table.get(sender) is None and self._may_send_state(sender, now):
            self._send_state(sender, want_reply=True)

    # ------------------------------------------------------ membership news

    def _on_update(self, update: Update, now: float, sender: str | None = None) -> None:
        """Merge one update; ``sender`` is the member whose packet carried it."""
        if not self._valid_address(update.address) or not self._valid_address(update.source):
            self._drops[DropReason.MALFORMED] += 1
            return
        status = _STATUS[update.status]
        result = self._table.apply(update.address, status, update.incarnation, now)
        if isinstance(result, Refused):
            if result is Refused.TABLE_FULL:
                self._counts.refused_table_full += 1
            elif update.address == self.address:
                self._answer_stale_rumour(update, sender)
            elif status is Status.SUSPECT:
                self._confirm_suspicion(update, now)
        elif isinstance(result, Refute):
            self._adjust_health(1)
            self._refute(result.node, (sender, update.source))
        else:
            self._changed(result, update.source, now)

    def _refute(self, me: Node, tell: tuple[str | None, ...]) -> None:
        """Spread this member's ALIVE record, and send it straight to ``tell``.

        Gossip alone leaves a few members unreached now and then (more under
        loss); the members that carried or raised the rumour hear it directly.
        """
        record = self._update_message(me, self.address)
        self._queue_update(record)
        for address in dict.fromkeys(tell):
            if address is not None and address != self.address:
                self._send(address, [record])

    def _answer_stale_rumour(self, update: Update, sender: str | None) -> None:
        """Someone still says this member is SUSPECT or DEAD at an incarnation it
        has already refuted: that member missed the refutation, so repeat it."""
        me = self._table.me
        if (
            me.status is Status.ALIVE
            and update.status in (WireStatus.SUSPECT, WireStatus.DEAD)
            and update.incarnation < me.incarnation
        ):
            self._refute(me, (sender,))

    def _declare(self, address: str, status: Status, incarnation: int) -> None:
        """Record this member's own verdict and spread it."""
        self._on_update(
            Update(address, _WIRE_STATUS[status], incarnation, self.address),
            trio.current_time(),
        )

    def _changed(self, change: Change, source: str, now: float) -> None:
        node = change.node
        address = node.address
        self._queue_update(self._update_message(node, source))
        if node.status is Status.SUSPECT:
            self._start_suspicion(node, source, now)
        else:
            self._suspicions.pop(address, None)
        if node.status is Status.DEAD:
            self._retry_attempt[address] = 0
            self._schedule(now + self.config.period, ("retry", address, 0))
        elif self._retry_attempt.pop(address, None) is not None and node.status is Status.ALIVE:
            self._retry_another(now)
        if node.status is Status.LEFT:
            removal = now + self.config.left_removal_seconds
            self._schedule(removal, ("remove", address, node.incarnation))
        previous = change.previous
        if previous is None:
            self._unknown_since.pop(address, None)
        if previous is None or previous.status is not node.status:
            self._hub.publish(
                StatusChanged(node, node.status, None if previous is None else previous.status)
            )

    def _start_suspicion(self, node: Node, source: str, now: float) -> None:
        n = self._table.live_count
        minimum = min_suspicion_timeout(n, self.config.period, self.config.suspicion_mult)
        if self.config.lifeguard:
            maximum = minimum * self.config.suspicion_max_timeout_mult
            expected = expected_confirmations(self.config.suspicion_mult, n)
        else:
            maximum, expected = minimum, 0
        suspicion = Suspicion(
            node.incarnation, source, now, minimum=minimum, maximum=maximum, expected=expected
        )
        self._suspicions[node.address] = suspicion
        self._schedule(suspicion.deadline, ("suspicion", node.address, node.incarnation))

    def _confirm_suspicion(self, update: Update, now: float) -> None:
        suspicion = self._suspicions.get(update.address)
        if suspicion is None or suspicion.incarnation != update.incarnation:
            return
        if suspicion.confirm(update.source):
            self._schedule(suspicion.deadline, ("suspicion", update.address, update.incarnation))
            # Spread the confirmation too, so others shorten their timers.
            self._queue_update(update)

    # --------------------------------------------------------------- timers

    def _schedule(self, deadline: float, item: _Timer) -> None:
        before = self._timers.next_deadline()
        self._timers.push(deadline, item)
        if before is None or deadline < before:
            self._timer_wakeup.set()

    async def _timer_loop(self) -> None:
        while True:
            for item in self._timers.pop_due(trio.current_time()):
                self._fire(item)
            self._timer_wakeup = trio.Event()
            deadline = self._timers.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._timer_wakeup.wait()

    def _fire(self, item: _Timer) -> None:
        kind, address, detail = item
        now = trio.current_time()
        node = self._table.get(address)
        if kind == "suspicion":
            suspicion = self._suspicions.get(address)
            if (
                node is not None
                and node.status is Status.SUSPECT
                and suspicion is not None
                and suspicion.incarnation == detail == node.incarnation
                and suspicion.deadline <= now
                and not suspicion.rechecking
            ):
                if self.config.lifeguard and suspicion.needs_recheck():
                    suspicion.rechecking = True
                    self._rechecks[address] = None
                else:
                    self._declare(address, Status.DEAD, node.incarnation)
        elif kind == "retry":
            self._retry_dead(address, detail, now)
        elif kind == "remove":
            if node is not None and node.status is Status.LEFT and node.incarnation == detail:
                self._remove(address, now)
        elif kind == "relay":
            # No ack yet: nack now, but keep relaying a late ack for a period.
            relay = self._pending.get(detail)
            if isinstance(relay, _Relay):
                if self.config.lifeguard:
                    self._send(relay.requester, [Nack(relay.requester_seq)])
                self._schedule(now + self.config.period, ("relay-end", "", detail))
        elif kind == "relay-end" and isinstance(self._pending.get(detail), _Relay):
            del self._pending[detail]

    def _retry_dead(self, address: str, attempt: int, now: float) -> None:
        node = self._table.get(address)
        if node is None or node.status is not Status.DEAD:
            return
        if attempt >= 0 and self._retry_attempt.get(address) != attempt:
            return  # stale: the member died again since
        if attempt >= self.config.dead_retry_limit:
            self._remove(address, now)
            return
        # The ping carries the DEAD record (see _fill): a live member refutes
        # in its ack, and the refutation spreads from here.
        self._send(address, [Ping(self._next_seq())])
        if attempt >= 0:
            self._retry_attempt[address] = attempt + 1
            gap = min(2 ** (attempt + 1), self.config.dead_retry_max_periods)
            self._schedule(now + gap * self.config.period, ("retry", address, attempt + 1))

    def _retry_another(self, now: float) -> None:
        """A DEAD member is back, so the network may have healed: retry the DEAD
        member that has waited longest now rather than at its next backoff step."""
        if self._retry_attempt:
            other = next(iter(self._retry_attempt))
            # To the back of the line, so that the next return picks another.
            self._retry_attempt[other] = self._retry_attempt.pop(other)
            self._schedule(now, ("retry", other, -1))

    def _remove(self, address: str, now: float) -> None:
        node = self._table.remove(address, now, self.config.tombstone_seconds)
        if node is None:
            return
        self._updates.discard(address)
        self._suspicions.pop(address, None)
        self._retry_attempt.pop(address, None)
        self._last_dead_notice.pop(address, None)
        self._hub.publish(MemberRemoved(node))

    # ---------------------------------------------------------------- probing

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % (2**62)
        return self._seq

    def _base_probe_timeout(self) -> float:
        """The ack timeout before local health scales it."""
        if self.config.adaptive_probe_timeout:
            return self._rtt.timeout()
        return self.config.probe_timeout

    def _probe_timeout(self) -> float:
        return self._base_probe_timeout() * self._health.multiplier

    async def _probe_loop(self) -> None:
        while True:
            start = trio.current_time()
            period_end = start + self.config.period * self._health.multiplier
            target = self._next_recheck() or self._table.next_probe_target()
            if target is not None:
                await self._probe(target, period_end)
            await trio.sleep_until(period_end)

    def _rechecking(self, address: str) -> Suspicion | None:
        """The suspicion of ``address`` if it awaits its re-check probe."""
        node = self._table.get(address)
        suspicion = self._suspicions.get(address)
        if (
            node is not None
            and node.status is Status.SUSPECT
            and suspicion is not None
            and suspicion.rechecking
            and suspicion.incarnation == node.incarnation
        ):
            return suspicion
        return None

    def _next_recheck(self) -> str | None:
        while self._rechecks:
            address = next(iter(self._rechecks))
            del self._rechecks[address]
            if self._rechecking(address) is not None:
                return address
        return None

    async def _probe(self, target: str, period_end: float) -> None:
        seq = self._next_seq()
        probe = _Probe(target, trio.current_time())
        self._pending[seq] = probe
        try:
            self._send(target, [Ping(seq)])
            with trio.move_on_after(self._probe_timeout()):
                await probe.done.wait()
            if probe.acked:
                self._adjust_health(-1)
            else:
                helpers = self._table.random_live(
                    self.config.indirect_checks, exclude=frozenset((target,))
                )
                for helper in helpers:
                    self._send(helper, [PingReq(seq, target)])
                with trio.move_on_at(period_end):
                    await probe.done.wait()
                self._adjust_health(probe_health_delta(probe.acked, len(helpers), probe.nacks))
            if probe.round_trip is not None:
                # Late answers count too, or the estimate would only ever see
                # the round trips that beat it, and shrink to its floor.
                self._rtt.observe(probe.round_trip)
            self._probe_done(target, acked=probe.acked)
        finally:
            self._pending.pop(seq, None)

    def _probe_done(self, target: str, *, acked: bool) -> None:
        rechecked = self._rechecking(target)
        if acked:
            if rechecked is not None:
                # It answered but has not refuted yet (or this member missed
                # the refutation): give that a whole timeout again.
                rechecked.restart(trio.current_time())
                self._schedule(rechecked.deadline, ("suspicion", target, rechecked.incarnation))
            return
        node = self._table.get(target)
        if rechecked is not None:
            self._declare(target, Status.DEAD, rechecked.incarnation)
        elif node is not None and node.status in (Status.ALIVE, Status.SUSPECT):
            # Already SUSPECT: this failure is an independent confirmation.
            self._declare(target, Status.SUSPECT, node.incarnation)

    def _adjust_health(self, delta: int) -> None:
        if self.config.lifeguard:
            self._health.apply(delta)

    # ---------------------------------------------------------- other tasks

    async def _gossip_loop(self) -> None:
        interval = self.config.gossip_interval_millis / 1000
        if interval <= 0 or self.config.gossip_fanout <= 0:
            return
        while True:
            await trio.sleep(interval)
            if not self._updates and not self._broadcasts:
                continue
            for target in self._table.random_live(self.config.gossip_fanout):
                self._send(target, [])

    async def _sync_loop(self) -> None:
        interval = self.config.sync_interval_seconds
        if interval <= 0:
            return
        while True:
            # Jitter, so that members started together do not sync in step.
            await trio.sleep(interval * (0.5 + self._rng.random()))
            for target in self._table.random_live(1):
                self._send_state(target, want_reply=True)

    async def _seed_loop(self) -> None:
        """Join ``initial_hosts`` until one answers, then keep them in view.

        Before the first answer, tries back off (with jitter, so a crowd
        started together spreads out). Once gossip has had time to spread
        what the cluster learned meanwhile, one more exchange with a random
        member fills in anything that passed this member by (members that
        joined alongside it, in a crowd). Afterwards, every
        ``SEED_RECHECK_SECONDS`` a seed this member no longer holds live (a
        long partition made both sides remove each other) is sent a state
        exchange, which reunites the halves once the network allows.
        Names that do not resolve yet are tried again next time.
        """
        wait = max(1.0, 4 * self.config.period)
        while True:
            targets = await self._resolve_seeds()
            if targets and all(t == self.address for t in targets):
                return  # only ourselves to join: we are the first member
            if await self._exchange(targets, wait) > 0:
                break
            await trio.sleep(self._rng.uniform(0, wait))
            wait = min(wait * 2, SEED_RECHECK_SECONDS)
        limit = retransmit_limit(self.config.retransmit_mult, self._table.live_count)
        await trio.sleep(limit * self.config.period * (1 + self._rng.random()))
        for target in self._table.random_live(1):
            self._send_state(target, want_reply=True)
        while True:
            await trio.sleep(SEED_RECHECK_SECONDS * (0.5 + self._rng.random()))
            for target in await self._resolve_seeds():
                node = self._table.get(target)
                lost = node is None or node.status in (Status.DEAD, Status.LEFT)
                if target != self.address and lost:
                    self._send_state(target, want_reply=True)

    async def _resolve_seeds(self) -> list[str]:
        targets = []
        for host in self.config.initial_hosts:
            try:
                targets.append(await self._transport.resolve(host))
            except (OSError, ValueError):
                continue
        return targets

    async def _leave(self) -> None:
        """Announce LEFT and wait (bounded by the caller) for one member to ack it.

        Runs after the member's tasks have stopped, so it writes to and reads
        from the transport itself: a block left by an outer cancellation still
        says goodbye.
        """
        node = self._table.leave()
        limit = retransmit_limit(self.config.retransmit_mult, self._table.live_count)
        targets = self._table.random_live(limit)
        if not targets:
            return
        seq = self._next_seq()
        goodbye = self._update_message(node, self.address)
        data = self._codec.encode(self.address, [Ping(seq), goodbye])
        for target in targets:
            await self._transport.send(data, target)
        while True:
            packet = self._codec.decode((await self._transport.receive())[0])
            if isinstance(packet, Packet) and Ack(seq) in packet.messages:
                return

    async def _run(
        self,
        extra_tasks: tuple[Callable[[Member], Awaitable[None]], ...],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sender)
            nursery.start_soon(self._receiver)
            nursery.start_soon(self._timer_loop)
            nursery.start_soon(self._probe_loop)
            nursery.start_soon(self._gossip_loop)
            nursery.start_soon(self._sync_loop)
            if self.config.initial_hosts:
                nursery.start_soon(self._seed_loop)
            for task in extra_tasks:
                nursery.start_soon(task, self)
            task_status.started()


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


def _task_hooks(config: Config) -> tuple[Callable[[Member], Awaitable[None]], ...]:
    if not config.multicast_enabled:
        return ()
    from .discovery import discovery_task

    return (discovery_task(config),)


@asynccontextmanager
async def open_member(config: Config | None = None) -> AsyncIterator[Member]:
    """Bind a UDP socket, start a member, and leave the cluster on exit.

    ::

        async with trio_swim.open_member(Config(initial_hosts=["10.0.0.1"])) as m:
            async for event in m.events():
                ...

    Raises :class:`OSError` if the address is in use.
    """
    config = Config() if config is None else config
    transport = await open_udp_transport(config.listen_ip, config.listen_port)
    try:
        hooks = _task_hooks(config)
    except BaseException:
        transport.close()
        raise
    async with run_member(
        config,
        transport,
        rng=random.Random(),
        incarnation=time.time_ns() // 1_000_000,
        extra_tasks=hooks,
    ) as member:
        yield member
