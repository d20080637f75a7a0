"""The trio-free Simulation of many protocol cores, and the LinkModel it shares
with SimNetwork."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from trio_swim import BroadcastReceived, Config, MemberRemoved, Status, StatusChanged
from trio_swim.events import MemberEvent
from trio_swim.testing import (
    LinkModel,
    SimMember,
    Simulation,
    converged,
    everyone_sees,
    status_seen,
)

PERIOD = Config().period


def address(port: int) -> str:
    return f"127.0.0.1:{port}"


class Log:
    """Every event of every member, with its time: (time, member, event)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, MemberEvent]] = []

    def add(self, sim: Simulation, cfg: Config, **kwargs: int) -> SimMember:
        who = address(cfg.listen_port)
        return sim.add_member(cfg, on_event=lambda t, e: self.events.append((t, who, e)), **kwargs)

    def statuses(self, target: str) -> list[Status]:
        return [
            e.status
            for _, _, e in self.events
            if isinstance(e, StatusChanged) and e.node.address == target
        ]


def cluster(sim: Simulation, size: int, log: Log | None = None) -> list[SimMember]:
    """``size`` members on ports 1.., all joining the first."""
    members = []
    for i in range(size):
        cfg = Config(listen_port=1 + i, initial_hosts=[address(1)] if i else [])
        members.append(log.add(sim, cfg) if log is not None else sim.add_member(cfg))
    return members


def test_fifty_members_converge() -> None:
    sim = Simulation(seed=1, jitter=0.001)
    members = cluster(sim, 50)
    assert sim.run_until(lambda: converged(members), timeout=30, step=PERIOD / 10)
    assert sim.now <= 4 * math.log2(50) * PERIOD
    assert all(len(m.members()) == 50 for m in members)
    assert sim.dropped == 0


def test_a_crash_is_dead_at_every_survivor() -> None:
    sim = Simulation(seed=2, jitter=0.001)
    log = Log()
    members = cluster(sim, 30, log)
    assert sim.run_until(lambda: converged(members), timeout=30, step=PERIOD / 10)
    victim = members[17]
    sim.crash(victim.address)
    crashed_at = sim.now
    assert sim.run_until(
        lambda: everyone_sees(members, victim.address, Status.DEAD), timeout=60, step=0.05
    )
    assert sim.now - crashed_at < 12.0
    reporters = {
        who
        for _, who, e in log.events
        if isinstance(e, StatusChanged)
        and e.node.address == victim.address
        and e.status is Status.DEAD
    }
    assert reporters == {m.address for m in members} - {victim.address}


def test_a_crashed_member_is_no_longer_ticked() -> None:
    sim = Simulation(seed=3)
    members = cluster(sim, 5)
    assert sim.run_until(lambda: converged(members), timeout=10)
    victim = members[2]
    sim.crash(victim.address)
    assert victim.crashed
    before = victim.statistics()
    deadline = victim.swim.next_deadline()
    assert deadline is not None
    sim.run_for(10)
    assert victim.statistics() == before  # nothing sent, nothing received
    assert victim.swim.next_deadline() == deadline < sim.now  # overdue, never fired
    assert victim not in sim.running()
    assert len(sim.running()) == 4


def test_a_paused_member_refutes_and_is_never_dead() -> None:
    sim = Simulation(seed=4, jitter=0.001)
    log = Log()
    members = cluster(sim, 50, log)
    assert sim.run_until(lambda: converged(members), timeout=30, step=PERIOD / 10)
    victim = members[3]
    before = victim.node.incarnation
    # Long enough for several probes of it to fail (so it is surely suspected),
    # shorter than the shortest suspicion timeout (4 x log10(50) periods = 1.7 s).
    sim.pause(victim.address, 1.5)
    assert sim.run_until(
        lambda: any(status_seen(m, victim.address) is Status.SUSPECT for m in members),
        timeout=1.5,
        step=0.01,
    )
    sim.run_for(10)
    assert victim.node.incarnation > before
    assert everyone_sees(members, victim.address, Status.ALIVE)
    verdicts = log.statuses(victim.address)
    assert Status.SUSPECT in verdicts
    assert Status.DEAD not in verdicts


def test_partition_then_heal_is_one_cluster_again() -> None:
    sim = Simulation(seed=6, jitter=0.001)
    members = cluster(sim, 10)
    assert sim.run_until(lambda: converged(members), timeout=10)
    left, right = members[:5], members[5:]
    sim.partition([m.address for m in left], [m.address for m in right])

    def split() -> bool:
        return all(
            status_seen(a, b.address) is Status.DEAD and status_seen(b, a.address) is Status.DEAD
            for a in left
            for b in right
        )

    assert sim.run_until(split, timeout=60, step=0.05)
    assert converged(left)
    assert converged(right)
    sim.heal()
    assert sim.run_until(lambda: converged(members), timeout=120, step=0.05)


def test_a_broadcast_reaches_every_member_exactly_once_under_loss() -> None:
    sim = Simulation(seed=7, loss=0.05, jitter=0.001)
    log = Log()
    members = cluster(sim, 30, log)
    assert sim.run_until(lambda: converged(members), timeout=30, step=PERIOD / 10)
    sim.broadcast(members[4].address, b"hello")
    sim.run_for(20)
    received = [(who, e) for _, who, e in log.events if isinstance(e, BroadcastReceived)]
    assert sorted(who for who, _ in received) == sorted(
        m.address for m in members if m is not members[4]
    )
    assert {(e.origin, e.payload) for _, e in received} == {(members[4].address, b"hello")}
    assert sim.dropped > 0


def test_a_closed_member_is_seen_as_left() -> None:
    sim = Simulation(seed=8)
    members = cluster(sim, 6)
    assert sim.run_until(lambda: converged(members), timeout=10)
    leaver = members[2]
    sim.close(leaver.address)
    assert leaver.closed
    assert leaver.node.status is Status.LEFT
    others = [m for m in members if m is not leaver]
    assert sim.run_until(lambda: everyone_sees(others, leaver.address, Status.LEFT), timeout=5)
    with pytest.raises(KeyError):
        sim.member(leaver.address)
    # The address is free again: a new member can take it.
    again = sim.add_member(Config(listen_port=3, initial_hosts=[address(1)]), incarnation=5)
    assert sim.run_until(lambda: everyone_sees(others, again.address, Status.ALIVE), timeout=10)


def replay(seed: int) -> list[object]:
    """A run with loss, a crash, a broadcast and a departure; every event recorded."""
    sim = Simulation(seed=seed, loss=0.05, jitter=0.001)
    log = Log()
    members = cluster(sim, 12, log)
    sim.run_for(5)
    sim.crash(members[7].address)
    sim.run_for(15)
    sim.broadcast(members[0].address, b"x")
    sim.run_for(3)
    sim.close(members[1].address)
    sim.run_for(40)  # long enough for MemberRemoved of the LEFT member
    assert any(isinstance(e, MemberRemoved) for _, _, e in log.events)
    return [[(t, who, repr(e)) for t, who, e in log.events], sim.delivered, sim.dropped, sim.now]


def test_the_same_seed_gives_the_same_run() -> None:
    first = replay(5)
    assert replay(5) == first
    assert replay(5) == first
    assert replay(6) != first


def test_a_run_depends_on_its_seed_alone() -> None:
    # Another process, with another string-hash seed: still the same run.
    code = "import sys; sys.path.insert(0, sys.argv[1]); import test_simulation; "
    code += "print(test_simulation.replay(5))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == str(replay(5))


def test_members_are_bound_like_simnetwork() -> None:
    sim = Simulation()
    a = sim.add_member(Config(listen_port=0))
    b = sim.add_member(Config(listen_port=0))
    assert (a.address, b.address) == ("127.0.0.1:40000", "127.0.0.1:40001")
    six = sim.add_member(Config(listen_ip="::1", listen_port=7))
    assert six.address == "[::1]:7"
    with pytest.raises(OSError, match="in use") as info:
        sim.add_member(Config(listen_port=40000))
    assert info.value.errno == 98
    assert sim.member("127.0.0.1:40000") is a
    # "localhost" seeds stand for 127.0.0.1.
    c = sim.add_member(Config(listen_port=9, initial_hosts=["localhost:40000"]))
    assert sim.run_until(lambda: status_seen(a, c.address) is Status.ALIVE, timeout=5)
    # A crashed member's address can be taken by a restart.
    sim.crash(c.address)
    restarted = sim.add_member(Config(listen_port=9, initial_hosts=["127.0.0.1:40000"]))
    assert sim.member(c.address) is restarted


def test_fault_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="loss"):
        Simulation(loss=1.5)
    with pytest.raises(ValueError, match="latency"):
        Simulation(latency=-1)
    sim = Simulation()
    a = sim.add_member(Config(listen_port=1))
    with pytest.raises(ValueError, match="loss"):
        sim.set_loss(-0.1)
    with pytest.raises(ValueError, match="latency"):
        sim.set_latency(0.001, jitter=-1)
    with pytest.raises(ValueError, match="delay"):
        sim.set_delay(a.address, inbound=-1)
    with pytest.raises(ValueError, match="delay"):
        sim.set_delay(a.address, outbound=math.nan)
    with pytest.raises(KeyError):
        sim.set_delay(address(2), inbound=1)
    with pytest.raises(KeyError):
        sim.crash(address(2))
    with pytest.raises(ValueError, match="both sides"):
        sim.partition([a.address], [a.address])
    with pytest.raises(ValueError, match="seconds"):
        sim.run_for(-1)
    sim.set_loss(1.0)
    sim.set_latency(0.5, jitter=0.25)
    assert (sim.link_model.loss, sim.link_model.latency, sim.link_model.jitter) == (1.0, 0.5, 0.25)


def test_set_delay_slows_one_member() -> None:
    sim = Simulation(seed=9, latency=0.001)
    a = sim.add_member(Config(listen_port=1))
    b = sim.add_member(Config(listen_port=2, initial_hosts=[address(1)]))
    sim.set_delay(b.address, inbound=0.3)
    seen_at: list[float] = []
    assert status_seen(a, b.address) is None
    sim.run_until(lambda: status_seen(b, a.address) is Status.ALIVE, timeout=5)
    seen_at.append(sim.now)
    # b's join reached a after 1 ms; a's answer reached b 300 ms later.
    assert seen_at == [pytest.approx(0.302)]


def test_run_until_returns_false_at_the_timeout() -> None:
    sim = Simulation()
    sim.add_member(Config(listen_port=1))
    calls: list[float] = []

    def never() -> bool:
        calls.append(sim.now)
        return False

    assert not sim.run_until(never, timeout=2.0)
    assert sim.now == 2.0
    assert calls[0] == 0.0
    assert calls == sorted(calls)
    calls.clear()
    assert not sim.run_until(never, timeout=1.0, step=0.25)
    assert calls == [2.0, 2.25, 2.5, 2.75, 3.0]


def test_link_model_draws_loss_then_jitter() -> None:
    model = LinkModel(seed=3, loss=0.5, latency=0.01, jitter=0.02)
    a = model.open(model.bind("127.0.0.1", 1))
    b = model.open(model.bind("127.0.0.1", 2))
    assert (a.opened, b.opened) == (0, 1)
    twin = random.Random("3/net/127.0.0.1:1/0")
    results = [model.route(a, b.address, 100, 1.0) for _ in range(50)]
    for result in results:
        if twin.random() < 0.5:
            assert result is None
        else:
            assert result == 1.0 + 0.01 + 0.02 * twin.random()
    assert model.delivered + model.dropped == 50
    assert 0 < model.delivered < 50
    # Unknown target, oversized, crashed and cut links drop without a draw.
    state = a.rng.getstate()
    assert model.route(a, "127.0.0.1:3", 10, 1.0) is None
    assert model.route(a, b.address, 70_000, 1.0) is None
    model.partition([a.address], [b.address])
    assert model.route(a, b.address, 10, 1.0) is None
    model.heal()
    model.crash(b.address)
    assert model.route(a, b.address, 10, 1.0) is None
    assert a.rng.getstate() == state


def test_link_model_pause_and_delays() -> None:
    model = LinkModel(latency=0.01)
    a = model.open(model.bind("127.0.0.1", 1))
    b = model.open(model.bind("127.0.0.1", 2))
    model.set_delay(a.address, outbound=0.1)
    model.set_delay(b.address, inbound=0.2)
    assert model.route(a, b.address, 10, 1.0) == pytest.approx(1.31)
    model.pause(b.address, 5.0, now=1.0)
    assert model.route(a, b.address, 10, 2.0) == 6.0  # held until the pause ends
    assert model.route(b, a.address, 10, 2.0) == pytest.approx(6.01)  # sent when it ends
    model.release(b)
    assert model.route(a, b.address, 10, 7.0) is None
    assert (model.delivered, model.dropped) == (3, 1)
