"""The cluster's keys at work: every datagram sealed, clusters kept apart, and
keys rotated and encryption turned on in a running cluster with no false event.

Rotation and rolling enablement run on the trio-free Simulation, on
SimNetwork under a MockClock, and (rotation) on real sockets; the command
line's ``--key-file`` runs as real processes.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import random
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from test_cli import running_member, see_each_other_alive
from test_udp import fast

from trio_swim import Config, Member, Status, StatusChanged, open_member
from trio_swim.events import MemberEvent
from trio_swim.protocol import Swim
from trio_swim.security import SEALED_MARKER, Keyring, associated_data
from trio_swim.testing import SimMember, SimNetwork, Simulation, converged
from trio_swim.wire import PROTOCOL_VERSION, Ack, Announce, Codec, Packet, Ping

from simcluster import Recorder, wait_until
from simcluster import converged as converged_now

OLD = bytes(range(32))
NEW = bytes(range(32, 64))
OTHER = bytes(range(64, 80))
CLUSTER = Config().cluster_name
CODEC = Codec(CLUSTER, Config().max_packet_bytes)
AD = associated_data(PROTOCOL_VERSION, CLUSTER)
PERIOD = Config().period


def address(port: int) -> str:
    return f"127.0.0.1:{port}"


def core(port: int, keys: list[bytes], seed: int, **settings: Any) -> Swim:
    cfg = Config(listen_port=port, secret_keys=keys, **settings)
    return Swim(cfg, address(port), rng=random.Random(seed), incarnation=1, now=0.0)


class Wire:
    """Cores on a lossless network (1 ms one way) that keeps every datagram."""

    def __init__(self, cores: list[Swim]) -> None:
        self.cores = {c.address: c for c in cores}
        self.now = 0.0
        self.datagrams: list[tuple[str, str, bytes]] = []
        """(from, to, data) of every datagram pulled, in order."""
        self.events: list[tuple[float, str, object]] = []
        self._in_flight: list[tuple[float, int, str, str, bytes]] = []
        self._order = itertools.count()

    def _pull(self) -> None:
        for sender, swim in self.cores.items():
            # Streams are answered at once; both frames are kept with the datagrams.
            while (request := swim.next_stream()) is not None:
                self.datagrams.append((sender, request.address, request.data))
                answer = None
                target = self.cores.get(request.address)
                if target is not None:
                    answer = target.handle_stream(request.data, self.now, sender)
                    if answer is not None:
                        self.datagrams.append((request.address, sender, answer))
                swim.stream_reply(request.token, answer, self.now)
        for sender, swim in self.cores.items():
            while (out := swim.next_datagram()) is not None:
                to, data = out
                self.datagrams.append((sender, to, data))
                if to in self.cores:
                    entry = (self.now + 0.001, next(self._order), sender, to, data)
                    heapq.heappush(self._in_flight, entry)
            while (event := swim.next_event()) is not None:
                self.events.append((self.now, sender, event))

    def run(self, until: float) -> None:
        self._pull()
        while True:
            due = [d for c in self.cores.values() if (d := c.next_deadline()) is not None]
            if self._in_flight:
                due.append(self._in_flight[0][0])
            if not due or min(due) > until:
                break
            self.now = max(self.now, min(due))
            while self._in_flight and self._in_flight[0][0] <= self.now:
                _, _, sender, to, data = heapq.heappop(self._in_flight)
                self.cores[to].receive(data, self.now, sender)
            for swim in self.cores.values():
                swim.tick(self.now)
            self._pull()
        self.now = until


def knows(swim: Swim, other: str) -> bool:
    return swim.get(other) is not None


# ------------------------------------------------------------ sealing happens


def test_every_datagram_of_a_keyed_cluster_is_sealed_and_opens_with_the_key() -> None:
    a, b, c = (core(port, [OLD], seed=port) for port in (1, 2, 3))
    wire = Wire([a, b, c])
    b.set_seeds([a.address], 0.0)
    c.set_seeds([a.address], 0.0)
    wire.run(3.0)
    a.broadcast(b"a secret payload", wire.now)
    wire.run(6.0)
    assert c.leave(wire.now)
    wire.run(7.0)
    assert len(wire.datagrams) > 100
    ring = Keyring([OLD])
    kinds: set[str] = set()
    for _, _, data in [*wire.datagrams, ("", "", a.announcement())]:
        assert data[0] == SEALED_MARKER
        assert b"a secret payload" not in data
        assert CLUSTER.encode() not in data
        plain = ring.open(data, AD)
        assert plain is not None
        packet = CODEC.decode(plain)
        assert isinstance(packet, Packet)
        kinds |= {type(m).__name__ for m in packet.messages}
    assert {"Ping", "Ack", "Sync", "Update", "UserBroadcast", "Announce"} <= kinds
    assert all(swim.statistics().dropped_unauthenticated == 0 for swim in (a, b, c))
    assert all(knows(x, y.address) for x in (a, b) for y in (a, b, c))


def test_keyed_and_unkeyed_members_cannot_read_each_other() -> None:
    """Each tries to join the other for 30 s: every datagram either receives
    is dropped unauthenticated (sealed where it holds no key, or plaintext
    where keys are required), and neither learns of the other."""
    keyed, unkeyed = core(1, [OLD], seed=1), core(2, [], seed=2)
    wire = Wire([keyed, unkeyed])
    keyed.set_seeds([unkeyed.address], 0.0)
    unkeyed.set_seeds([keyed.address], 0.0)
    wire.run(30.0)
    for swim, other in ((keyed, unkeyed), (unkeyed, keyed)):
        assert not knows(swim, other.address)
        stats = swim.statistics()
        assert stats.dropped_unauthenticated == stats.packets_received > 0
        assert stats.dropped_malformed == stats.dropped_spoofed == 0


def clusters_of(sim: Simulation, key: bytes, ports: range, seeds: list[str]) -> list[SimMember]:
    return [
        sim.add_member(Config(listen_port=port, initial_hosts=seeds, secret_keys=[key]))
        for port in ports
    ]


def test_two_clusters_with_different_keys_never_merge() -> None:
    """Same cluster name, both sides seeded with members of both."""
    sim = Simulation(seed=2)
    seeds = [address(1), address(11)]
    blue = clusters_of(sim, OLD, range(1, 5), seeds)
    green = clusters_of(sim, OTHER, range(11, 15), seeds)
    sim.run_for(5)
    sim.join(blue[1].address, [green[2].address])
    sim.join(green[1].address, [blue[2].address])
    sim.run_for(60)
    assert converged(blue)
    assert converged(green)
    for side in (blue, green):
        for member in side:
            assert {n.address for n in member.members()} == {m.address for m in side}
        assert sum(m.statistics().dropped_unauthenticated for m in side) > 0


# --------------------------------------------------------------- rotation


class Watched:
    """A Simulation of ``size`` members with ``settings`` (all seeded with
    the first two), converged, with every event recorded from then on."""

    def __init__(self, size: int, **settings: Any) -> None:
        self.sim = Simulation(seed=3)
        self.settings = settings
        self.events: list[tuple[float, str, MemberEvent]] = []
        self.recording = False
        self.members = [self.add(port, self.config(port)) for port in range(1, size + 1)]
        assert self.sim.run_until(lambda: converged(self.members), timeout=30)
        self.sim.run_for(5)
        self.recording = True

    def config(self, port: int, **settings: Any) -> Config:
        return Config(
            listen_port=port,
            initial_hosts=[address(1), address(2)],
            **(self.settings | settings),
        )

    def add(self, port: int, cfg: Config, incarnation: int = 0) -> SimMember:
        who = address(port)

        def record(_: float, event: MemberEvent) -> None:
            if self.recording:
                self.events.append((self.sim.now, who, event))

        return self.sim.add_member(cfg, incarnation=incarnation, on_event=record)

    def false_events(self) -> list[tuple[float, str, MemberEvent]]:
        return [
            (at, who, e)
            for at, who, e in self.events
            if not (isinstance(e, StatusChanged) and e.status is Status.ALIVE)
        ]

    def unauthenticated(self) -> int:
        return sum(m.statistics().dropped_unauthenticated for m in self.sim.running())


ROUNDS: list[tuple[str, Callable[[Keyring], None]]] = [
    ("install", lambda ring: ring.install(NEW)),
    ("use", lambda ring: ring.use(NEW)),
    ("remove", lambda ring: ring.remove(OLD)),
]


def ring_of(member: SimMember | Member) -> Keyring:
    ring = member.swim.keyring if isinstance(member, SimMember) else member.keyring
    assert ring is not None
    return ring


def test_live_rotation_on_the_simulation_gives_no_false_event_at_any_step() -> None:
    w = Watched(10, secret_keys=[OLD])
    for name, step in ROUNDS:
        for member in w.members:
            step(ring_of(member))
            w.sim.run_for(1.0)
            assert w.false_events() == [], (name, member)
            assert w.unauthenticated() == 0, (name, member)
            assert converged(w.members)
    assert all(ring_of(m).keys == [NEW] for m in w.members)
    # The old key is out for good: a member holding only it cannot join; one
    # holding only the new key can.
    stale = w.add(40, w.config(40, secret_keys=[OLD]))
    fresh = w.add(41, w.config(41, secret_keys=[NEW]))
    w.sim.run_for(10)
    assert stale.members() == [stale.node]
    assert converged([*w.members, fresh])
    assert w.unauthenticated() > 0


@pytest.mark.parametrize("mistake", ["use before installed everywhere", "remove too early"])
def test_a_rotation_out_of_order_loses_datagrams(mistake: str) -> None:
    """The check above has teeth: one member a step ahead of the others."""
    w = Watched(10, secret_keys=[OLD])
    early = w.members[0]
    if mistake == "use before installed everywhere":
        ring_of(early).install(NEW)
        ring_of(early).use(NEW)  # the others cannot open what it sends
    else:
        for member in w.members:
            ring_of(member).install(NEW)
        w.sim.run_for(1.0)
        ring_of(early).use(NEW)
        ring_of(early).remove(OLD)  # it cannot open what the others send
    w.sim.run_for(10.0)
    dropped_early = early.statistics().dropped_unauthenticated
    dropped_others = w.unauthenticated() - dropped_early
    if mistake == "use before installed everywhere":
        assert (dropped_early, dropped_others > 0) == (0, True)
    else:
        assert (dropped_early > 0, dropped_others) == (True, 0)
    suspicions = [e for _, _, e in w.false_events() if isinstance(e, StatusChanged)]
    assert any(e.status is Status.SUSPECT for e in suspicions)


async def rotate(members: list[Member], pause: float, recorder: Recorder) -> None:
    """Rotate OLD to NEW on ``members``, one at a time, ``pause`` seconds
    apart, checking after each step."""
    for name, step in ROUNDS:
        for member in members:
            step(ring_of(member))
            await trio.sleep(pause)
            false = [
                (at, who, e)
                for at, who, e in recorder.events
                if not (isinstance(e, StatusChanged) and e.status is Status.ALIVE)
            ]
            assert false == [], (name, member.address)
            assert [m.statistics().dropped_unauthenticated for m in members] == [0] * len(
                members
            ), (name, member.address)
            assert converged_now(members)()


async def test_live_rotation_on_sim_network_gives_no_false_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=4)
    async with AsyncExitStack() as stack:
        members = []
        for port in range(1, 11):
            cfg = Config(listen_port=port, initial_hosts=[address(1)], secret_keys=[OLD])
            members.append(await stack.enter_async_context(net.open_member(cfg)))
        await wait_until(converged_now(members), within=30)
        await trio.sleep(5)
        async with trio.open_nursery() as nursery:
            recorder = Recorder()
            await recorder.watch(nursery, members)
            await rotate(members, 1.0, recorder)
            nursery.cancel_scope.cancel()
        assert all(ring_of(m).keys == [NEW] for m in members)


async def test_live_rotation_on_real_sockets_gives_no_false_event() -> None:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_member(fast(listen_port=0, secret_keys=[OLD])))
        members = [first]
        for _ in range(4):
            cfg = fast(listen_port=0, initial_hosts=[first.address], secret_keys=[OLD])
            members.append(await stack.enter_async_context(open_member(cfg)))
        await wait_until(converged_now(members), within=10)
        async with trio.open_nursery() as nursery:
            recorder = Recorder()
            await recorder.watch(nursery, members)
            await rotate(members, 0.15, recorder)
            nursery.cancel_scope.cancel()
        assert all(ring_of(m).keys == [NEW] for m in members)


# ----------------------------------------------------- rolling enablement

STEPS: list[dict[str, Any]] = [
    {"secret_keys": [OLD], "accept_plaintext": True, "send_plaintext": True},
    {"secret_keys": [OLD], "accept_plaintext": True},
    {"secret_keys": [OLD]},
]


def test_turning_encryption_on_member_by_member_gives_no_false_event() -> None:
    """A plaintext cluster of 10 is restarted member by member into each of
    the three steps (accept and send plaintext; accept it, seal; seal only).
    A restart shows as LEFT then ALIVE for the member restarted, and as
    ALIVE for every other at the new core; nothing else may happen."""
    w = Watched(10)
    unauthenticated = 0
    for settings in STEPS:
        for i, old in enumerate(list(w.members)):
            unauthenticated += old.statistics().dropped_unauthenticated
            mark = len(w.events)
            port = 1 + i
            w.sim.close(old.address)
            new = w.add(port, w.config(port, **settings), incarnation=old.node.incarnation + 1)
            w.members[i] = new
            assert w.sim.run_until(lambda: converged(w.members), timeout=10), settings
            w.sim.run_for(2.0)
            others = {m.address for m in w.members} - {new.address}
            about: dict[str, list[tuple[Status | None, Status]]] = {}
            at_new: set[tuple[str, Status | None, Status]] = set()
            for _, who, e in w.events[mark:]:
                assert isinstance(e, StatusChanged), e
                if who == new.address:
                    at_new.add((e.node.address, e.previous, e.status))
                else:
                    assert e.node.address == new.address, e
                    about.setdefault(who, []).append((e.previous, e.status))
            assert at_new == {(other, None, Status.ALIVE) for other in others}
            restart = [(Status.ALIVE, Status.LEFT), (Status.LEFT, Status.ALIVE)]
            assert all(seen == restart for seen in about.values()), about
            assert about, "nobody saw the restart"
            assert w.unauthenticated() == 0, settings
    assert unauthenticated == 0
    assert all(m.swim.config.secret_keys == [OLD] for m in w.members)
    assert all(not m.swim.config.accept_plaintext for m in w.members)
    # Now plaintext is refused: a member without the key cannot join.
    outsider = w.add(40, w.config(40))
    w.sim.run_for(10)
    assert outsider.members() == [outsider.node]
    assert w.unauthenticated() > 0


# --------------------------------------------------------- the command line


async def test_run_with_a_key_file_joins_and_ignores_unsealed_pings(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    path.write_text(f"# test key\n{base64.b64encode(OLD).decode()}\n")
    async with (
        running_member("--key-file", str(path)) as a,
        running_member("--key-file", str(path), "--join", a.address) as b,
    ):
        await see_each_other_alive([a, b])
        host, port = a.address.rsplit(":", 1)
        target = (host, int(port))
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as raw:
            await raw.bind(("127.0.0.1", 0))
            me = f"127.0.0.1:{raw.getsockname()[1]}"
            await raw.sendto(CODEC.encode(me, [Ping(7)]), target)
            await raw.sendto(CODEC.encode(me, [Announce()]), target)
            with trio.move_on_after(1.0):
                data, _ = await raw.recvfrom(65536)
                raise AssertionError(f"an unsealed ping was answered: {data!r}")
            # The same ping sealed with the key is answered (the check has teeth).
            ring = Keyring([OLD])
            await raw.sendto(ring.seal(CODEC.encode(me, [Ping(8)]), AD), target)
            with trio.fail_after(10):
                data, _ = await raw.recvfrom(65536)
        plain = ring.open(data, AD)
        assert plain is not None
        packet = CODEC.decode(plain)
        assert isinstance(packet, Packet)
        assert Ack(8) in packet.messages
