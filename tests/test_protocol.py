"""The protocol core, :class:`trio_swim.protocol.Swim`, driven by plain calls.

No trio, no nursery, no clock: every test feeds one core (or a few wired
together by a tiny in-test network) datagrams and times, and checks what it
asks to send and what it reports, at exact times.

Numbers come from the Config defaults unless a test says otherwise: period
(heartbeat) 250 ms, probe timeout 100 ms, indirect_checks 3, suspicion_mult 4,
suspicion_max_timeout_mult 6, retransmit_mult 4, lifeguard on. :func:`make`
turns state sync and the adaptive probe timeout off, so that only the
protocol under test sends anything and the ack timeout is a constant.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trio_swim.config import Config
from trio_swim.events import BroadcastReceived, MemberRemoved, StatusChanged
from trio_swim.membership import Node, Status
from trio_swim.protocol import (
    SEND_QUEUE_SIZE,
    BroadcastTooLarge,
    LeaveAcked,
    MemberStatistics,
    Output,
    StreamRequest,
    Swim,
    SyncAnswered,
)
from trio_swim.wire import (
    Ack,
    Codec,
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

from strategies import messages as wire_messages

ME = "10.0.0.1:7946"
CODEC = Codec("trio-swim", 1400)
PERIOD = 0.25
PROBE_TIMEOUT = 0.1
M = TypeVar("M", bound=Message)
E = TypeVar("E", bound=Output)


def peer(i: int) -> str:
    return f"10.0.0.{i}:7946"


def make(address: str = ME, seed: int = 5, **settings: Any) -> Swim:
    """A core for ``address`` created at time 0, incarnation 10."""
    options: dict[str, Any] = {"sync_interval_seconds": 0, "adaptive_probe_timeout": False}
    options.update(settings)
    return Swim(Config(**options), address, rng=random.Random(seed), incarnation=10, now=0.0)


def alive(*peers: str, incarnation: int = 1) -> list[Update]:
    return [Update(p, WireStatus.ALIVE, incarnation, p) for p in peers]


class Driver:
    """One core and the world around it, as the test scripts it.

    Every datagram pulled is decoded and kept in :attr:`sent` with its time,
    every event in :attr:`events`. Members in :attr:`acking` ack each ping at
    once (same instant); members in :attr:`nacking` nack each ping-req at once.
    """

    def __init__(self, swim: Swim) -> None:
        self.swim = swim
        self.now = 0.0
        self.sent: list[tuple[float, str, Packet]] = []
        self.events: list[tuple[float, Output]] = []
        self.acking: set[str] = set()
        self.nacking: set[str] = set()
        self.streams: list[tuple[float, StreamRequest]] = []
        """Stream exchanges asked for; each fails at once (unless :attr:`hold_streams`)."""
        self.hold_streams = False

    def drain(self, now: float) -> None:
        """Pull every datagram (answering it if scripted to) and every event."""
        while (request := self.swim.next_stream()) is not None:
            self.streams.append((now, request))
            if not self.hold_streams:
                self.swim.stream_reply(request.token, None, now)
        while (out := self.swim.next_datagram()) is not None:
            address, data = out
            assert len(data) <= CODEC.max_packet_bytes
            packet = CODEC.decode(data)
            assert isinstance(packet, Packet), packet
            self.sent.append((now, address, packet))
            replies: list[Message] = []
            for m in packet.messages:
                if isinstance(m, Ping) and address in self.acking:
                    replies.append(Ack(m.seq))
                if isinstance(m, PingReq) and address in self.nacking:
                    replies.append(Nack(m.seq))
            if replies:
                self.swim.receive(CODEC.encode(address, replies), now)
        while (event := self.swim.next_event()) is not None:
            self.events.append((now, event))

    def run(self, until: float) -> None:
        """Tick at every deadline up to ``until``, pulling the outputs of each."""
        self.drain(self.now)
        while (deadline := self.swim.next_deadline()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            self.swim.tick(self.now)
            self.drain(self.now)
        self.now = max(self.now, until)

    def deliver(self, sender: str, *messages: Message, now: float) -> None:
        """Fire the timers due by ``now``, then deliver one packet from ``sender``."""
        self.run(now)
        self.swim.receive(CODEC.encode(sender, list(messages)), now)
        self.drain(now)

    def introduce(self, *peers: str, now: float, incarnation: int = 1) -> None:
        """Make the core know ``peers`` as ALIVE (a one-way state push from the first)."""
        self.deliver(peers[0], Sync(False, alive(*peers, incarnation=incarnation)), now=now)

    # -------------------------------------------------------------- reading

    def messages(
        self, kind: type[M], to: str | None = None, since: float = 0.0
    ) -> list[tuple[float, str, M]]:
        """(time, address, message) of every ``kind`` message sent."""
        return [
            (at, address, m)
            for at, address, packet in self.sent
            if at >= since and (to is None or address == to)
            for m in packet.messages
            if isinstance(m, kind)
        ]

    def times(self, kind: type[Message], to: str, since: float = 0.0) -> list[float]:
        """When a ``kind`` message went to ``to`` (each message once)."""
        return [at for at, _, _ in self.messages(kind, to, since)]

    def outputs(self, kind: type[E]) -> list[tuple[float, E]]:
        return [(at, e) for at, e in self.events if isinstance(e, kind)]

    def changes(self, address: str) -> list[tuple[float, Status]]:
        """(time, new status) of every StatusChanged about ``address``."""
        return [
            (at, e.status) for at, e in self.outputs(StatusChanged) if e.node.address == address
        ]


def first_probe(driver: Driver, since: float) -> tuple[float, str, int]:
    """(time, target, seq) of the first probe sent at or after ``since``."""
    at, target, ping = driver.messages(Ping, since=since)[0]
    return at, target, ping.seq


# n = 6 (this member and five peers) for most scenarios below:
# minimum suspicion = 4 x max(1, log10 6 = 0.78) x 0.25 s = 1 s; with
# Lifeguard the maximum is 6 x 1 s = 6 s and k = 4 - 2 = 2 confirmations
# are expected (n - 2 = 4 >= 2 could confirm).
PEERS = [peer(i) for i in range(2, 7)]


def five_peers(**settings: Any) -> tuple[Driver, str]:
    """A core that knows PEERS since t=0.01; all answer but the first one it
    probes (at t=0.25), which is returned. Helpers nack, so failed probes of
    the target leave local health at 0 and the period at 250 ms."""
    d = Driver(make(**settings))
    d.introduce(*PEERS, now=0.01)
    d.run(0.25)
    at, target, _ = first_probe(d, 0.0)
    assert at == 0.25
    others = set(PEERS) - {target}
    d.acking |= others
    d.nacking |= others
    return d, target


# ------------------------------------------------------------ failure detection


def test_an_unanswered_probe_leads_to_ping_reqs_to_k_members_at_the_probe_timeout() -> None:
    d, target = five_peers()
    _, _, seq = first_probe(d, 0.0)
    d.run(0.49)
    reqs = d.messages(PingReq)
    # k = 3 helpers, three different ones and never the target, all at
    # ping (0.25) + probe timeout (0.1), each asking for the probe's own seq.
    assert [at for at, _, _ in reqs] == [0.25 + PROBE_TIMEOUT] * 3
    helpers = {to for _, to, _ in reqs}
    assert len(helpers) == 3
    assert helpers <= set(PEERS) - {target}
    assert {m for _, _, m in reqs} == {PingReq(seq, target)}
    # Still ALIVE until the period ends at 0.5.
    assert d.changes(target) == [(0.01, Status.ALIVE)]
    d.run(0.5)
    assert d.changes(target) == [(0.01, Status.ALIVE), (0.5, Status.SUSPECT)]
    assert d.swim.get(target) == Node(target, Status.SUSPECT, 1)
    # Every helper nacked: the silence is the target's, local health stays 0.
    assert d.swim.statistics().local_health == 0


def test_silent_helpers_raise_local_health_by_one_each() -> None:
    d, target = five_peers()
    d.nacking.clear()
    d.run(0.5)
    assert d.changes(target)[-1] == (0.5, Status.SUSPECT)
    # At 0.5 the failed probe is concluded: three helpers asked, none heard
    # from, +3, and the next period is (3 + 1) x 250 ms. Its probe is acked
    # at once: -1.
    assert d.swim.statistics().local_health == 2
    assert d.swim.statistics().probe_timeout == pytest.approx(3 * PROBE_TIMEOUT)
    d.run(3.25)
    # Periods of 4, 3, 2, 1 x 250 ms as each acked probe takes one off.
    assert [at for at, _, _ in d.messages(Ping)] == [0.25, 0.5, 1.5, 2.25, 2.75, 3.0, 3.25]
    assert d.swim.statistics().local_health == 0


@pytest.mark.parametrize(
    ("lifeguard", "reports", "dead_at", "recheck_at"),
    [
        # Plain SWIM: suspicion is the minimum, 1 s: SUSPECT at 0.5, DEAD at 1.5.
        (False, 0, 1.5, None),
        # Lifeguard, nobody confirms: the maximum, 6 s. The deadline 6.5 falls
        # on a period boundary; its timer was pushed first (at 0.5), so the
        # re-check is the probe of 6.5 and the verdict comes when that probe's
        # period ends, at 6.75.
        (True, 0, 6.75, 6.5),
        # One confirmation: 6 - log(2)/log(3) x (6 - 1) = 2.845 s, deadline
        # 3.345, still fewer than k = 2: re-check at 3.5, DEAD at 3.75.
        (True, 1, 3.75, 3.5),
        # Two confirmations (k): the minimum, 1 s, and no re-check.
        (True, 2, 1.5, None),
    ],
    ids=["swim", "lifeguard-alone", "lifeguard-one-more", "lifeguard-k-more"],
)
def test_a_suspect_is_declared_dead_at_the_exact_deadline(
    lifeguard: bool, reports: int, dead_at: float, recheck_at: float | None
) -> None:
    d, target = five_peers(lifeguard=lifeguard)
    accusers = [p for p in PEERS if p != target][:reports]
    for i, accuser in enumerate(accusers):
        d.deliver(accuser, Update(target, WireStatus.SUSPECT, 1, accuser), now=0.6 + 0.1 * i)
    d.run(12.0)
    assert d.changes(target) == [
        (0.01, Status.ALIVE),
        (0.5, Status.SUSPECT),
        (dead_at, Status.DEAD),
    ]
    assert d.swim.get(target) == Node(target, Status.DEAD, 1)
    pings = d.messages(Ping, target)
    if recheck_at is not None:
        [(_, _, recheck)] = [p for p in pings if p[0] == recheck_at]
        reqs = [(at, m) for at, _, m in d.messages(PingReq) if m.seq == recheck.seq]
        assert reqs == [(recheck_at + PROBE_TIMEOUT, PingReq(recheck.seq, target))] * 3
    # The DEAD verdict is spread, as this member's own.
    assert d.messages(Update, since=dead_at)[0][2] == Update(target, WireStatus.DEAD, 1, ME)
    assert d.swim.statistics().local_health == 0


def test_a_direct_ack_ends_the_probe_early() -> None:
    d = Driver(make())
    d.acking |= set(PEERS)
    d.introduce(*PEERS, now=0.01)
    d.run(5.0)
    # One probe per period, 0.25, 0.5 ... 5.0, each answered at once: no
    # ping-req ever (every probe timeout was stale), nobody suspected.
    assert [at for at, _, _ in d.messages(Ping)] == [0.25 * i for i in range(1, 21)]
    assert {to for _, to, _ in d.messages(Ping)} == set(PEERS)
    assert d.messages(PingReq) == []
    assert {status for _, status in d.changes(PEERS[0])} == {Status.ALIVE}
    assert all(e.status is Status.ALIVE for _, e in d.outputs(StatusChanged))
    stats = d.swim.statistics()
    assert (stats.local_health, stats.probe_timeout) == (0, PROBE_TIMEOUT)


def test_direct_acks_take_local_health_down_and_the_period_back() -> None:
    # Alone with one peer: a failed probe has no helper to ask, +1 each.
    d = Driver(make())
    lone = peer(2)
    d.introduce(lone, now=0.01)
    d.run(0.75)
    # Failed at 0.5 (+1): the next period is 2 x 250 ms.
    assert d.times(Ping, lone) == [0.25, 0.5]
    assert d.swim.statistics().local_health == 1
    assert d.changes(lone) == [(0.01, Status.ALIVE), (0.5, Status.SUSPECT)]
    d.acking.add(lone)
    d.run(1.0)
    # It refutes after the probe of 0.5 failed at 1.0 (an earlier refutation
    # would be suspected again by that failure, at the new incarnation).
    d.deliver(lone, Update(lone, WireStatus.ALIVE, 2, lone), now=1.1)
    d.run(3.0)
    assert d.swim.get(lone) == Node(lone, Status.ALIVE, 2)
    # 1.0: the probe of 0.5 failed (+1, period x3), the new one is acked at
    # once (-1); 1.75: -1 (period x2); 2.25: -1 ... back to 250 ms.
    assert d.times(Ping, lone) == [0.25, 0.5, 1.0, 1.75, 2.25, 2.5, 2.75, 3.0]
    assert d.swim.statistics().local_health == 0
    assert d.messages(PingReq) == []


# ---------------------------------------------------------------- stale timers


def test_the_probe_timeout_of_an_answered_probe_does_nothing() -> None:
    d = Driver(make(gossip_interval_millis=0))
    d.introduce(*PEERS, now=0.01)
    d.run(0.25)
    _, probed, seq = first_probe(d, 0.0)
    # Answered late, but within the probe timeout (due at 0.35).
    d.deliver(probed, Ack(seq), now=0.3)
    sent = len(d.sent)
    d.run(0.49)
    assert d.sent[sent:] == []
    # The next probe (0.5) is not answered: its timeout does ask for help.
    d.run(0.6)
    assert [at for at, _, _ in d.messages(PingReq)] == [0.6] * 3
    assert d.swim.statistics().local_health == 0  # -1 for the ack, clamped at 0


def test_a_suspicion_timer_after_a_refutation_does_nothing() -> None:
    d, target = five_peers(lifeguard=False)
    d.run(1.0)
    assert d.changes(target)[-1] == (0.5, Status.SUSPECT)
    d.deliver(target, Update(target, WireStatus.ALIVE, 2, target), now=1.0)
    d.acking.add(target)
    d.run(30.0)  # past the 1.5 deadline, and far beyond
    assert d.changes(target) == [(0.01, Status.ALIVE), (0.5, Status.SUSPECT), (1.0, Status.ALIVE)]
    assert d.swim.get(target) == Node(target, Status.ALIVE, 2)


def test_a_refutation_cancels_the_suspicion_for_good() -> None:
    d, target = five_peers()  # Lifeguard: deadline 6.5, a re-check after it
    d.deliver(target, Update(target, WireStatus.ALIVE, 2, target), now=2.0)
    d.acking.add(target)
    d.run(60.0)
    assert d.changes(target) == [(0.01, Status.ALIVE), (0.5, Status.SUSPECT), (2.0, Status.ALIVE)]
    assert d.swim.get(target) == Node(target, Status.ALIVE, 2)
    assert d.messages(PingReq, since=2.0) == []
    # An old report of the refuted suspicion changes nothing either.
    other = next(p for p in PEERS if p != target)
    d.deliver(other, Update(target, WireStatus.SUSPECT, 1, other), now=61.0)
    d.run(80.0)
    assert d.swim.get(target) == Node(target, Status.ALIVE, 2)


def lone_dead_peer(**settings: Any) -> tuple[Driver, str]:
    """A core (Lifeguard off) whose one peer never answers: probed 0.25 ..
    1.25, SUSPECT at 0.5, DEAD at 0.5 + 1 s = 1.5 (n = 2: the minimum)."""
    d = Driver(make(lifeguard=False, **settings))
    lone = peer(2)
    d.introduce(lone, now=0.01)
    d.run(1.5)
    assert d.changes(lone) == [(0.01, Status.ALIVE), (0.5, Status.SUSPECT), (1.5, Status.DEAD)]
    assert d.times(Ping, lone) == [0.25, 0.5, 0.75, 1.0, 1.25]
    return d, lone


def test_a_dead_retry_after_the_member_came_back_does_nothing() -> None:
    d, lone = lone_dead_peer()
    d.deliver(lone, Update(lone, WireStatus.ALIVE, 2, lone), now=1.6)
    d.acking.add(lone)
    d.run(3.0)
    # The first retry was due at 1.75; only the regular probe went out then.
    # (A retry would have been a second ping at 1.75, and another at 2.25.)
    assert d.times(Ping, lone, since=1.5) == [1.75, 2.0, 2.25, 2.5, 2.75, 3.0]
    assert d.swim.get(lone) == Node(lone, Status.ALIVE, 2)


def test_a_retry_timer_of_an_earlier_death_is_stale() -> None:
    d, lone = lone_dead_peer()
    # DEAD at 1.5 (first retry due 1.75), back at 1.6, DEAD again at 1.7 by
    # another member's verdict: the new schedule is 1.7 + 1, 3, 7 periods.
    d.deliver(lone, Update(lone, WireStatus.ALIVE, 2, lone), now=1.6)
    d.introduce(peer(3), now=1.65)  # a member: a stranger's verdict is refused
    d.deliver(peer(3), Update(lone, WireStatus.DEAD, 2, peer(3)), now=1.7)
    d.run(5.0)
    assert d.changes(lone)[-2:] == [(1.6, Status.ALIVE), (1.7, Status.DEAD)]
    # Got: [1.75, 2.25, 3.25], the earlier death's schedule.
    assert d.times(Ping, lone, since=1.5) == pytest.approx([1.95, 2.45, 3.45])


def test_a_left_removal_after_the_member_came_back_does_nothing() -> None:
    d = Driver(make(left_removal_seconds=2.0))
    gone = peer(2)
    d.introduce(gone, now=0.01)
    d.acking.add(gone)
    d.deliver(gone, Update(gone, WireStatus.LEFT, 1, gone), now=0.1)
    d.deliver(gone, Update(gone, WireStatus.ALIVE, 2, gone), now=1.0)
    d.run(10.0)
    assert d.outputs(MemberRemoved) == []
    assert d.swim.get(gone) == Node(gone, Status.ALIVE, 2)


# ------------------------------------------------------------ refuting itself


@pytest.mark.parametrize("status", [WireStatus.SUSPECT, WireStatus.DEAD, WireStatus.LEFT])
def test_hearing_itself_suspected_it_refutes_to_the_carrier_and_the_accuser(
    status: WireStatus,
) -> None:
    carrier, accuser = peer(2), peer(3)
    d = Driver(make(gossip_interval_millis=0))
    d.introduce(carrier, accuser, now=0.01)
    d.deliver(carrier, Ping(5), Update(ME, status, 10, accuser), now=0.02)
    refutation = Update(ME, WireStatus.ALIVE, 11, ME)
    assert d.swim.me == Node(ME, Status.ALIVE, 11)
    # Straight away: the ack to the carrier (the refutation rides on it as
    # news), and the refutation itself to the carrier and to the accuser.
    assert [(at, to, p.messages[0]) for at, to, p in d.sent] == [
        (0.02, carrier, Ack(5)),
        (0.02, carrier, refutation),
        (0.02, accuser, refutation),
    ]
    assert all(refutation in p.messages for _, _, p in d.sent)
    # Having to refute counts against local health.
    assert d.swim.statistics().local_health == 1
    assert d.outputs(StatusChanged) == [
        (0.01, StatusChanged(Node(p, Status.ALIVE, 1), Status.ALIVE, None)) for p in PEERS[:2]
    ]


def test_an_old_accusation_is_answered_with_the_current_record_and_no_new_incarnation() -> None:
    carrier, accuser, latecomer = peer(2), peer(3), peer(4)
    d = Driver(make(gossip_interval_millis=0))
    d.introduce(carrier, accuser, latecomer, now=0.01)
    d.deliver(carrier, Update(ME, WireStatus.SUSPECT, 10, accuser), now=0.02)
    assert d.swim.me.incarnation == 11
    before = len(d.sent)
    d.deliver(latecomer, Update(ME, WireStatus.SUSPECT, 10, accuser), now=0.03)
    assert [(to, p.messages[0]) for _, to, p in d.sent[before:]] == [
        (latecomer, Update(ME, WireStatus.ALIVE, 11, ME))
    ]
    assert d.swim.me.incarnation == 11
    assert d.swim.statistics().local_health == 1  # one refutation, not two
    # A current ALIVE record of itself, or older news, is no accusation.
    before = len(d.sent)
    d.deliver(latecomer, Update(ME, WireStatus.ALIVE, 11, latecomer), now=0.04)
    d.deliver(latecomer, Update(ME, WireStatus.LEFT, 3, latecomer), now=0.05)
    assert d.sent[before:] == []
    assert d.swim.me == Node(ME, Status.ALIVE, 11)


# ------------------------------------------------------------------- relaying

REQUESTER, TARGET = peer(2), peer(3)
# The relay's nack timeout: its own probe timeout, but at most half of what
# is left of the requester's period after the ping-req went out:
# min(0.1, (0.25 - 0.1) / 2) = 0.075 s.
NACK_AFTER = 0.075


def relay(**settings: Any) -> tuple[Driver, int]:
    """A core asked at t=1 by REQUESTER to ping TARGET for seq 77 (both
    introduced at that instant: only members relay, and only for members;
    its own next probe is at 1.25); returns the seq of its ping."""
    d = Driver(make(**settings))
    d.introduce(REQUESTER, TARGET, now=1.0)
    d.deliver(REQUESTER, PingReq(77, TARGET), now=1.0)
    [(at, to, ping)] = d.messages(Ping)
    assert (at, to) == (1.0, TARGET)
    assert ping.seq != 77  # its own seq: the requester's seq is kept for the answer
    return d, ping.seq


def test_a_relay_pings_the_target_and_relays_its_ack_with_the_requesters_seq() -> None:
    d, seq = relay()
    d.deliver(TARGET, Ack(seq), now=1.02)
    assert d.messages(Ack) == [(1.02, REQUESTER, Ack(77))]
    d.run(3.0)
    assert d.messages(Nack) == []  # answered: the nack timer was stale
    # A second ack of the same ping is not relayed again.
    d.deliver(TARGET, Ack(seq), now=3.1)
    assert d.messages(Ack) == [(1.02, REQUESTER, Ack(77))]


@pytest.mark.parametrize("lifeguard", [True, False])
def test_a_relay_nacks_a_silent_target_at_the_nack_timeout(lifeguard: bool) -> None:
    d, seq = relay(lifeguard=lifeguard)
    d.run(1.2)
    nacks = [(1.0 + NACK_AFTER, REQUESTER, Nack(77))] if lifeguard else []
    assert d.messages(Nack) == nacks
    # A late ack is still relayed for a period after the nack ...
    d.deliver(TARGET, Ack(seq), now=1.2)
    assert d.messages(Ack) == [(1.2, REQUESTER, Ack(77))]


def test_a_relay_forgets_the_ping_a_period_after_the_nack() -> None:
    d, seq = relay()
    d.run(1.0 + NACK_AFTER + PERIOD)  # the relay ends at 1.325
    d.deliver(TARGET, Ack(seq), now=1.4)
    assert d.messages(Ack) == []
    assert d.messages(Nack) == [(1.0 + NACK_AFTER, REQUESTER, Nack(77))]


def test_a_ping_req_for_a_garbage_target_is_refused_and_counted() -> None:
    d = Driver(make())
    d.deliver(REQUESTER, PingReq(1, "not-an-address"), PingReq(2, "10.0.0.01:7946"), now=1.0)
    assert d.sent == []
    assert d.swim.statistics().refused_ping_reqs == 2


# --------------------------------------------------------------- dead members


@pytest.mark.parametrize(
    ("limit", "cap", "retries", "removed"),
    [
        # Retry a (0, 1 ...) goes out (2^(a+1) - 1) periods after the verdict
        # while the gaps 1, 2, 4 ... stay under the cap; retry number `limit`
        # removes instead of pinging. DEAD at 1.5; a period is 0.25 s.
        # limit 5, gaps capped at 4 periods: 1, 3, 7, 11, 15; removed at 19.
        (5, 4, [1, 3, 7, 11, 15], 19),
        # The defaults, limit 10, cap 64: 1, 3, 7 ... 127 (gap 64), then +64
        # each: 191, 255, 319; removed at 383 periods (95.75 s after DEAD).
        (10, 64, [1, 3, 7, 15, 31, 63, 127, 191, 255, 319], 383),
    ],
)
def test_a_dead_member_is_retried_with_backoff_then_removed(
    limit: int, cap: int, retries: list[int], removed: int
) -> None:
    d, lone = lone_dead_peer(dead_retry_limit=limit, dead_retry_max_periods=cap)
    d.run(1.5 + (removed + 10) * PERIOD)
    assert d.times(Ping, lone, since=1.5) == [1.5 + n * PERIOD for n in retries]
    # Each retry carries the DEAD verdict, so a live member can refute it.
    for _, _, packet in d.sent[-len(retries) :]:
        assert Update(lone, WireStatus.DEAD, 1, ME) in packet.messages
    assert d.outputs(MemberRemoved) == [
        (1.5 + removed * PERIOD, MemberRemoved(Node(lone, Status.DEAD, 1)))
    ]
    assert d.swim.get(lone) is None
    assert d.swim.members() == [Node(ME, Status.ALIVE, 10)]
    # Old gossip about it is refused (a tombstone) rather than bringing it back.
    d.deliver(peer(3), Update(lone, WireStatus.ALIVE, 1, peer(3)), now=d.now + 1)
    assert d.swim.get(lone) is None


def test_a_dead_member_that_answers_a_retry_with_a_refutation_is_alive_again() -> None:
    d, lone = lone_dead_peer()
    d.run(1.75)
    [(_, _, retry)] = d.messages(Ping, since=1.5)
    d.deliver(lone, Ack(retry.seq), Update(lone, WireStatus.ALIVE, 2, lone), now=1.76)
    assert d.changes(lone)[-1] == (1.76, Status.ALIVE)
    d.acking.add(lone)
    d.run(3.0)
    # Probed every period again, by the regular round.
    assert d.times(Ping, lone, since=1.76) == [2.0, 2.25, 2.5, 2.75, 3.0]


def test_a_left_member_is_removed_after_left_removal_seconds() -> None:
    d = Driver(make())
    gone = peer(2)
    d.introduce(gone, now=0.01)
    d.acking.add(gone)
    d.deliver(gone, Update(gone, WireStatus.LEFT, 1, gone), now=0.1)
    assert d.changes(gone) == [(0.01, Status.ALIVE), (0.1, Status.LEFT)]
    d.run(30.09)
    assert d.outputs(MemberRemoved) == []
    assert d.swim.get(gone) == Node(gone, Status.LEFT, 1)
    d.run(40.0)
    assert d.outputs(MemberRemoved) == [(30.1, MemberRemoved(Node(gone, Status.LEFT, 1)))]
    assert d.swim.get(gone) is None
    # It is no longer probed once it said goodbye.
    assert d.times(Ping, gone, since=0.1) == []


# ----------------------------------------------------------------- broadcasts


def test_a_broadcast_from_the_network_is_delivered_once() -> None:
    d = Driver(make())
    d.introduce(peer(2), peer(3), peer(4), now=0.01)
    message = UserBroadcast(peer(4), 9, b"hello")
    d.deliver(peer(2), message, now=0.02)
    d.deliver(peer(3), message, now=0.03)
    d.deliver(peer(2), Ping(1), message, now=0.04)
    assert d.outputs(BroadcastReceived) == [(0.02, BroadcastReceived(peer(4), b"hello"))]
    # It is passed on: it rode on the first datagram after it arrived.
    assert d.messages(UserBroadcast)[0] == (0.04, peer(2), message)
    # Another seq from the same origin is another broadcast.
    d.deliver(peer(3), UserBroadcast(peer(4), 10, b"hello"), now=0.05)
    assert len(d.outputs(BroadcastReceived)) == 2


def test_a_broadcast_goes_to_other_members_and_not_back_to_this_one() -> None:
    d = Driver(make(gossip_interval_millis=0))
    d.introduce(peer(2), now=0.01)
    with pytest.raises(BroadcastTooLarge):
        d.swim.broadcast(b"x" * 257, now=0.02)
    d.swim.broadcast(b"x" * 256, now=0.02)  # max_broadcast_bytes exactly
    d.deliver(peer(2), Ping(1), now=0.03)
    [(at, to, message)] = d.messages(UserBroadcast)
    assert (at, to, message.origin, message.payload) == (0.03, peer(2), ME, b"x" * 256)
    # Coming back from the network, it is not delivered here.
    d.deliver(peer(2), message, now=0.04)
    assert d.outputs(BroadcastReceived) == []


def test_a_too_big_broadcast_from_the_network_is_refused_and_counted() -> None:
    d = Driver(make())
    d.introduce(peer(2), now=0.01)
    d.deliver(peer(2), UserBroadcast(peer(3), 1, b"y" * 257), Ping(3), now=0.02)
    assert d.outputs(BroadcastReceived) == []
    assert d.swim.statistics().refused_broadcasts == 1
    assert d.messages(Ack) == [(0.02, peer(2), Ack(3))]  # the rest of the packet counts
    d.run(2.0)
    assert d.messages(UserBroadcast) == []  # and it is not passed on


# ------------------------------------------------------------------- outputs


def test_piggyback_is_chosen_when_the_datagram_is_pulled() -> None:
    swim = make()
    news = Update(peer(4), WireStatus.ALIVE, 1, peer(4))
    swim.receive(CODEC.encode(peer(2), [Ping(7)]), 0.01)  # queues an ack
    swim.receive(CODEC.encode(peer(3), [news]), 0.02)  # news, before the pull
    out = swim.next_datagram()
    assert out is not None
    assert out[0] == peer(2)
    packet = CODEC.decode(out[1])
    assert isinstance(packet, Packet)
    assert packet.messages == [Ack(7), news]
    assert swim.next_datagram() is None


def test_datagrams_beyond_the_send_queue_are_dropped_and_counted() -> None:
    swim = make()
    # Each Ping(0) is 3 bytes: fill datagrams of 1400 bytes with them.
    per_packet = (1400 - CODEC.envelope_size(peer(2))) // CODEC.message_size(Ping(0))
    data = CODEC.encode(peer(2), [Ping(0)] * per_packet)
    assert len(data) <= 1400
    packets = SEND_QUEUE_SIZE // per_packet + 2
    for i in range(packets):
        swim.receive(data, 0.01 * i)
    stats = swim.statistics()
    assert stats.packets_received == packets
    assert stats.dropped_malformed == stats.dropped_oversized == 0
    assert stats.dropped_send_queue_full == packets * per_packet - SEND_QUEUE_SIZE
    pulled = list(iter(swim.next_datagram, None))
    assert len(pulled) == SEND_QUEUE_SIZE
    assert {address for address, _ in pulled} == {peer(2)}
    first = CODEC.decode(pulled[0][1])
    assert isinstance(first, Packet)
    assert first.messages == [Ack(0)]
    assert swim.statistics().packets_sent == SEND_QUEUE_SIZE


# ------------------------------------------------------------------- leaving


def test_leaving_says_goodbye_to_a_few_members_and_then_only_waits_for_the_ack() -> None:
    d = Driver(make())
    d.introduce(*PEERS, now=0.01)
    d.acking |= set(PEERS)
    d.run(1.0)
    d.acking.clear()
    d.swim.receive(CODEC.encode(peer(2), [Ping(99)]), 1.0)  # its ack is never sent
    assert d.swim.leave(1.0) is True
    d.drain(1.0)
    goodbyes = d.sent[-4:]
    # Retransmit limit: 4 x ceil(log10(6 + 1)) = 4 of the five live members,
    # each sent a ping (one seq for all) and this member's LEFT record.
    assert len({to for _, to, _ in goodbyes}) == 4
    assert {to for _, to, _ in goodbyes} <= set(PEERS)
    [seq] = {p.messages[0].seq for _, _, p in goodbyes if isinstance(p.messages[0], Ping)}
    left = Update(ME, WireStatus.LEFT, 10, ME)
    assert all(p.messages[:2] == [Ping(seq), left] for _, _, p in goodbyes)
    assert [at for at, _, _ in goodbyes] == [1.0] * 4
    assert Ack(99) not in [m for _, _, p in d.sent for m in p.messages]
    assert d.swim.me == Node(ME, Status.LEFT, 10)
    # Timers stop.
    assert d.swim.next_deadline() is None
    sent = len(d.sent)
    d.swim.tick(100.0)
    d.drain(100.0)
    # Everything else is ignored: pings, news, even news about itself.
    d.deliver(peer(2), Ping(1), Update(ME, WireStatus.SUSPECT, 10, peer(2)), now=101.0)
    d.deliver(peer(2), Ack(seq + 1), Update(peer(7), WireStatus.ALIVE, 1, peer(7)), now=101.5)
    assert len(d.sent) == sent
    assert d.swim.get(peer(7)) is None
    assert d.swim.me == Node(ME, Status.LEFT, 10)
    assert d.outputs(LeaveAcked) == []
    # The goodbye's ack is reported, from whoever sends it.
    d.deliver(goodbyes[2][1], Ack(seq), now=102.0)
    assert d.outputs(LeaveAcked) == [(102.0, LeaveAcked())]
    assert len(d.sent) == sent


def test_leaving_with_nobody_to_tell() -> None:
    d = Driver(make())
    assert d.swim.leave(0.5) is False
    d.drain(0.5)
    assert d.sent == []
    assert d.swim.next_deadline() is None
    assert d.swim.me == Node(ME, Status.LEFT, 10)


def test_after_leaving_join_and_broadcast_send_nothing() -> None:
    d = Driver(make())
    d.introduce(*PEERS, now=0.01)
    d.swim.leave(1.0)
    d.drain(1.0)
    sent = len(d.sent)
    d.swim.join([peer(9)], 1.1)
    d.swim.broadcast(b"after", 1.1)
    d.drain(1.1)
    assert d.sent[sent:] == []


# ------------------------------------------------------------------- joining


def test_seeds_are_joined_with_backoff_until_one_answers() -> None:
    answering, silent = peer(2), peer(3)
    d = Driver(make())
    d.swim.set_seeds([answering, silent, ME], 0.0)  # itself is left out
    d.run(20.0)
    attempts = d.times(Sync, answering)
    assert d.times(Sync, silent) == attempts
    assert {to for _, to, _ in d.messages(Sync)} == {answering, silent}
    assert all(
        m == Sync(True, [Update(ME, WireStatus.ALIVE, 10, ME)]) for _, _, m in d.messages(Sync)
    )
    # First at once; then each wait over (1 s = max(1, 4 periods), doubling,
    # at most 30 s) is followed by a retry at a random moment of the next wait.
    assert attempts[0] == 0.0
    assert len(attempts) >= 3  # by 1 + 2 + 4 + 4 + ... at most 14 s
    wait = 1.0
    for before, after in itertools.pairwise(attempts):
        assert before + wait <= after <= before + 2 * wait
        wait = min(2 * wait, 30.0)
    assert d.outputs(SyncAnswered) == []
    # A seed answers: it is a member now, and joining is over.
    d.acking.add(answering)
    d.deliver(answering, Sync(False, alive(answering)), now=20.0)
    assert d.outputs(SyncAnswered) == [(20.0, SyncAnswered(answering))]
    assert d.swim.get(answering) == Node(answering, Status.ALIVE, 1)
    d.run(20.0 + 15.0)  # a seed recheck comes 15 s after the follow-up at the earliest
    assert d.times(Sync, silent, since=20.0) == []
    # One follow-up exchange with a live member, after gossip had its time:
    # 4 x ceil(log10(2 + 1)) x 250 ms x (1 .. 2) = 1 .. 2 s.
    [follow_up] = d.times(Sync, answering, since=20.0)
    assert 21.0 <= follow_up <= 22.0


def test_join_sends_this_members_state_and_reports_each_answer() -> None:
    d = Driver(make(gossip_interval_millis=0))
    d.introduce(peer(2), now=0.01)  # any state received counts as an answer
    assert d.outputs(SyncAnswered) == [(0.01, SyncAnswered(peer(2)))]
    d.swim.join([peer(3), peer(3), ME, peer(4)], 0.5)  # once each, never itself
    d.drain(0.5)
    table = [Update(ME, WireStatus.ALIVE, 10, ME), Update(peer(2), WireStatus.ALIVE, 1, ME)]
    assert [(to, m) for _, to, m in d.messages(Sync)] == [
        (peer(3), Sync(True, table)),
        (peer(4), Sync(True, table)),
    ]
    d.deliver(peer(4), Sync(False, alive(peer(4))), now=0.6)
    assert d.outputs(SyncAnswered)[1:] == [(0.6, SyncAnswered(peer(4)))]
    # An answer does not ask for one back.
    assert d.messages(Sync, since=0.6) == []


# ---------------------------------------------------- a few cores, wired up


class Network:
    """Cores that deliver every datagram to its destination core 1 ms later.

    A crashed core is no longer ticked, and nothing reaches it or leaves it.
    """

    LATENCY = 0.001

    def __init__(self, cores: Iterable[Swim]) -> None:
        self.cores = {core.address: core for core in cores}
        self.now = 0.0
        self.crashed: set[str] = set()
        self.events: list[tuple[float, str, Output]] = []
        self._in_flight: list[tuple[float, int, str, bytes]] = []
        self._order = itertools.count()

    def _pull(self) -> None:
        for address, core in self.cores.items():
            # Streams are answered at once (no latency), or fail at once.
            while (request := core.next_stream()) is not None:
                answer = None
                target = self.cores.get(request.address)
                if target is not None and not {address, request.address} & self.crashed:
                    answer = target.handle_stream(request.data, self.now, address)
                core.stream_reply(request.token, answer, self.now)
        for address, core in self.cores.items():
            while (out := core.next_datagram()) is not None:
                to, data = out
                if to in self.cores and not {address, to} & self.crashed:
                    at = self.now + self.LATENCY
                    heapq.heappush(self._in_flight, (at, next(self._order), to, data))
            while (event := core.next_event()) is not None:
                self.events.append((self.now, address, event))

    def run(self, until: float) -> None:
        self._pull()
        while True:
            due = [
                deadline
                for address, core in self.cores.items()
                if address not in self.crashed and (deadline := core.next_deadline()) is not None
            ]
            if self._in_flight:
                due.append(self._in_flight[0][0])
            if not due or min(due) > until:
                break
            self.now = max(self.now, min(due))
            while self._in_flight and self._in_flight[0][0] <= self.now:
                _, _, to, data = heapq.heappop(self._in_flight)
                if to not in self.crashed:
                    self.cores[to].receive(data, self.now)
            for address, core in self.cores.items():
                if address not in self.crashed:
                    core.tick(self.now)
            self._pull()
        self.now = until

    def views(self) -> dict[str, dict[str, Status]]:
        """Who each running core holds as what."""
        return {
            address: {n.address: n.status for n in core.members()}
            for address, core in self.cores.items()
            if address not in self.crashed
        }


def test_three_cores_converge_and_a_crashed_one_is_dead_at_the_others() -> None:
    addresses = [peer(1), peer(2), peer(3)]
    cores = [make(address, seed=i) for i, address in enumerate(addresses)]
    net = Network(cores)
    for core in cores[1:]:
        core.set_seeds([addresses[0]], 0.0)
    net.run(5.0)
    everyone = dict.fromkeys(addresses, Status.ALIVE)
    assert net.views() == dict.fromkeys(addresses, everyone)
    assert all(core.statistics().local_health == 0 for core in cores)
    assert all(core.me == Node(core.address, Status.ALIVE, 10) for core in cores)
    assert [e for _, _, e in net.events if isinstance(e, StatusChanged)] == [
        e for _, _, e in net.events if isinstance(e, StatusChanged) and e.status is Status.ALIVE
    ]
    # Crash the third: n = 3 leaves too few members to confirm (k = 0), so
    # each survivor needs its own failed probe (within 2 rounds, 1 s) and
    # then the minimum suspicion of 1 s; it hears the other's verdict sooner.
    crashed_at = 5.0
    net.crashed.add(addresses[2])
    net.run(10.0)
    dead = {
        who: at
        for at, who, e in net.events
        if isinstance(e, StatusChanged) and e.status is Status.DEAD
    }
    assert set(dead) == set(addresses[:2])
    assert all(crashed_at + 1.0 < at <= crashed_at + 1.0 + 1.0 + PERIOD for at in dead.values())
    survivors = dict.fromkeys(addresses[:2], Status.ALIVE) | {addresses[2]: Status.DEAD}
    assert net.views() == dict.fromkeys(addresses[:2], survivors)
    # Nobody ever suspected a live member.
    assert not any(
        isinstance(e, StatusChanged)
        and e.node.address != addresses[2]
        and e.status is not Status.ALIVE
        for _, _, e in net.events
    )


def test_two_cores_agree_on_a_broadcast_and_a_leave() -> None:
    a, b = make(peer(1), seed=1), make(peer(2), seed=2)
    net = Network([a, b])
    b.join([peer(1)], 0.0)
    net.run(1.0)
    a.broadcast(b"news", 1.0)
    net.run(2.0)
    received = [(who, e) for _, who, e in net.events if isinstance(e, BroadcastReceived)]
    assert received == [(peer(2), BroadcastReceived(peer(1), b"news"))]
    assert a.leave(2.0) is True
    net.run(3.0)
    assert [who for _, who, e in net.events if isinstance(e, LeaveAcked)] == [peer(1)]
    assert b.get(peer(1)) == Node(peer(1), Status.LEFT, 10)


# ---------------------------------------------------------------- known bugs

MAX_INCARNATION = 2**63 - 1  # the largest the wire accepts (wire.Incarnation)


def test_refuting_a_forged_accusation_at_the_largest_incarnation_stays_decodable() -> None:
    d = Driver(make())  # the Driver asserts that every datagram it pulls decodes
    d.introduce(peer(2), now=0.01)
    d.deliver(peer(2), Ping(4), Update(ME, WireStatus.SUSPECT, MAX_INCARNATION, peer(9)), now=0.02)
    assert d.swim.me.status is Status.ALIVE
    assert d.messages(Ack) == [(0.02, peer(2), Ack(4))]


def table_of(size: int) -> Driver:
    """A core (Lifeguard off, gossip off) that knows ``size`` peers 10.0.x.77:7946
    besides peer(2), which is DEAD."""
    d = Driver(make(lifeguard=False, gossip_interval_millis=0))
    others = [f"10.0.{i}.77:7946" for i in range(size)]
    for i in range(0, size, 8):
        d.deliver(others[0], Sync(False, alive(*others[i : i + 8])), now=0.01)
    d.deliver(others[0], Update(peer(2), WireStatus.DEAD, 1, others[0]), now=0.02)
    assert len(d.swim.members()) == size + 2
    return d


def test_a_state_exchange_with_a_member_held_dead_fits_in_a_datagram() -> None:
    # 38 peers + peer(2) + itself: the table just fits in one 1400-byte Sync.
    d = table_of(38)
    d.swim.join([peer(2)], 0.03)
    # The stream the join tries first fails: the state goes over UDP.
    while (request := d.swim.next_stream()) is not None:
        d.swim.stream_reply(request.token, None, 0.03)
    sizes = []
    while (out := d.swim.next_datagram()) is not None:
        sizes.append(len(out[1]))
    assert sizes
    assert max(sizes) <= 1400, sizes  # got [1411]


# ------------------------------------------------- three cores, any inputs

CORES = [peer(1), peer(2), peer(3)]
OUTSIDERS = [peer(9), "[fd00::1]:7946"]
GARBAGE = [
    "",
    "nonsense",
    "10.0.0.1",
    "10.0.0.1:0",
    "10.0.0.01:7946",
    "[::1]",
    "[0:0::1]:7946",
    "host:80",
    "10.0.0.1:99999",
    "1" * 64,
    "x" * 65,  # over the wire's 64: the whole packet is malformed
]
MAX_MEMBERS = 8
# Counters that only ever grow (local_health and probe_timeout move both ways).
COUNTERS = [
    name
    for name in MemberStatistics.__struct_fields__
    if name not in ("local_health", "probe_timeout")
]

valid_addresses = st.sampled_from(CORES + OUTSIDERS)
addresses = st.one_of(
    st.sampled_from(CORES), valid_addresses, st.sampled_from(GARBAGE), st.text(max_size=70)
)
incarnations = st.one_of(
    st.integers(0, 30), st.just(MAX_INCARNATION), st.integers(0, MAX_INCARNATION)
)
seqs = st.one_of(st.integers(0, 100), st.integers(0, 2**63 - 1))
statuses = st.sampled_from(list(WireStatus))
updates = st.one_of(
    st.builds(Update, addresses, statuses, incarnations, addresses),
    # News about the cores themselves, from valid sources: refutations.
    st.builds(Update, st.sampled_from(CORES), statuses, incarnations, valid_addresses),
)
messages = wire_messages(
    addresses, seqs, update=updates, payload_size=300, sync_size=6, announce=True
)
cores = st.sampled_from(CORES)
delays = st.one_of(st.sampled_from([0.0, 0.001, 0.1, PERIOD]), st.floats(0.0, 3.0))
picks = st.integers(0, 2**16)


class ThreeCores(RuleBasedStateMachine):
    """Three cores on one network the test runs by hand: datagrams are
    delivered in any order or dropped, and anyone can send them anything."""

    def __init__(self) -> None:
        super().__init__()
        self.cores = {
            address: make(address, seed=i, max_members=MAX_MEMBERS)
            for i, address in enumerate(CORES)
        }
        self.now = 0.0
        # (from, to, data) of the datagrams sent and not yet delivered or dropped.
        self.pending: list[tuple[str, str, bytes]] = []
        self.incarnations = {address: 10 for address in CORES}
        self.counters = {address: self.counts(address) for address in CORES}

    def counts(self, address: str) -> list[int]:
        stats = self.cores[address].statistics()
        return [getattr(stats, name) for name in COUNTERS]

    def pull(self) -> None:
        for address, core in self.cores.items():
            while (request := core.next_stream()) is not None:
                core.stream_reply(request.token, None, self.now)  # no TCP here
            while (out := core.next_datagram()) is not None:
                to, data = out
                assert len(data) <= 1400
                # Past the wire's largest incarnation nothing it sends decodes:
                # the known bug of the xfail test above, left out here.
                if core.me.incarnation <= MAX_INCARNATION:
                    assert isinstance(CODEC.decode(data), Packet)
                self.pending.append((address, to, data))
            while core.next_event() is not None:
                pass
        del self.pending[:-100]

    def take(self, pick: int) -> tuple[str, str, bytes]:
        return self.pending.pop(pick % len(self.pending))

    def receive(self, to: str, data: bytes) -> None:
        if to in self.cores:
            self.cores[to].receive(data, self.now)
        self.pull()

    @initialize()
    def start(self) -> None:
        for core in self.cores.values():
            core.tick(0.0)
        self.pull()

    @precondition(lambda self: self.pending)
    @rule(pick=picks)
    def deliver(self, pick: int) -> None:
        _, to, data = self.take(pick)
        self.receive(to, data)

    @precondition(lambda self: self.pending)
    @rule(pick=picks)
    def drop(self, pick: int) -> None:
        self.take(pick)

    @rule()
    def deliver_everything(self) -> None:
        batch, self.pending = self.pending, []
        for _, to, data in batch:
            self.receive(to, data)

    @precondition(lambda self: self.pending)
    @rule(pick=picks)
    def answer_a_ping_for_an_outsider(self, pick: int) -> None:
        sender, to, data = self.take(pick)
        packet = CODEC.decode(data)
        if isinstance(packet, Packet):
            acks: list[Message] = [Ack(m.seq) for m in packet.messages if isinstance(m, Ping)]
            self.receive(sender, CODEC.encode(to, acks))

    @rule(core=cores, delay=delays)
    def tick(self, core: str, delay: float) -> None:
        self.now += delay
        self.cores[core].tick(self.now)
        self.pull()

    @rule(delay=delays)
    def tick_everyone(self, delay: float) -> None:
        self.now += delay
        for core in self.cores.values():
            core.tick(self.now)
        self.pull()

    @rule(to=cores, sender=addresses, content=st.lists(messages, max_size=4))
    def inject(self, to: str, sender: str, content: list[Message]) -> None:
        self.receive(to, CODEC.encode(sender, content))

    @rule(to=cores, sender=valid_addresses, status=statuses, incarnation=incarnations)
    def accuse(self, to: str, sender: str, status: WireStatus, incarnation: int) -> None:
        self.receive(to, CODEC.encode(sender, [Update(to, status, incarnation, sender)]))

    @rule(
        to=cores,
        pick=picks,
        flips=st.lists(st.integers(0, 2**16), max_size=4),
        keep=st.integers(0, 1500),
    )
    def inject_corrupted(self, to: str, pick: int, flips: list[int], keep: int) -> None:
        if self.pending:
            _, _, original = self.pending[pick % len(self.pending)]
        else:
            original = CODEC.encode(CORES[pick % 3], [Ping(pick), *alive(CORES[0])])
        data = bytearray(original[:keep])
        for flip in flips:
            if data:
                data[(flip // 8) % len(data)] ^= 1 << (flip % 8)
        self.receive(to, bytes(data))

    @rule(to=cores, data=st.binary(max_size=1500))
    def inject_random_bytes(self, to: str, data: bytes) -> None:
        self.receive(to, data)

    @rule(core=cores, payload=st.binary(max_size=300))
    def broadcast(self, core: str, payload: bytes) -> None:
        if len(payload) > 256:
            with pytest.raises(BroadcastTooLarge):
                self.cores[core].broadcast(payload, self.now)
        else:
            self.cores[core].broadcast(payload, self.now)
        self.pull()

    @rule(core=cores, others=st.lists(st.sampled_from(CORES + OUTSIDERS), max_size=4))
    def join(self, core: str, others: list[str]) -> None:
        self.cores[core].join(others, self.now)
        self.pull()

    @rule(core=cores, seeds=st.lists(st.sampled_from(CORES + OUTSIDERS), max_size=3))
    def set_seeds(self, core: str, seeds: list[str]) -> None:
        self.cores[core].set_seeds(seeds, self.now)
        self.pull()

    @invariant()
    def each_core_is_alive_at_an_incarnation_that_never_decreases(self) -> None:
        for address, core in self.cores.items():
            assert core.me.address == address
            assert core.me.status is Status.ALIVE
            assert core.me.incarnation >= self.incarnations[address]
            self.incarnations[address] = core.me.incarnation
            assert core.get(address) == core.me

    @invariant()
    def the_member_table_is_bounded(self) -> None:
        for core in self.cores.values():
            assert len(core.members()) <= MAX_MEMBERS
            assert all(n.status is Status.ALIVE for n in core.healthy_members())

    @invariant()
    def counters_never_decrease(self) -> None:
        for address in CORES:
            now = self.counts(address)
            assert all(a <= b for a, b in zip(self.counters[address], now, strict=True))
            self.counters[address] = now


ThreeCores.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestThreeCores = ThreeCores.TestCase
