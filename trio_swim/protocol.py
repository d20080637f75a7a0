"""The SWIM protocol as a synchronous state machine: :class:`Swim`.

``Swim`` is the whole protocol of one member (probing, Lifeguard, suspicion,
dissemination, broadcasts, state exchange, joining and leaving) with no I/O:
it never sleeps, sends, reads a clock or draws from global randomness. Its
owner feeds it datagrams and the time, and carries out what it asks::

    swim = Swim(config, "10.0.0.1:7946", rng=random.Random(), incarnation=1, now=now)
    swim.receive(data, now)              # a datagram arrived
    swim.tick(now)                       # time passed: fire what is due
    while (out := swim.next_datagram()) is not None:
        address, data = out              # send it
    while (event := swim.next_event()) is not None:
        ...                              # StatusChanged, SyncAnswered ...
    swim.next_deadline()                 # call tick() again then

Every input is one call that completes before it returns, so an input can
never be half applied, and the same inputs at the same times give the same
outputs: that is what makes exact simulations and plain-call tests possible.
The trio runner (:mod:`trio_swim.member`) and the trio-free
:class:`trio_swim.testing.Simulation` are two owners of the same core.

Outputs are pulled. What a datagram carries besides its own messages
(piggybacked news, the "what we believe of you" record) is decided when it is
pulled, so a sender that falls behind attaches the freshest news, and a
datagram dropped before it is pulled spends none of the news' retransmit
budget.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, NoReturn

import msgspec

from .addresses import is_canonical_ip_address
from .config import RECORD_ROOM, Config
from .dissemination import PiggybackQueue, SeenSet, retransmit_limit
from .events import (
    BroadcastReceived,
    MemberEvent,
    MemberRemoved,
    MessageReceived,
    MetadataChanged,
    StatusChanged,
)
from .membership import (
    Change,
    DeadRetries,
    MemberTable,
    Node,
    Refused,
    Refute,
    Status,
    supersedes,
)
from .security import SEAL_OVERHEAD, Keyring, associated_data, is_sealed
from .suspicion import (
    LocalHealth,
    RttEstimator,
    Suspicion,
    expected_confirmations,
    min_suspicion_timeout,
    nack_timeout,
    probe_health_delta,
)
from .timers import (
    FollowUpSync,
    GossipDue,
    ProbePeriodEnd,
    ProbeTimeout,
    RelayEnd,
    RelayNack,
    RemoveLeft,
    RetryDead,
    SeedAttempt,
    SeedRecheck,
    SeedWaitOver,
    SuspicionDue,
    SyncDue,
    Timer,
    TimerHeap,
)
from .wire import (
    PROTOCOL_VERSION,
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
    UserMessage,
    WireStatus,
)

if TYPE_CHECKING:
    import random

# Datagrams waiting to be pulled; when full, new ones are dropped (and
# counted), as a congested network would drop them.
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
# How often (on average) seeds that are no longer live members are asked again;
# also the longest back-off between join attempts.
SEED_RECHECK_SECONDS: Final = 30.0
# Incarnations are refused above this (so that a refutation, one higher, is
# still inside what every member decodes, 2**63 - 1) and when they jump by
# more than INCARNATION_JUMP over the one held for the member. A member starts
# from the wall clock in milliseconds (about 2**41 today), so the ceiling is
# millions of years away, and a jump of 2**40 ms is 35 years of downtime
# between two starts of one member.
MAX_INCARNATION: Final = 2**62
INCARNATION_JUMP: Final = 2**40
# TCP exchanges this member has started and not yet seen end; beyond this a
# state exchange goes over UDP, a fallback probe is skipped and a reliable
# message fails at once.
MAX_OPEN_STREAMS: Final = 64
# After a state exchange over TCP failed, state goes to that member over UDP
# for this long.
STREAMLESS_SECONDS: Final = 60.0
# The periodic state exchange is this many members' worth of work per
# interval; above it the interval grows with log2 n, so that what each member
# sends and receives for it stays flat.
PUSH_PULL_SCALE_THRESHOLD: Final = 32
# (reason, source, cluster) of drops remembered between two take_drops();
# further ones are counted under one catch-all source.
MAX_DROP_SOURCES: Final = 256
# Room left in a Sync datagram for its own header (tag, flag, list length).
_SYNC_HEADER_SLACK: Final = 16
# Room a stream frame keeps for its envelope and the messages beside a Sync.
_STREAM_SLACK: Final = 1024
# Addresses heard from the network whose form was checked, remembered so that
# the check (an ipaddress parse) is done once per address; cleared when full.
_CHECKED_ADDRESSES: Final = 16_384

_WIRE_STATUS: Final = {
    Status.ALIVE: WireStatus.ALIVE,
    Status.SUSPECT: WireStatus.SUSPECT,
    Status.DEAD: WireStatus.DEAD,
    Status.LEFT: WireStatus.LEFT,
}
# Indexed by the wire value: a tuple index is much cheaper than hashing an enum.
_STATUS: Final = tuple(status for status, _ in sorted(_WIRE_STATUS.items(), key=lambda i: i[1]))


def default_join_wait(config: Config) -> float:
    """How long a join waits for answers by default: four periods, at least a second."""
    return max(1.0, 4 * config.period)


def _is_announcement(packet: Packet) -> bool:
    """An announcement (with the announcer's record): heard on the multicast
    group, it comes from the group port of the announcer's host (from any of
    its addresses), not from the address it claims, and is answered there
    with one small datagram."""
    messages = packet.messages
    return (
        1 <= len(messages) <= 2
        and isinstance(messages[0], Announce)
        and all(isinstance(m, Update) and m.address == packet.sender for m in messages[1:])
    )


def _mentions(packet: Packet, address: str) -> bool:
    """True if ``packet`` carries a record of ``address`` (alone or in a Sync)."""
    for message in packet.messages:
        if isinstance(message, Update) and message.address == address:
            return True
        if isinstance(message, Sync) and any(u.address == address for u in message.members):
            return True
    return False


def _same_host(address: str, other: str) -> bool:
    """True if two canonical ``ip:port`` addresses have the same IP."""
    return address.rpartition(":")[0] == other.rpartition(":")[0]


def _holds(node: Node | None, status: Status, incarnation: int) -> bool:
    """True if ``node`` is a record at exactly this status and incarnation."""
    return node is not None and node.status is status and node.incarnation == incarnation


def _assert_never(value: NoReturn) -> NoReturn:
    raise AssertionError(f"unhandled: {value!r}")


class BroadcastTooLarge(ValueError):
    """A broadcast payload is over ``Config.max_broadcast_bytes``."""


class MetadataTooLarge(ValueError):
    """Metadata over ``Config.max_metadata_bytes``."""


class MessageTooLarge(ValueError):
    """A message payload over what one datagram (or one stream frame) carries."""


class StreamRequest(msgspec.Struct, frozen=True):
    """For the runner: one TCP exchange to carry out.

    Open a stream to ``address`` (its host, and the same port number over
    TCP), send ``data`` as one frame, read one frame back and hand it to
    :meth:`Swim.stream_reply` with ``token``, or None there if the exchange
    failed or took longer than ``timeout`` seconds.
    """

    token: int
    address: str
    data: bytes
    timeout: float


class StreamDone(msgspec.Struct, frozen=True):
    """Notice for the runner: the exchange ``token`` ended (``ok``: it was answered)."""

    token: int
    ok: bool


class Joined(msgspec.Struct, frozen=True):
    """Notice for the runner: the first exchange of state with another member."""

    address: str
    members: int
    """Members known right after it (this one included)."""


class JoinRetrying(msgspec.Struct, frozen=True):
    """Notice for the runner: no seed answered; the next attempt is in ``retry_in`` s."""

    seeds: tuple[str, ...]
    retry_in: float


class SyncAnswered(msgspec.Struct, frozen=True):
    """Notice for the runner: ``address`` sent its state (a join was answered)."""

    address: str


class LeaveAcked(msgspec.Struct, frozen=True):
    """Notice for the runner: a member acknowledged this member's goodbye."""


class Declared(msgspec.Struct, frozen=True):
    """Notice for the runner: this member declared ``address`` DEAD (its
    suspicion ran out), or ALIVE again after holding it DEAD (the network
    between them is back: a partition healed)."""

    address: str
    status: Status
    incarnation: int


class Refuted(msgspec.Struct, frozen=True):
    """Notice for the runner: this member refuted news of its own failure."""

    incarnation: int
    """Its incarnation now."""
    accuser: str
    """Who raised the rumour (or carried it)."""


class HealthWarning(msgspec.Struct, frozen=True):
    """Notice for the runner: local health rose above half its maximum."""

    score: int
    maximum: int


class ProbeFailed(msgspec.Struct, frozen=True):
    """Notice for the runner: a probe went unanswered for a whole period."""

    target: str
    helpers: int
    """Members asked to probe it indirectly."""
    nacks: int


class DropReport(msgspec.Struct, frozen=True):
    """Datagrams dropped for one reason from one source (see :meth:`Swim.take_drops`)."""

    reason: DropReason
    source: str
    count: int
    cluster: str | None
    """The cluster name they carried, for :attr:`DropReason.FOREIGN_CLUSTER`."""


Output = (
    MemberEvent
    | SyncAnswered
    | LeaveAcked
    | StreamDone
    | Joined
    | JoinRetrying
    | Declared
    | Refuted
    | HealthWarning
    | ProbeFailed
)
"""What :meth:`Swim.next_event` returns: user events and runner notices."""


class MemberStatistics(msgspec.Struct, frozen=True):
    """Counters since the member started (see ``Member.statistics()``)."""

    packets_sent: int
    bytes_sent: int
    packets_received: int
    bytes_received: int
    dropped_oversized: int
    dropped_malformed: int
    dropped_version: int
    dropped_foreign_cluster: int
    dropped_unauthenticated: int
    """Sealed with a key this member does not hold, or plaintext where keys are required."""
    dropped_spoofed: int
    """Unsealed datagrams whose claimed sender is not the address they came from."""
    dropped_send_queue_full: int
    send_errors: int
    refused_ping_reqs: int
    refused_table_full: int
    refused_broadcasts: int
    """Broadcasts over the size limit, or from an origin that is not a member."""
    refused_incarnations: int
    """Records at an incarnation above the ceiling or too far above the one held."""
    refused_rumours: int
    """Accusations (SUSPECT, DEAD, LEFT, or news about this member) from a non-member."""
    refused_metadata: int
    """Records whose metadata is over ``Config.max_metadata_bytes``."""
    ignored_acks: int
    """Acks and nacks from a member that was not asked (forged or stray)."""
    evicted_unverified: int
    """Members never heard from directly, forgotten to make room in a full table."""
    probes_sent: int
    """Protocol periods that pinged a member (one probe each)."""
    probes_failed: int
    """Probes with no ack by the end of their period (the target was then suspected)."""
    suspicions_raised: int
    """Members this member declared SUSPECT after a failed probe."""
    refutations: int
    """Times this member raised its incarnation to refute news of its own failure."""
    tcp_probes_sent: int
    """Fallback probes over TCP, sent when a direct ping went unanswered."""
    tcp_probes_saved: int
    """Probes answered over TCP only: UDP is being lost on the way."""
    stream_exchanges: int
    """TCP exchanges this member started that completed (state, probes, messages)."""
    stream_failures: int
    """TCP exchanges this member started that failed (refused, timed out, bad answer)."""
    streams_accepted: int
    """TCP connections the listener took (filled in by the runner)."""
    streams_refused: int
    """TCP connections closed at once: too many open (filled in by the runner)."""
    streams_dropped: int
    """TCP connections cut: an oversized or malformed frame, or too slow (runner)."""
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
    refused_ping_reqs: int = 0
    refused_table_full: int = 0
    refused_broadcasts: int = 0
    refused_incarnations: int = 0
    refused_rumours: int = 0
    refused_metadata: int = 0
    ignored_acks: int = 0
    evicted_unverified: int = 0
    probes_sent: int = 0
    probes_failed: int = 0
    suspicions_raised: int = 0
    refutations: int = 0
    tcp_probes_sent: int = 0
    tcp_probes_saved: int = 0
    stream_exchanges: int = 0
    stream_failures: int = 0


class _Probe:
    """This member's ping of ``target`` in the current period."""

    __slots__ = (
        "acked",
        "asked",
        "incarnation",
        "nacks",
        "period_end",
        "round_trip",
        "sent_at",
        "seq",
        "target",
    )

    def __init__(self, seq: int, target: str, incarnation: int, sent_at: float) -> None:
        self.seq = seq
        self.target = target
        self.incarnation = incarnation
        """The target's incarnation when pinged: a failure accuses that one only."""
        self.sent_at = sent_at
        self.acked = False
        self.asked: frozenset[str] = frozenset()
        """The members asked to ping the target for us (their acks count too)."""
        self.nacks = 0
        self.round_trip: float | None = None
        """Time to the target's own ack, even one too late for the timeout."""


class _Relay:
    """A ping sent to ``target`` on behalf of another member's ping-req;
    the answer goes to ``reply_to``, where the ping-req came from."""

    __slots__ = ("reply_to", "requester_seq", "target")

    def __init__(self, reply_to: str, requester_seq: int, target: str) -> None:
        self.reply_to = reply_to
        self.requester_seq = requester_seq
        self.target = target


class _Stream:
    """A TCP exchange this member started: what it was for."""

    __slots__ = ("kind", "probe_seq", "target")

    PROBE: Final = 0
    STATE: Final = 1
    MESSAGE: Final = 2

    def __init__(self, kind: int, target: str, probe_seq: int = 0) -> None:
        self.kind = kind
        self.target = target
        self.probe_seq = probe_seq


class _OncePerInterval:
    """Per-address "at most once every so often", with a bounded memory.

    Bound: ``limit`` addresses; when full, everything is forgotten at once
    (the next message from each is allowed again: a flood of new addresses
    can only make this member answer once more, never grow the memory).
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._last: dict[str, float] = {}

    def allow(self, address: str, now: float, interval: float) -> bool:
        """True, and remembered, unless ``address`` was allowed within ``interval``."""
        last = self._last.get(address)
        if last is not None and now - last < interval:
            return False
        if len(self._last) >= self._limit:
            self._last.clear()
        self._last[address] = now
        return True

    def forget(self, address: str) -> None:
        """Allow ``address`` again at once."""
        self._last.pop(address, None)

    def recent(self, address: str, now: float, interval: float) -> bool:
        """True if ``address`` was allowed within ``interval``."""
        last = self._last.get(address)
        return last is not None and now - last < interval


class Swim:
    """One member's protocol state machine (sans-I/O); see the module docstring.

    ``address`` is the canonical ``host:port`` the member is known by;
    ``rng`` is its only source of randomness; ``incarnation`` is where its
    own incarnation starts (a restarted member must start above any the
    cluster saw: the runner uses the wall clock in milliseconds); ``now`` is
    the time of creation, on the clock of every later call.

    With ``Config.secret_keys`` every datagram is sealed and opened with
    :attr:`keyring`: pass one (the runner does, drawing nonces from the
    operating system), or the core makes one whose nonces come from ``rng``
    (fine for simulations, which must replay; not for a real network).
    Probe sequence numbers come from ``rng`` too: give a real member an
    unpredictable one (``random.SystemRandom()``), so that acks cannot be
    guessed.
    """

    def __init__(
        self,
        config: Config,
        address: str,
        *,
        rng: random.Random,
        incarnation: int,
        now: float,
        keyring: Keyring | None = None,
    ) -> None:
        self.config = config
        self.address = address
        self._rng = rng
        self._codec = Codec(config.cluster_name, config.max_packet_bytes)
        self._stream_codec = Codec(config.cluster_name, config.max_stream_bytes)
        if keyring is None and config.secret_keys:
            keyring = Keyring(config.secret_keys, nonce=rng.randbytes)
        self.keyring = keyring
        """The cluster's keys (None: packets are not sealed); rotate them here."""
        self._sealing = keyring is not None and not config.send_plaintext
        self._associated_data = associated_data(PROTOCOL_VERSION, config.cluster_name)
        self._envelope = self._codec.envelope_size(address)
        if self._sealing:
            self._envelope += SEAL_OVERHEAD
        # Room for a message and for what this member believes of the
        # receiver, added when that is not ALIVE (see _compose_packet).
        room = config.max_packet_bytes - self._envelope - RECORD_ROOM
        self._max_message_bytes = 2 * room - self._codec.message_size(UserMessage(b"\0" * room))
        # Where the datagram being handled came from, and whether its sender
        # was a member before it (see receive()).
        self._reply_to = address
        self._sender_known = False

        self._table = MemberTable(
            address,
            incarnation,
            max_members=config.max_members,
            rng=rng,
            metadata=config.metadata,
        )
        self._updates: PiggybackQueue[Message] = PiggybackQueue(config.max_members)
        self._broadcasts: PiggybackQueue[Message] = PiggybackQueue(MAX_PENDING_BROADCASTS)
        self._seen = SeenSet(BROADCAST_MEMORY, BROADCAST_MEMORY_SECONDS)
        self._timers: TimerHeap[Timer] = TimerHeap()
        self._health = LocalHealth(config.awareness_max_multiplier)
        self._rtt = RttEstimator(config.min_probe_timeout, config.probe_timeout)
        self._suspicions: dict[str, Suspicion] = {}
        # Suspects whose unconfirmed suspicion ran out, probed next (in this
        # order) before any verdict; at most one entry per suspicion.
        self._rechecks: dict[str, None] = {}
        self._retries = DeadRetries()
        self._pending: dict[int, _Probe | _Relay] = {}
        self._probe: _Probe | None = None
        self._sync_replies = _OncePerInterval(config.max_members)
        self._introductions = _OncePerInterval(config.max_members)
        self._dead_notices = _OncePerInterval(config.max_members)
        # Members a state exchange over TCP failed with lately: the next ones
        # go over UDP at once (a firewall that drops TCP would else cost a
        # whole stream timeout each time).
        self._no_streams = _OncePerInterval(config.max_members)
        # Senders not in the table, and when they were first heard from.
        self._unknown_since: dict[str, float] = {}
        self._checked: set[str] = set()
        # Sequence numbers from a generator of their own (of the same kind as
        # rng), so that how many are drawn does not change the probe order.
        self._seq_rng = type(rng)(rng.getrandbits(40))
        self._broadcast_seq = rng.getrandbits(40)
        self._drops = dict.fromkeys(DropReason, 0)
        self._drop_sources: dict[tuple[DropReason, str, str | None], int] = {}
        self._counts = _Counters()
        # (address, messages, bare): a bare datagram carries its messages
        # only, no piggybacked news (an answer to a stranger).
        self._outbox: deque[tuple[str, list[Message], bool]] = deque()
        self._carries_own_record = False
        self._sender_verified = False
        self._in_state_exchange = False
        self._exchange_sender = ""
        # The ping each introduced stranger must answer before it gets the
        # state: it proves the stranger receives at the address it claims.
        self._cookies: dict[str, int] = {}
        self._events: deque[Output] = deque()
        # TCP exchanges asked of the runner (not yet pulled), and those under
        # way, by token.
        self._stream_out: deque[StreamRequest] = deque()
        self._streams: dict[int, _Stream] = {}
        # While a stream request is handled: what goes back on the stream
        # (every answer to its sender goes there, not into a datagram).
        self._stream_reply: list[Message] | None = None
        self._stream_sender = ""
        self._in_stream = False
        self._exchanged = False
        self._seeds: list[str] = []
        self._seed_attempt = 0
        self._seed_wait = default_join_wait(config)
        self._joined = False
        self._leave_seq: int | None = None
        self._leave_targets: frozenset[str] = frozenset()

        self._now = now
        """The time of the input being handled."""
        self._timers.push(now, ProbePeriodEnd())
        # Gossip rounds fall on a grid from ``now``, but a round is only set
        # while there is news to spread, so an idle member is not woken 5
        # times a second for nothing.
        self._gossip_interval = config.gossip_interval_millis / 1000
        self._gossip_enabled = self._gossip_interval > 0 and config.gossip_fanout > 0
        self._gossip_next = now + self._gossip_interval
        self._gossip_armed = False
        if config.sync_interval_seconds > 0:
            self._timers.push(now + self._jittered(config.sync_interval_seconds), SyncDue())

    # ------------------------------------------------------------- reading

    @property
    def me(self) -> Node:
        """This member's own record."""
        return self._table.me

    def members(self) -> list[Node]:
        """Every known member, this one included, in no particular order."""
        return self._table.nodes()

    def healthy_members(self) -> list[Node]:
        """The ALIVE members, this one included."""
        return [n for n in self._table.nodes() if n.status is Status.ALIVE]

    def get(self, address: str) -> Node | None:
        """The record of ``address``, if known."""
        return self._table.get(address)

    @property
    def joined(self) -> bool:
        """True once this member exchanged state with another (sent or received)."""
        return self._exchanged

    @property
    def max_message_bytes(self) -> int:
        """The largest payload :meth:`send` takes: what fits in one datagram."""
        return self._max_message_bytes

    @property
    def max_reliable_bytes(self) -> int:
        """The largest payload :meth:`send_reliable` takes: what fits in one frame."""
        return self.config.max_stream_bytes - self._envelope - _STREAM_SLACK

    def statistics(self) -> MemberStatistics:
        """A snapshot of the protocol's counters.

        ``packets_sent`` and ``bytes_sent`` count the datagrams pulled with
        :meth:`next_datagram`; the core cannot know of send errors, so
        ``send_errors`` is 0 here (a runner fills in what it saw).
        """
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
            dropped_unauthenticated=self._drops[DropReason.UNAUTHENTICATED],
            dropped_spoofed=self._drops[DropReason.SPOOFED],
            dropped_send_queue_full=c.dropped_send_queue_full,
            send_errors=0,
            refused_ping_reqs=c.refused_ping_reqs,
            refused_table_full=c.refused_table_full,
            refused_broadcasts=c.refused_broadcasts,
            refused_incarnations=c.refused_incarnations,
            refused_rumours=c.refused_rumours,
            refused_metadata=c.refused_metadata,
            ignored_acks=c.ignored_acks,
            evicted_unverified=c.evicted_unverified,
            probes_sent=c.probes_sent,
            probes_failed=c.probes_failed,
            suspicions_raised=c.suspicions_raised,
            refutations=c.refutations,
            tcp_probes_sent=c.tcp_probes_sent,
            tcp_probes_saved=c.tcp_probes_saved,
            stream_exchanges=c.stream_exchanges,
            stream_failures=c.stream_failures,
            streams_accepted=0,
            streams_refused=0,
            streams_dropped=0,
            local_health=self._health.score,
            probe_timeout=self._probe_timeout(),
        )

    def announcement(self) -> bytes:
        """The datagram multicast discovery sends: this member can be joined
        (with its own record, so that an answer is no larger than it)."""
        return self._encode([Announce(), self._update_message(self.me, self.address)])

    def _encode(self, messages: list[Message], codec: Codec | None = None) -> bytes:
        data = (codec or self._codec).encode(self.address, messages)
        if self._sealing and self.keyring is not None:
            data = self.keyring.seal(data, self._associated_data)
        return data

    # ------------------------------------------------------------- inputs

    def receive(self, data: bytes, now: float, source: str | None = None) -> None:
        """Handle one datagram from ``source`` (its UDP source address).

        Never raises: what is refused is counted. Answers go to ``source``.
        An unsealed datagram must come from the sender it claims (else it is
        dropped as spoofed); a sealed one may claim any sender (a member
        behind NAT). ``source`` None trusts the claim (a local hand-off).
        """
        self._now = now
        self._counts.packets_received += 1
        self._counts.bytes_received += len(data)
        packet, sealed = self._open(data, self._codec)
        if isinstance(packet, DropReason):
            self._drop(packet, source, data)
            return
        sender = packet.sender
        if sender == self.address or not self._valid_address(sender):
            self._drop(DropReason.MALFORMED, source)
            return
        if source is None:
            source = sender
        elif source != sender and not sealed and not _is_announcement(packet):
            self._drop(DropReason.SPOOFED, source)
            return
        if self._leave_seq is not None:
            if Ack(self._leave_seq) in packet.messages and sender in self._leave_targets:
                self._events.append(LeaveAcked())
            return
        self._reply_to = sender if _is_announcement(packet) else source
        # A seed counts as a member: it may tell a restarted member that it
        # is held DEAD, which the member must hear to refute.
        self._sender_known = self._table.get(sender) is not None or sender in self._seeds
        # A sealed datagram proves its sender; else only an answered ping does.
        if sealed:
            self._table.verify(sender)
        self._sender_verified = sealed or self._table.is_verified(sender)
        self._carries_own_record = not self._sender_verified and _mentions(packet, sender)
        self._handle_packet(packet, now)

    def _drop(self, reason: DropReason, source: str | None, data: bytes = b"") -> None:
        """Count one refused datagram (or frame), by reason and by source."""
        self._drops[reason] += 1
        cluster = None
        if reason is DropReason.FOREIGN_CLUSTER:
            cluster = self._codec.cluster_of(data)
        key = (reason, source or "?", cluster)
        sources = self._drop_sources
        if key not in sources and len(sources) >= MAX_DROP_SOURCES:
            key = (reason, "other sources", None)
        sources[key] = sources.get(key, 0) + 1

    def take_drops(self) -> list[DropReport]:
        """The drops since the last call, by reason and source (most first);
        at most ``MAX_DROP_SOURCES`` entries, the rest under "other sources"."""
        reports = [
            DropReport(reason, source, count, cluster)
            for (reason, source, cluster), count in self._drop_sources.items()
        ]
        self._drop_sources = {}
        reports.sort(key=lambda r: -r.count)
        return reports

    def _open(self, data: bytes, codec: Codec) -> tuple[Packet | DropReason, bool]:
        """Decode one datagram (or stream frame), opening it first if it is sealed."""
        if len(data) > codec.max_packet_bytes:
            return DropReason.OVERSIZED, False
        if is_sealed(data) and len(data) >= SEAL_OVERHEAD:
            keyring = self.keyring
            opened = None if keyring is None else keyring.open(data, self._associated_data)
            if opened is None:
                return DropReason.UNAUTHENTICATED, False
            return codec.decode(opened), True
        if self.keyring is not None and not self.config.accept_plaintext:
            return DropReason.UNAUTHENTICATED, False
        return codec.decode(data), False

    def tick(self, now: float) -> None:
        """Fire every timer due at or before ``now`` (in deadline order)."""
        self._now = now
        if self._leave_seq is not None:
            return
        while (timer := self._timers.pop_due(now)) is not None:
            self._fire(timer, now)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has something to do next (None: nothing pending)."""
        if self._leave_seq is not None:
            return None
        # Most probes are answered early: drop their timeouts here rather than
        # wake the owner four times a second for nothing.
        while isinstance(head := self._timers.peek(), ProbeTimeout) and (
            self._probe is None or self._probe.seq != head.seq
        ):
            self._timers.pop()
        return self._timers.next_deadline()

    def broadcast(self, payload: bytes, now: float) -> None:
        """Send ``payload`` once to every other member (not to this one).

        Raises :class:`BroadcastTooLarge` over ``Config.max_broadcast_bytes``.
        """
        if len(payload) > self.config.max_broadcast_bytes:
            raise BroadcastTooLarge(
                f"broadcast of {len(payload)} bytes is over max_broadcast_bytes="
                f"{self.config.max_broadcast_bytes}"
            )
        if self._leave_seq is not None:
            return  # left: nothing goes out any more
        self._now = now
        self._broadcast_seq += 1
        message = UserBroadcast(self.address, self._broadcast_seq, bytes(payload))
        self._seen.first_time((self.address, self._broadcast_seq), now)
        self._queue_broadcast(message)

    def set_metadata(self, metadata: bytes, now: float) -> None:
        """Announce new metadata for this member (at a new incarnation).

        Raises :class:`MetadataTooLarge` over ``Config.max_metadata_bytes``.
        """
        if len(metadata) > self.config.max_metadata_bytes:
            raise MetadataTooLarge(
                f"metadata of {len(metadata)} bytes is over max_metadata_bytes="
                f"{self.config.max_metadata_bytes}"
            )
        if self._leave_seq is not None:
            return
        self._now = now
        node = self._table.set_own_metadata(bytes(metadata))
        self._queue_update(self._update_message(node, self.address))

    def send(self, address: str, payload: bytes, now: float) -> None:
        """Send ``payload`` to the member at ``address`` in one datagram (best effort).

        It arrives as :class:`~trio_swim.MessageReceived`. Raises
        :class:`MessageTooLarge` over :attr:`max_message_bytes`.
        """
        limit = self.max_message_bytes
        if len(payload) > limit:
            raise MessageTooLarge(
                f"message of {len(payload)} bytes is over the {limit} bytes one datagram "
                f"carries (max_packet_bytes={self.config.max_packet_bytes}); "
                "use send_reliable for more"
            )
        if self._leave_seq is not None:
            return
        self._now = now
        self._send(address, [UserMessage(bytes(payload))])

    def send_reliable(self, address: str, payload: bytes, now: float) -> int:
        """Send ``payload`` to the member at ``address`` over a TCP stream.

        Returns a token; :class:`StreamDone` with it reports whether the
        receiver acknowledged the message. Raises :class:`MessageTooLarge`
        over :attr:`max_reliable_bytes`.
        """
        limit = self.max_reliable_bytes
        if len(payload) > limit:
            raise MessageTooLarge(
                f"message of {len(payload)} bytes is over the {limit} bytes one stream "
                f"frame carries (max_stream_bytes={self.config.max_stream_bytes})"
            )
        self._now = now
        token = self._next_seq()
        if self._leave_seq is not None or not self._open_stream(
            _Stream(_Stream.MESSAGE, address),
            token,
            [UserMessage(bytes(payload))],
            self.config.stream_timeout_millis / 1000,
        ):
            self._events.append(StreamDone(token, False))
        return token

    def join(self, addresses: Iterable[str], now: float) -> None:
        """Exchange full state with each address (canonical ``host:port``).

        Over a TCP stream first (one round trip, whatever the size of the
        state), over UDP if that fails. Each that answers is reported as
        :class:`SyncAnswered`.
        """
        if self._leave_seq is not None:
            return
        self._now = now
        for target in dict.fromkeys(addresses):
            if target != self.address:
                self._send_state(target, want_reply=True, stream=True)

    def set_seeds(self, addresses: Iterable[str], now: float) -> None:
        """The members to join at start (``initial_hosts``, resolved).

        Until one of them answers, a join goes to all of them, again and
        again with a growing, jittered back-off (so a crowd started together
        spreads out). Once one answered and gossip has had time to spread
        what the cluster learned meanwhile, one more exchange with a random
        member fills in what passed this member by (members that joined
        alongside it). From then on, every ``SEED_RECHECK_SECONDS`` a seed
        no longer held live (a long partition made both sides forget each
        other) is sent a join, which reunites the halves once the network
        allows. May be called again with a fresh resolution.
        """
        first = not self._seeds
        self._seeds = [a for a in dict.fromkeys(addresses) if a != self.address]
        if first and self._seeds and not self._joined:
            self._seed_attempt += 1
            self._timers.push(now, SeedAttempt(self._seed_attempt))

    def leave(self, now: float) -> bool:
        """Become LEFT and queue a goodbye to a few members.

        Returns False if there was nobody to tell. Afterwards the core only
        watches for the goodbye's ack (:class:`LeaveAcked`); timers stop.
        """
        node = self._table.leave()
        targets = self._table.random_live(self._retransmit_limit)
        self._outbox.clear()
        self._leave_seq = self._next_seq()
        self._leave_targets = frozenset(targets)
        if not targets:
            return False
        goodbye = self._update_message(node, self.address)
        for target in targets:
            self._send(target, [Ping(self._leave_seq), goodbye])
        return True

    # ------------------------------------------------------------ outputs

    def next_datagram(self) -> tuple[str, bytes] | None:
        """The next datagram to send, as (address, data); None when there is none."""
        while self._outbox:
            address, messages, bare = self._outbox.popleft()
            data = self._encode(messages) if bare else self._compose_packet(address, messages)
            if data is not None:
                self._counts.packets_sent += 1
                self._counts.bytes_sent += len(data)
                return address, data
        return None

    def next_event(self) -> Output | None:
        """The next event or runner notice; None when there is none."""
        return self._events.popleft() if self._events else None

    def next_stream(self) -> StreamRequest | None:
        """The next TCP exchange to carry out (see :class:`StreamRequest`)."""
        return self._stream_out.popleft() if self._stream_out else None

    # ------------------------------------------------------------- streams

    def handle_stream(self, data: bytes, now: float, source: str) -> bytes | None:
        """Answer one frame that arrived on a TCP stream from ``source``.

        ``source`` is the peer's ``ip:port`` (its port is an ephemeral one):
        an unsealed frame must claim a sender on that IP. Returns the answer
        frame's body (to send back on the stream), or None to close the
        stream without one (the frame was refused and counted). Never raises.
        """
        self._now = now
        self._counts.packets_received += 1
        self._counts.bytes_received += len(data)
        packet, sealed = self._open(data, self._stream_codec)
        if isinstance(packet, DropReason):
            self._drop(packet, source, data)
            return None
        sender = packet.sender
        if sender == self.address or not self._valid_address(sender):
            self._drop(DropReason.MALFORMED, source)
            return None
        if not sealed and not _same_host(sender, source):
            self._drop(DropReason.SPOOFED, source)
            return None
        if self._leave_seq is not None:
            return None
        self._reply_to = sender
        self._sender_known = self._table.get(sender) is not None or sender in self._seeds
        if sealed:
            self._table.verify(sender)
        # The connection proves the sender's IP, and what goes back goes
        # back on it: nothing here can be aimed at a third party.
        self._sender_verified = True
        self._carries_own_record = False
        self._stream_reply = []
        self._in_stream = True
        try:
            self._handle_packet(packet, now)
            reply = self._stream_reply
        finally:
            self._stream_reply = None
            self._in_stream = False
        return self._encode(reply, self._stream_codec)

    def stream_reply(self, token: int, data: bytes | None, now: float) -> None:
        """The answer to the exchange ``token`` (see :meth:`next_stream`);
        None if it failed (refused, reset, timed out). Never raises."""
        self._now = now
        stream = self._streams.pop(token, None)
        if stream is None:
            return
        packet = self._answer_of(stream, token, data)
        ok = packet is not None
        if packet is None:
            self._counts.stream_failures += 1
        else:
            self._counts.stream_exchanges += 1
        if stream.kind == _Stream.PROBE:
            probe = self._probe
            if (
                packet is not None
                and probe is not None
                and probe.seq == stream.probe_seq
                and not probe.acked
            ):
                self._counts.tcp_probes_saved += 1
                probe.acked = True
                self._conclude_probe(probe, now)
        elif stream.kind == _Stream.STATE and packet is None:
            self._no_streams.allow(stream.target, now, STREAMLESS_SECONDS)
            if self._leave_seq is None:
                self._send_state(stream.target, want_reply=True, stream=False)
        elif stream.kind == _Stream.MESSAGE:
            self._events.append(StreamDone(token, ok))
        if packet is not None and self._leave_seq is None:
            self._table.verify(stream.target)
            self._reply_to = stream.target
            self._sender_known = True
            self._sender_verified = True
            self._carries_own_record = False
            self._in_stream = True
            try:
                self._handle_packet(packet, now)
            finally:
                self._in_stream = False

    def _answer_of(self, stream: _Stream, token: int, data: bytes | None) -> Packet | None:
        """The answer's packet without its ack of ``token``; None if it is no answer."""
        if data is None:
            return None
        self._counts.packets_received += 1
        self._counts.bytes_received += len(data)
        packet, _ = self._open(data, self._stream_codec)
        if isinstance(packet, DropReason):
            self._drop(packet, stream.target, data)
            return None
        if packet.sender != stream.target:
            self._drop(DropReason.SPOOFED, stream.target)
            return None
        acked = Ack(token)
        if acked not in packet.messages:
            return None
        rest = [m for m in packet.messages if m != acked]
        return Packet(packet.version, packet.cluster, packet.sender, rest)

    def _open_stream(
        self, stream: _Stream, token: int, messages: list[Message], timeout: float
    ) -> bool:
        """Ask the runner for a TCP exchange; False if too many are open."""
        if len(self._streams) >= MAX_OPEN_STREAMS:
            return False
        self._streams[token] = stream
        data = self._encode([Ping(token), *messages], self._stream_codec)
        self._counts.packets_sent += 1
        self._counts.bytes_sent += len(data)
        self._stream_out.append(StreamRequest(token, stream.target, data, timeout))
        return True

    # ------------------------------------------------------------- sending

    def _send(self, address: str, messages: list[Message], *, bare: bool = False) -> None:
        if self._stream_reply is not None and address == self._reply_to:
            self._stream_reply.extend(messages)
            return
        if len(self._outbox) >= SEND_QUEUE_SIZE:
            self._counts.dropped_send_queue_full += 1
            return
        self._outbox.append((address, messages, bare))

    def _compose_packet(self, address: str, messages: list[Message]) -> bytes | None:
        """Encode ``messages`` plus as much piggyback as fits; None if nothing to send."""
        node = self._table.get(address)
        if (
            node is not None
            and node.status is not Status.ALIVE
            and (self.config.lifeguard or node.status is not Status.SUSPECT)
        ):
            # Tell the receiver what we believe of it, so it can refute.
            messages = [*messages, self._update_message(node, self.address)]
        budget = self.config.max_packet_bytes - self._envelope
        for message in messages:
            budget -= self._codec.message_size(message)
        limit = self._retransmit_limit
        piggyback, used = self._updates.take_sized(budget, limit)
        more, _ = self._broadcasts.take_sized(budget - used, limit)
        piggyback += more
        if not messages and not piggyback:
            return None
        return self._encode(messages + piggyback)

    def _update_message(self, node: Node, source: str, *, full: bool = False) -> Update:
        """The wire record of ``node``; it carries the metadata if ALIVE (the
        member's own announcement), or in a state exchange (``full``)."""
        metadata = (
            node.metadata if node.metadata and (full or node.status is Status.ALIVE) else None
        )
        return Update(node.address, _WIRE_STATUS[node.status], node.incarnation, source, metadata)

    def _record_source(self, node: Node) -> str:
        """Who a relayed record is attributed to.

        A suspicion keeps the member that raised it: passed on in a state
        exchange under this member's name, it would count as an independent
        confirmation and cut the receiver's suspicion timeout.
        """
        suspicion = self._suspicion_of(node.address)
        return self.address if suspicion is None else suspicion.origin

    def _queue_update(self, update: Update) -> None:
        # News learned in a state exchange is likely known around already (the
        # sender had it, and states travel widely): it is spread half as often,
        # behind news that is fresh, such as a newcomer's arrival.
        # The sender's own record is first-hand news (a joiner's arrival).
        stale = self._in_state_exchange and update.address not in (
            self.address,
            self._exchange_sender,
        )
        sent = self._retransmit_limit // 2 if stale else 0
        self._updates.put(update.address, update, self._codec.message_size(update), sent=sent)
        self._arm_gossip()

    def _queue_broadcast(self, message: UserBroadcast) -> None:
        key = (message.origin, message.seq)
        self._broadcasts.put(key, message, self._codec.message_size(message))
        self._arm_gossip()

    def _arm_gossip(self) -> None:
        """There is news: make sure a gossip round is set, at the next grid point."""
        if self._gossip_armed or not self._gossip_enabled:
            return
        if self._gossip_next < self._now:
            missed = math.ceil((self._now - self._gossip_next) / self._gossip_interval)
            self._gossip_next += missed * self._gossip_interval
        self._gossip_armed = True
        self._timers.push(self._gossip_next, GossipDue())

    def _state_records(self, budget: int) -> tuple[list[Update], int]:
        """Records of the whole table (this member's first), as many as fit in
        ``budget`` bytes, and the bytes they take."""
        me = self._table.me
        records = [self._update_message(me, self.address, full=True)]
        used = self._codec.message_size(records[0])
        for node in self._table.nodes():
            if node.address == me.address:
                continue
            update = self._update_message(node, self._record_source(node), full=True)
            size = self._codec.message_size(update)
            if used + size > budget:
                break
            records.append(update)
            used += size
        return records, used

    def _send_state(self, address: str, *, want_reply: bool, stream: bool | None = None) -> None:
        """Send the whole table to ``address``.

        On a stream being answered, it goes back on the stream, in one
        message. A request (``want_reply``) goes over a TCP stream when
        ``stream`` is True, or is None and the state does not fit in one
        datagram (and falls back to UDP if that fails); else it is split
        over as many datagrams as needed.
        """
        if self._stream_reply is not None and address == self._reply_to:
            budget = self.config.max_stream_bytes - self._envelope - _STREAM_SLACK
            self._stream_reply.append(Sync(want_reply, self._state_records(budget)[0]))
            return
        datagram = self.config.max_packet_bytes - self._envelope - _SYNC_HEADER_SLACK
        receiver = self._table.get(address)
        if receiver is not None and receiver.status is not Status.ALIVE:
            # Room for what we believe of the receiver (see _compose_packet).
            datagram -= self._codec.message_size(self._update_message(receiver, self.address))
        if (
            want_reply
            and stream is not False
            and not self._in_stream
            and not self._no_streams.recent(address, self._now, STREAMLESS_SECONDS)
        ):
            budget = self.config.max_stream_bytes - self._envelope - _STREAM_SLACK
            records, used = self._state_records(budget)
            timeout = self.config.stream_timeout_millis / 1000
            if (stream or used > datagram) and self._open_stream(
                _Stream(_Stream.STATE, address), self._next_seq(), [Sync(True, records)], timeout
            ):
                return
        chunk: list[Update] = []
        used = 0
        for node in self._table.nodes():
            update = self._update_message(node, self._record_source(node), full=True)
            size = self._codec.message_size(update)
            if chunk and used + size > datagram:
                self._send(address, [Sync(want_reply, chunk)])
                want_reply, chunk, used = False, [], 0
            chunk.append(update)
            used += size
        self._send(address, [Sync(want_reply, chunk)])

    # ----------------------------------------------------------- receiving

    def _valid_address(self, address: str) -> bool:
        """A member address heard from the network: canonical ``ip:port`` only."""
        if address in self._checked or self._table.get(address) is not None:
            return True
        if not is_canonical_ip_address(address):
            return False
        if len(self._checked) >= _CHECKED_ADDRESSES:
            self._checked.clear()
        self._checked.add(address)
        return True

    def _handle_packet(self, packet: Packet, now: float) -> None:
        sender = packet.sender
        for message in packet.messages:
            match message:
                case Update():
                    self._on_update(message, now, sender)
                case Ping(seq=seq):
                    self._send(self._reply_to, [Ack(seq)])
                case Ack(seq=seq):
                    self._on_ack(seq, now, sender)
                case PingReq():
                    self._on_ping_req(sender, message, now)
                case Nack(seq=seq):
                    probe = self._pending.get(seq)
                    if isinstance(probe, _Probe) and sender in probe.asked:
                        probe.nacks += 1
                    else:
                        self._counts.ignored_acks += 1
                case UserBroadcast():
                    self._on_broadcast(message, now)
                case Sync():
                    self._on_sync(sender, message, now)
                case Announce():
                    self._on_announce(sender, now)
                case UserMessage(payload=payload):
                    self._events.append(MessageReceived(sender, payload, self._in_stream))
                case _:
                    _assert_never(message)
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
        if now - first >= self._retransmit_limit * self.config.period:
            del self._unknown_since[sender]
            self._introduce_to(sender, self._reply_to, now, answering=False)

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
        if self._dead_notices.allow(sender, now, self.config.period):
            self._send(self._reply_to, [self._update_message(node, self.address)])

    def _on_ack(self, seq: int, now: float, sender: str) -> None:
        """An ack counts only from whom the ping went to: the target of a
        probe or one of the helpers asked to relay it, the target of a relay."""
        waiting = self._pending.get(seq)
        if isinstance(waiting, _Probe) and (sender == waiting.target or sender in waiting.asked):
            if sender == waiting.target and waiting.round_trip is None:
                waiting.round_trip = now - waiting.sent_at
            if not waiting.acked:
                waiting.acked = True
                self._conclude_probe(waiting, now)
        elif isinstance(waiting, _Relay) and sender == waiting.target:
            del self._pending[seq]
            self._send(waiting.reply_to, [Ack(waiting.requester_seq)])
        elif self._cookies.get(sender) == seq:
            # The introduced stranger answered from the address it claims:
            # it is real, and it gets the whole state now.
            del self._cookies[sender]
            self._table.verify(sender)
            if self._may_send_state(sender, now):
                self._send_state(self._reply_to, want_reply=False)
            return
        else:
            self._counts.ignored_acks += 1
            return
        self._table.verify(sender)

    def _on_ping_req(self, requester: str, message: PingReq, now: float) -> None:
        """Ping a member for another; only members ask, and only about members
        (else a stranger could aim this member's pings anywhere)."""
        target = self._table.get(message.target)
        if (
            len(self._pending) >= MAX_PENDING_PINGS
            or not self._sender_known
            or target is None
            or target.status not in (Status.ALIVE, Status.SUSPECT)
        ):
            self._counts.refused_ping_reqs += 1
            return
        seq = self._next_seq()
        self._pending[seq] = _Relay(self._reply_to, message.seq, message.target)
        self._send(message.target, [Ping(seq)])
        wait = nack_timeout(
            self._base_probe_timeout(), self.config.period, self.config.probe_timeout
        )
        self._timers.push(now + wait, RelayNack(seq))

    def _on_broadcast(self, message: UserBroadcast, now: float) -> None:
        if len(message.payload) > self.config.max_broadcast_bytes:
            self._counts.refused_broadcasts += 1
            return
        if message.origin == self.address:
            return
        origin = self._table.get(message.origin)
        if (
            not self._sender_known
            or origin is None
            or origin.status not in (Status.ALIVE, Status.SUSPECT)
        ):
            self._counts.refused_broadcasts += 1
            return
        if not self._seen.first_time((message.origin, message.seq), now):
            return
        self._queue_broadcast(message)
        self._events.append(BroadcastReceived(message.origin, message.payload))

    def _on_sync(self, sender: str, message: Sync, now: float) -> None:
        self._in_state_exchange = True
        self._exchange_sender = sender
        try:
            self._merge_state(sender, message, now)
        finally:
            self._in_state_exchange = False
        self._events.append(SyncAnswered(sender))
        # An introduction (the sender's own record, asking for ours) is not
        # its state yet: the state follows once we ack its ping, and if that
        # ack is lost the join must go on trying.
        introduction = message.want_reply and all(u.address == sender for u in message.members)
        if not introduction:
            if not self._exchanged:
                self._exchanged = True
                self._events.append(Joined(sender, len(self._table)))
            if not self._joined and sender in self._seeds:
                self._on_joined(now)
        if message.want_reply:
            self._answer_state_request(sender, now)

    def _merge_state(self, sender: str, message: Sync, now: float) -> None:
        for update in message.members:
            if update.status is WireStatus.DEAD and update.address != self.address:
                self._on_remote_verdict(update, sender, now)
                continue
            local = self._table.get(update.address)
            if (
                local is not None
                and local.status is Status.DEAD
                and update.status in (WireStatus.ALIVE, WireStatus.SUSPECT)
            ):
                # It is alive for the sender: probe it now rather than at the
                # next backoff step.
                self._timers.push(now, RetryDead(update.address, None))
            self._on_update(update, now, sender)

    def _answer_state_request(self, sender: str, now: float) -> None:
        """Send our state to whoever asked (to the datagram's source).

        A member that proved its address (it answered a ping, or sealed its
        datagram) and a seed get the whole table; anyone else first gets only
        an introduction (see :meth:`_introduce_to`): a small request from a
        forged source must not pull a large answer onto a third party.
        Either at most once a period.
        """
        if self._sender_verified or sender in self._seeds:
            if self._may_send_state(sender, now):
                self._send_state(self._reply_to, want_reply=False)
        else:
            self._introduce_to(sender, self._reply_to, now)

    def _introduce_to(
        self, stranger: str, address: str, now: float, *, answering: bool = True
    ) -> None:
        """Send a stranger this member's own record and a ping, asking for its state.

        A stranger's claimed address may be forged, so the introduction is
        one datagram with nothing else on it, and it answers a request
        (``answering``) only if the request carried the stranger's own
        record, as a joiner's state and an announcement do: then it is about
        the size of the request. The stranger's ack of the ping (its number
        is random) proves it receives at that address; then it is sent the
        whole state. At most one a period to any one stranger.
        """
        if answering and not self._carries_own_record:
            return
        if not self._introductions.allow(stranger, now, self.config.period):
            return
        if len(self._cookies) >= self.config.max_members:
            self._cookies.clear()
        cookie = self._cookies[stranger] = self._next_seq()
        me = self._update_message(self.me, self.address)
        self._send(address, [Ping(cookie), Sync(True, [me])], bare=True)

    def _on_remote_verdict(self, update: Update, sender: str, now: float) -> None:
        """Another member's DEAD verdict in a state exchange is only a suspicion
        here: the member may be reachable from this side (a healed partition)."""
        if not (self._valid_address(update.address) and self._valid_address(update.source)):
            self._drop(DropReason.MALFORMED, self._reply_to)
            return
        if not self._sender_known or not self._plausible(update.address, update.incarnation):
            self._counts.refused_rumours += not self._sender_known
            return
        self._apply(update.address, Status.SUSPECT, update.incarnation, sender, now, sender)
        if _holds(self._table.get(update.address), Status.SUSPECT, update.incarnation):
            # Tell the member itself: if it is alive it refutes to us at once,
            # rather than when our probe round reaches it.
            suspicion = Update(update.address, WireStatus.SUSPECT, update.incarnation, sender)
            self._send(update.address, [suspicion])

    def _may_send_state(self, address: str, now: float) -> bool:
        """At most one unsolicited full state per address per period: a forged
        request must not turn this member into an amplifier."""
        return self._sync_replies.allow(address, now, self.config.period)

    def _on_announce(self, sender: str, now: float) -> None:
        """Introduce this member to an announcer it does not know (at most once
        a period): the announcer's answer makes them members of each other."""
        if self._table.get(sender) is None:
            self._introduce_to(sender, sender, now)

    # ------------------------------------------------------ membership news

    def _on_update(self, update: Update, now: float, sender: str) -> None:
        """Merge one update from the network; ``sender`` carried it."""
        address = update.address
        status = _STATUS[update.status]
        known = self._table.get(address)
        if not self._valid_address(update.source) or (
            known is None and not self._valid_address(address)
        ):
            self._drop(DropReason.MALFORMED, self._reply_to)
            return
        if (
            known is not None
            and address != self.address
            and not supersedes(status, update.incarnation, known)
        ):
            # Old news, the common case: every update arrives many times over.
            if status is Status.SUSPECT and self._sender_known:
                self._confirm_suspicion(address, update.incarnation, update.source)
            return
        if (
            not self._sender_known
            and address == self.address
            and status is Status.ALIVE
            and update.incarnation <= self.me.incarnation
        ):
            return  # our own record, passed on: nothing to refute
        if not self._sender_known and (address == self.address or status is not Status.ALIVE):
            # A stranger may introduce members, never accuse one, nor speak
            # of this member (a forged rumour it would have to refute).
            self._counts.refused_rumours += 1
            return
        if not self._plausible(address, update.incarnation):
            return
        metadata = update.metadata
        if metadata is not None and len(metadata) > self.config.max_metadata_bytes:
            self._counts.refused_metadata += 1
            return
        self._apply(address, status, update.incarnation, update.source, now, sender, metadata)

    def _plausible(self, address: str, incarnation: int) -> bool:
        """An incarnation this member may adopt: at most MAX_INCARNATION, and
        at most INCARNATION_JUMP above the one held for the member."""
        known = self._table.get(address)
        if incarnation > MAX_INCARNATION or (
            known is not None and incarnation > known.incarnation + INCARNATION_JUMP
        ):
            self._counts.refused_incarnations += 1
            return False
        return True

    def _apply(
        self,
        address: str,
        status: Status,
        incarnation: int,
        source: str,
        now: float,
        sender: str | None,
        metadata: bytes | None = None,
    ) -> None:
        """Merge what ``source`` believes of ``address``; ``sender`` carried it
        (None for this member's own verdicts)."""
        result = self._table.apply(address, status, incarnation, now, metadata)
        if isinstance(result, Refused):
            if result is Refused.TABLE_FULL:
                self._counts.refused_table_full += 1
            elif address == self.address:
                self._answer_stale_rumour(status, incarnation, sender)
            elif status is Status.SUSPECT:
                self._confirm_suspicion(address, incarnation, source)
        elif isinstance(result, Refute):
            self._counts.refutations += 1
            self._events.append(Refuted(result.node.incarnation, source))
            self._adjust_health(1)
            self._refute(result.node, None if sender is None else self._reply_to, source)
        else:
            self._on_change(result, source, now)

    def _refute(self, me: Node, reply_to: str | None, accuser: str | None) -> None:
        """Spread this member's ALIVE record, and send it straight to whoever
        carried the rumour (``reply_to``) and, if a member, who raised it.

        Gossip alone leaves a few members unreached now and then (more under
        loss); the members that carried or raised the rumour hear it directly.
        """
        record = self._update_message(me, self.address)
        self._queue_update(record)
        if reply_to is not None:
            self._send(reply_to, [record])
        if (
            accuser is not None
            and accuser not in (reply_to, self.address)
            and self._table.get(accuser) is not None
        ):
            self._send(accuser, [record])

    def _answer_stale_rumour(self, status: Status, incarnation: int, sender: str | None) -> None:
        """Someone still says this member is SUSPECT or DEAD at an incarnation it
        has already refuted: that member missed the refutation, so repeat it."""
        me = self._table.me
        if (
            me.status is Status.ALIVE
            and status in (Status.SUSPECT, Status.DEAD)
            and incarnation < me.incarnation
        ):
            self._refute(me, None if sender is None else self._reply_to, None)

    def _declare(self, address: str, status: Status, incarnation: int, now: float) -> None:
        """Record this member's own verdict and spread it."""
        self._apply(address, status, incarnation, self.address, now, None)

    def _declare_dead(self, address: str, incarnation: int, now: float) -> None:
        self._declare(address, Status.DEAD, incarnation, now)
        if _holds(self._table.get(address), Status.DEAD, incarnation):
            self._events.append(Declared(address, Status.DEAD, incarnation))

    def _on_change(self, change: Change, source: str, now: float) -> None:
        if change.evicted is not None:
            self._counts.evicted_unverified += 1
            self._forget(change.evicted)
        node = change.node
        address = node.address
        self._queue_update(self._update_message(node, source))
        if node.status is Status.SUSPECT:
            self._start_suspicion(node, source, now)
        else:
            self._suspicions.pop(address, None)
        if node.status is Status.DEAD:
            schedule = self._retries.start(address)
            self._timers.push(now + self.config.period, RetryDead(address, 0, schedule))
        elif self._retries.stop(address) and node.status is Status.ALIVE:
            self._events.append(Declared(address, Status.ALIVE, node.incarnation))
            self._retry_another(now)
        if node.status is Status.LEFT:
            removal = now + self.config.left_removal_seconds
            self._timers.push(removal, RemoveLeft(address, node.incarnation))
        previous = change.previous
        if previous is None:
            self._unknown_since.pop(address, None)
        if previous is None or previous.status is not node.status:
            self._events.append(
                StatusChanged(node, node.status, None if previous is None else previous.status)
            )
        if previous is not None and previous.metadata != node.metadata:
            self._events.append(MetadataChanged(node, previous.metadata))

    def _suspicion_of(self, address: str) -> Suspicion | None:
        """The suspicion of ``address`` if it is the current one: the member is
        SUSPECT in the table at the suspicion's incarnation."""
        suspicion = self._suspicions.get(address)
        if suspicion is None:
            return None
        node = self._table.get(address)
        if node is None or node.status is not Status.SUSPECT:
            return None
        return suspicion if suspicion.incarnation == node.incarnation else None

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
        self._timers.push(suspicion.deadline, SuspicionDue(node.address, node.incarnation))

    def _confirm_suspicion(self, address: str, incarnation: int, source: str) -> None:
        suspicion = self._suspicion_of(address)
        if suspicion is None or suspicion.incarnation != incarnation:
            return
        if suspicion.confirm(source):
            self._timers.push(suspicion.deadline, SuspicionDue(address, incarnation))
            # Spread the confirmation too, so others shorten their timers.
            self._queue_update(Update(address, WireStatus.SUSPECT, incarnation, source))

    def _remove(self, address: str, now: float) -> None:
        node = self._table.remove(address, now, self.config.tombstone_seconds)
        if node is not None:
            self._forget(node)

    def _forget(self, node: Node) -> None:
        """``node`` left the table: drop everything kept about it."""
        address = node.address
        self._updates.discard(address)
        self._suspicions.pop(address, None)
        self._retries.stop(address)
        self._dead_notices.forget(address)
        self._events.append(MemberRemoved(node))

    # --------------------------------------------------------------- timers

    def _fire(self, timer: Timer, now: float) -> None:
        match timer:
            case ProbePeriodEnd():
                self._start_period(now)
            case ProbeTimeout(seq=seq):
                self._probe_indirectly(seq)
            case SuspicionDue(address=address, incarnation=incarnation):
                self._suspicion_due(address, incarnation, now)
            case RetryDead(address=address, attempt=attempt, schedule=schedule):
                self._retry_dead(address, attempt, schedule, now)
            case RemoveLeft(address=address, incarnation=incarnation):
                if _holds(self._table.get(address), Status.LEFT, incarnation):
                    self._remove(address, now)
            case RelayNack(seq=seq):
                # No ack yet: nack now, but keep relaying a late ack for a period.
                relay = self._pending.get(seq)
                if isinstance(relay, _Relay):
                    if self.config.lifeguard:
                        self._send(relay.reply_to, [Nack(relay.requester_seq)])
                    self._timers.push(now + self.config.period, RelayEnd(seq))
            case RelayEnd(seq=seq):
                if isinstance(self._pending.get(seq), _Relay):
                    del self._pending[seq]
            case GossipDue():
                self._gossip_next = now + self._gossip_interval
                if self._updates or self._broadcasts:
                    self._timers.push(self._gossip_next, GossipDue())
                    for target in self._table.random_live(self.config.gossip_fanout):
                        self._send(target, [])
                else:
                    self._gossip_armed = False
            case SyncDue():
                interval = self.config.sync_interval_seconds * self._push_pull_scale()
                self._timers.push(now + self._jittered(interval), SyncDue())
                for target in self._table.random_live(1):
                    self._send_state(target, want_reply=True)
            case SeedAttempt(attempt=attempt):
                if not self._joined and attempt == self._seed_attempt:
                    self.join(self._seeds, now)
                    self._timers.push(now + self._seed_wait, SeedWaitOver(attempt))
            case SeedWaitOver(attempt=attempt):
                if not self._joined and attempt == self._seed_attempt:
                    self._seed_attempt += 1
                    retry_in = self._rng.uniform(0, self._seed_wait)
                    self._timers.push(now + retry_in, SeedAttempt(self._seed_attempt))
                    self._events.append(JoinRetrying(tuple(self._seeds), retry_in))
                    self._seed_wait = min(self._seed_wait * 2, SEED_RECHECK_SECONDS)
            case FollowUpSync():
                for target in self._table.random_live(1):
                    self._send_state(target, want_reply=True)
                self._timers.push(now + self._jittered(SEED_RECHECK_SECONDS), SeedRecheck())
            case SeedRecheck():
                self._timers.push(now + self._jittered(SEED_RECHECK_SECONDS), SeedRecheck())
                for target in self._seeds:
                    node = self._table.get(target)
                    if node is None or node.status in (Status.DEAD, Status.LEFT):
                        self._send_state(target, want_reply=True)
            case _:
                _assert_never(timer)

    def _on_joined(self, now: float) -> None:
        self._joined = True
        wait = self._retransmit_limit * self.config.period * (1 + self._rng.random())
        self._timers.push(now + wait, FollowUpSync())

    def _suspicion_due(self, address: str, incarnation: int, now: float) -> None:
        suspicion = self._suspicion_of(address)
        if (
            suspicion is None
            or suspicion.incarnation != incarnation
            or suspicion.deadline > now
            or suspicion.rechecking
        ):
            return  # refuted, superseded, or its deadline moved
        if self.config.lifeguard and suspicion.needs_recheck():
            suspicion.rechecking = True
            self._rechecks[address] = None
        else:
            self._declare_dead(address, incarnation, now)

    def _retry_dead(self, address: str, attempt: int | None, schedule: int, now: float) -> None:
        node = self._table.get(address)
        if node is None or node.status is not Status.DEAD:
            return
        if attempt is not None and not self._retries.is_current(address, schedule, attempt):
            return  # stale: the member died again since
        if attempt is not None and attempt >= self.config.dead_retry_limit:
            self._remove(address, now)
            return
        # The ping carries the DEAD record (see _compose_packet): a live member
        # refutes in its ack, and the refutation spreads from here.
        self._send(address, [Ping(self._next_seq())])
        if attempt is not None:
            self._retries.advance(address, schedule, attempt)
            gap = min(2 ** (attempt + 1), self.config.dead_retry_max_periods)
            retry = RetryDead(address, attempt + 1, schedule)
            self._timers.push(now + gap * self.config.period, retry)

    def _retry_another(self, now: float) -> None:
        """A DEAD member is back, so the network may have healed: retry the DEAD
        member that has waited longest now rather than at its next backoff step."""
        other = self._retries.longest_waiting()
        if other is not None:
            self._timers.push(now, RetryDead(other, None))

    # ---------------------------------------------------------------- probing

    def _next_seq(self) -> int:
        """A fresh, unpredictable sequence number (an ack must echo it)."""
        while True:
            seq = self._seq_rng.getrandbits(62)
            if seq not in self._pending and seq != self._leave_seq:
                return seq

    def _base_probe_timeout(self) -> float:
        """The ack timeout before local health scales it."""
        if self.config.adaptive_probe_timeout:
            return self._rtt.timeout()
        return self.config.probe_timeout

    def _probe_timeout(self) -> float:
        return self._base_probe_timeout() * self._health.multiplier

    def _start_period(self, now: float) -> None:
        """End the period (its probe failed if still open) and start the next:
        ping the next member, and ask helpers at the probe timeout."""
        if self._probe is not None:
            self._conclude_probe(self._probe, now)
        self._timers.push(now + self.config.period * self._health.multiplier, ProbePeriodEnd())
        target = self._next_recheck() or self._table.next_probe_target()
        if target is None:
            return
        seq = self._next_seq()
        node = self._table.get(target)
        incarnation = 0 if node is None else node.incarnation
        self._probe = probe = _Probe(seq, target, incarnation, now)
        self._pending[seq] = probe
        self._counts.probes_sent += 1
        self._send(target, [Ping(seq)])
        self._timers.push(now + self._probe_timeout(), ProbeTimeout(seq))

    def _probe_indirectly(self, seq: int) -> None:
        probe = self._probe
        if probe is None or probe.seq != seq:
            return  # answered in time
        helpers = self._table.random_live(
            self.config.indirect_checks, exclude=frozenset((probe.target,))
        )
        for helper in helpers:
            self._send(helper, [PingReq(seq, probe.target)])
        probe.asked = frozenset(helpers)
        if self.config.tcp_fallback_probe:
            # What is left of the period: the probe's verdict comes at its end.
            left = self.config.period * self._health.multiplier - (self._now - probe.sent_at)
            stream = _Stream(_Stream.PROBE, probe.target, seq)
            if left > 0 and self._open_stream(stream, self._next_seq(), [], left):
                self._counts.tcp_probes_sent += 1

    def _conclude_probe(self, probe: _Probe, now: float) -> None:
        """The probe was answered, or its period ended without an answer."""
        self._probe = None
        self._pending.pop(probe.seq, None)
        self._adjust_health(probe_health_delta(probe.acked, len(probe.asked), probe.nacks))
        if probe.round_trip is not None:
            # Late answers count too, or the estimate would only ever see
            # the round trips that beat it, and shrink to its floor.
            self._rtt.observe(probe.round_trip)
        rechecked = self._rechecking(probe.target)
        if probe.acked:
            if rechecked is not None:
                # It answered but has not refuted yet (or this member missed
                # the refutation): give that a whole timeout again.
                rechecked.restart(now)
                self._timers.push(
                    rechecked.deadline, SuspicionDue(probe.target, rechecked.incarnation)
                )
            return
        self._counts.probes_failed += 1
        self._events.append(ProbeFailed(probe.target, len(probe.asked), probe.nacks))
        node = self._table.get(probe.target)
        if rechecked is not None:
            self._declare_dead(probe.target, rechecked.incarnation, now)
        elif node is not None and node.status in (Status.ALIVE, Status.SUSPECT):
            if node.status is Status.ALIVE:
                self._counts.suspicions_raised += 1
            # Already SUSPECT: this failure is an independent confirmation. At
            # the incarnation pinged: a refutation heard since is newer news.
            self._declare(probe.target, Status.SUSPECT, probe.incarnation, now)

    def _rechecking(self, address: str) -> Suspicion | None:
        """The suspicion of ``address`` if it awaits its re-check probe."""
        suspicion = self._suspicion_of(address)
        return suspicion if suspicion is not None and suspicion.rechecking else None

    def _next_recheck(self) -> str | None:
        while self._rechecks:
            address = next(iter(self._rechecks))
            del self._rechecks[address]
            if self._rechecking(address) is not None:
                return address
        return None

    def _adjust_health(self, delta: int) -> None:
        if self.config.lifeguard:
            half = self._health.max_score // 2
            was = self._health.score
            self._health.apply(delta)
            if was <= half < self._health.score:
                self._events.append(HealthWarning(self._health.score, self._health.max_score))

    # ----------------------------------------------------------------- misc

    @property
    def _retransmit_limit(self) -> int:
        return retransmit_limit(self.config.retransmit_mult, self._table.live_count)

    def _push_pull_scale(self) -> int:
        """How many times the base state-exchange interval to wait: 1 up to
        PUSH_PULL_SCALE_THRESHOLD members, then one more per doubling."""
        n = self._table.live_count
        if n <= PUSH_PULL_SCALE_THRESHOLD:
            return 1
        return math.ceil(math.log2(n) - math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1

    def _jittered(self, interval: float) -> float:
        """``interval`` times 0.5 .. 1.5, so members started together drift apart."""
        return interval * (0.5 + self._rng.random())
