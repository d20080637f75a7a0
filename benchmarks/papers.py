"""The SWIM and Lifeguard papers' claims, measured on the trio-free Simulation.

Four experiments, each printed beside the claim it tests:

``detection``
    SWIM (Das, Gupta, Motivala, DSN 2002): the expected time from a crash to
    its first detection at some member is e/(e-1) ~ 1.58 protocol periods,
    whatever the cluster size. Measured over 1,000 seeded crashes per size:
    the time from a crash until the first member raises a suspicion about
    the crashed member (plain SWIM suspects at the end of the period whose
    probe failed). The paper's figure is a count of periods: its model has
    each member ping one random member per period, so the first ping of the
    crashed member comes in period K, geometric with p = 1 - (1 - 1/(n-1))^(n-1)
    ~ 1 - 1/e. Here K = ceil(W / T), where W is the time from the crash to
    the ping that failed (the suspicion comes one period T after that ping).
    trio_swim picks targets in a shuffled round robin (every member once per
    round), not at random; the exact law of K for both rules is computed
    here too, so the measurement is compared with the rule it implements.
``dissemination``
    SWIM: infection-style dissemination (news piggybacked on pings and acks)
    reaches every member within O(log n) periods. Measured: periods from a
    broadcast until its last receiver has it, and c in ``c * ln n``.
``load``
    SWIM: the load per member per period does not grow with n. Measured:
    datagrams and bytes each member sends per period at rest, while
    broadcasts spread, and while crashes are being detected.
``lifeguard``
    Lifeguard (Dadgar, Phillips, Currey, 2018): with members whose message
    processing is slow, Lifeguard has 50x fewer false positives or better
    than SWIM. Measured: 100 members, 0, 1, 2, 5 or 10 of them slow (their
    receive path delayed 0.5-8 s in episodes of 5-20 s), and a run with 10%
    of all datagrams lost; a few healthy members crash during each run.
    Counted: DEAD verdicts about members that never crashed, and the time
    from each crash to DEAD.

The first three use plain SWIM settings (``PLAIN_SWIM``: no Lifeguard, fixed
ack timeout, no gossip rounds besides piggybacking, no periodic state
exchange, no TCP fallback probe), 1 ms + up to 1 ms one-way latency, no loss.
The Lifeguard comparison toggles ``Config.lifeguard`` alone, on otherwise
default settings (gossip rounds, periodic state exchange) with the fixed ack
timeout and no TCP fallback probe, as the paper toggled Lifeguard inside
memberlist. Both run on a Simulation without TCP (``streams=False``, where
the Simulation has TCP at all): state exchanges go over UDP.

Clusters are built the cheap way the simulation allows: members are added
one after the other over one period (so their probe periods are spread over
it), then all of them join the first member at the same instant, and the
run waits until every member sees everyone ALIVE and the news of the join
has been sent its last time (every datagram is a bare ping or ack again).
Crashes are real ones (``Simulation.crash``: no leave, nothing in or out),
and a crashed member is restarted (a new instance at the same address, one
incarnation higher, joining through the first member) as soon as some member
suspects it, so that one cluster serves for a thousand crashes. A new crash
only picks a member that no one holds SUSPECT or DEAD, and at most n / 128
members are down at once: fewer probers would lengthen the first detection
(by 0.3% with n / 128 of them down throughout).

    python benchmarks/papers.py            # quick: 16, 64, 256 members, 500 crashes each
    python benchmarks/papers.py --full     # up to 4,096 members; 4,000 / 1,000 crashes
    python benchmarks/papers.py --part detection --sizes 1024

Progress goes to stderr, the tables to stdout, everything to papers.json
beside this file (a run of some parts keeps the other parts' results).
Deterministic: the same seed and options give the same figures.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio_swim
from trio_swim import BroadcastReceived, Config, MemberRemoved, Status, StatusChanged
from trio_swim.events import MemberEvent
from trio_swim.testing import SimMember, Simulation
from trio_swim.wire import Codec, Ping

from _common import REPO, code_state, count_verdicts, log, machine, quantile

HOST = "127.0.0.1"
FIRST_PORT = 10_000
"""Members listen on FIRST_PORT + i: every address has the same length."""
PERIOD = Config().period
E_OVER_E_MINUS_1 = math.e / (math.e - 1)

PLAIN_SWIM: dict[str, Any] = {
    "lifeguard": False,
    "adaptive_probe_timeout": False,
    "gossip_interval_millis": 0,
    "sync_interval_seconds": 0,
    "tcp_fallback_probe": False,
}
"""The SWIM paper's protocol: probe, ping-req, suspect, piggyback; nothing more."""
LIFEGUARD_VARIANTS: dict[str, dict[str, Any]] = {
    "swim": {"lifeguard": False, "adaptive_probe_timeout": False, "tcp_fallback_probe": False},
    "lifeguard": {"lifeguard": True, "adaptive_probe_timeout": False, "tcp_fallback_probe": False},
}
"""Lifeguard on or off, all else as by default (but the fixed ack timeout and no
TCP: the UDP protocol is what is compared)."""
PARTS = ("detection", "dissemination", "load", "lifeguard")

LATENCY = 0.001
JITTER = 0.001
BUILD_LIMIT_PERIODS = 2000
"""A cluster that has not formed and gone quiet within this many periods fails."""
DETECT_LIMIT_PERIODS = 200
BROADCAST_LIMIT_PERIODS = 100
REST_PERIODS = 40
BROADCAST_BYTES = 64


@dataclass(frozen=True)
class Settings:
    """What one run measures (``--quick`` or ``--full``, then the options)."""

    cluster_sizes: tuple[int, ...]
    detection_sizes: tuple[int, ...]
    crashes: int
    """Crashes per size, up to 256 members."""
    crashes_large: int
    """Crashes per size above 256 members (each costs more)."""
    broadcasts: int
    lifeguard_members: int
    lifeguard_duration: float
    lifeguard_slow: tuple[int, ...] = (0, 1, 2, 5, 10)
    lifeguard_loss: float = 0.10


QUICK = Settings(
    cluster_sizes=(16, 64, 256),
    detection_sizes=(16, 64, 256),
    crashes=500,
    crashes_large=500,
    broadcasts=30,
    lifeguard_members=100,
    lifeguard_duration=40.0,
)
FULL = Settings(
    cluster_sizes=(16, 64, 256, 1024, 2048, 4096),
    detection_sizes=(16, 64, 256, 1024),
    crashes=4000,
    crashes_large=1000,
    broadcasts=30,
    lifeguard_members=100,
    lifeguard_duration=300.0,
)


def address(index: int) -> str:
    """The address of the ``index``-th member of a simulated cluster."""
    return f"{HOST}:{FIRST_PORT + index}"


def plain_simulation(seed: int) -> Simulation:
    """A Simulation without TCP where the Simulation has TCP (the SWIM paper's
    protocol is UDP alone: state exchanges then go over UDP, as before TCP)."""
    if "streams" in inspect.signature(Simulation).parameters:
        return Simulation(seed=seed, latency=LATENCY, jitter=JITTER, streams=False)
    return Simulation(seed=seed, latency=LATENCY, jitter=JITTER)


def config_fields(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without the names this version of Config lacks."""
    known = set(Config.__struct_fields__)
    return {k: v for k, v in settings.items() if k in known}


def mean(values: Iterable[float]) -> float:
    """The mean (nan for no values)."""
    values = list(values)
    return statistics.fmean(values) if values else math.nan


def rss_bytes() -> int:
    """This process's resident set size now (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def measured_code() -> dict[str, Any]:
    """The commit, and whether the trio_swim imported is exactly that commit's."""
    state = code_state()
    package = Path(trio_swim.__file__).resolve().parent
    state["trio_swim_imported_from"] = str(package)
    commit = state.get("commit")
    if not commit:
        return state
    same = True
    for path in sorted(package.glob("*.py")):
        shown = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{commit}:trio_swim/{path.name}"],
            capture_output=True, timeout=10, check=False,
        )  # fmt: skip
        if shown.returncode != 0 or shown.stdout != path.read_bytes():
            same = False
            break
    state["trio_swim_imported_is_commit"] = same
    return state


class Progress:
    """Progress lines of one experiment, with the wall time since it began."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.started = time.perf_counter()

    def wall(self) -> float:
        """Wall seconds since this began."""
        return time.perf_counter() - self.started

    def __call__(self, text: str) -> None:
        log(f"[{self.prefix}] {text} (wall {self.wall():.1f} s)")


# ------------------------------------------------------------- the model


def probe_wait_law(n: int, rule: str, horizon: int) -> list[float]:
    """P(k) for k = 0 .. horizon-1: the law of the number of whole periods a
    member waits, from a crash, before its next probe is of the crashed
    member (one of its ``n - 1`` others), under each target rule.

    ``random``: a uniform choice every period. ``round-robin``: a shuffled
    round over the ``n - 1`` others, reshuffled at the end of each round,
    the member at a uniformly random point of its round at the crash.
    """
    others = n - 1
    if rule == "random":
        return [(1 - 1 / others) ** k / others for k in range(horizon)]
    law = []
    for k in range(horizon):
        # The crashed member is later in the current round, k places on ...
        this_round = (others - k) / others**2 if k < others else 0.0
        # ... or already probed in this round (its place p < the member's r),
        # and k = (others - r) + its place in the next round.
        low, high = max(1, others - k), min(others - 1, 2 * others - 1 - k)
        next_round = sum(range(low, high + 1)) / others**3 if low <= high else 0.0
        law.append(this_round + next_round)
    return law


def detection_model(n: int, rule: str) -> dict[str, Any]:
    """The law of the first detection of one crash in a cluster of ``n``.

    ``n - 1`` survivors, each with its probe period at an independent,
    uniformly random phase. K (periods until the first ping of the crashed
    member) has P(K > j) = S(j)^(n-1), with S(j) the chance that one member
    waits j whole periods or more; the first suspicion comes one period
    after that ping, so the mean time to it is E[W] + 1 periods.
    """
    horizon = 4 * n + 64
    law = probe_wait_law(n, rule, horizon)
    survivors = n - 1
    at_least = [1.0]
    for p in law:
        at_least.append(max(0.0, at_least[-1] - p))
    k_mean = sum(s**survivors for s in at_least[:horizon])
    distribution = [at_least[k - 1] ** survivors - at_least[k] ** survivors for k in range(1, 13)]
    wait = 0.0
    for j in range(horizon):
        a, b = at_least[j], law[j]
        if b > 0:
            wait += (a ** (survivors + 1) - (a - b) ** (survivors + 1)) / ((survivors + 1) * b)
        else:
            wait += a**survivors
    return {
        "mean_periods_k": k_mean,
        "mean_time_to_suspicion_periods": wait + 1,
        "p_k": distribution,
    }


# ------------------------------------------------------------- a cluster


class Watch:
    """What every member of a cluster sees, kept from their events in O(1) per
    event (reading n tables of n members each would cost O(n^2) per look)."""

    def __init__(self) -> None:
        self.alive_pairs = 0
        """(observer, subject) pairs in which the observer holds the subject ALIVE."""
        self.doubted: dict[str, set[str]] = {}
        """Per observer: the members it holds SUSPECT or DEAD."""
        self.doubters: dict[str, int] = {}
        """Per subject: how many observers hold it SUSPECT or DEAD."""
        self.crashed: dict[str, float] = {}
        """Members crashed and not yet suspected: when each crashed."""
        self.detections: dict[str, tuple[float, str]] = {}
        """Per crashed member: (first suspicion of it, its observer)."""
        self.fresh = False
        """A crashed member has just been suspected for the first time."""
        self.receipts: dict[bytes, list[float]] = {}
        """Per broadcast being followed: when each member received it."""

    def handler(self, observer: str) -> Callable[[float, MemberEvent], None]:
        """The event callback of the member at ``observer``."""
        doubted = self.doubted[observer] = set()
        doubters = self.doubters

        def on_event(now: float, event: MemberEvent) -> None:
            if isinstance(event, StatusChanged):
                subject = event.node.address
                if event.previous is Status.ALIVE:
                    self.alive_pairs -= 1
                if event.status is Status.ALIVE:
                    self.alive_pairs += 1
                    if subject in doubted:
                        doubted.discard(subject)
                        doubters[subject] -= 1
                    return
                if subject not in doubted:
                    doubted.add(subject)
                    doubters[subject] = doubters.get(subject, 0) + 1
                if subject in self.crashed and subject not in self.detections:
                    self.detections[subject] = (now, observer)
                    self.fresh = True
            elif isinstance(event, BroadcastReceived):
                receipts = self.receipts.get(event.payload)
                if receipts is not None:
                    receipts.append(now)
            elif isinstance(event, MemberRemoved) and event.node.address in doubted:
                doubted.discard(event.node.address)
                doubters[event.node.address] -= 1

        return on_event

    def forget(self, observer: str) -> None:
        """``observer`` is gone (crashed): what it held no longer counts."""
        for subject in self.doubted.pop(observer, set()):
            self.doubters[subject] -= 1

    def trusted(self, subject: str) -> bool:
        """No member holds ``subject`` SUSPECT or DEAD."""
        return not self.doubters.get(subject)


@dataclass
class Traffic:
    """Datagrams and bytes sent per member per period over one window."""

    periods: float
    datagrams: float
    bytes: float

    def row(self) -> dict[str, float]:
        """As JSON figures."""
        return {
            "periods": round(self.periods, 2),
            "datagrams_per_member_period": round(self.datagrams, 3),
            "bytes_per_member_period": round(self.bytes, 1),
        }


class Cluster:
    """n plain-SWIM members on one Simulation, formed and quiet."""

    def __init__(self, size: int, seed: int, settings: dict[str, Any], progress: Progress) -> None:
        self.size = size
        self.progress = progress
        self.sim = plain_simulation(seed)
        self.watch = Watch()
        self.rng = random.Random(f"{seed}/papers/{size}")
        self.addresses = [address(i) for i in range(size)]
        started = time.perf_counter()
        rss_before = rss_bytes()
        fields = self.fields = config_fields(settings)
        self.retired = (0, 0)
        self.members: list[SimMember] = []
        for i, member_address in enumerate(self.addresses):
            config = Config(listen_ip=HOST, listen_port=FIRST_PORT + i, **fields)
            self.members.append(
                self.sim.add_member(config, on_event=self.watch.handler(member_address))
            )
            self.sim.run_for(PERIOD / size)
        for member_address in self.addresses[1:]:
            self.sim.join(member_address, [self.addresses[0]])
        joined_at = self.sim.now
        if not self.sim.run_until(self.converged, BUILD_LIMIT_PERIODS * PERIOD):
            raise RuntimeError(f"n={size}: the cluster did not form")
        self.converge_periods = (self.sim.now - joined_at) / PERIOD
        progress(f"{size} members see each other after {self.converge_periods:.1f} periods")
        self.quiet_periods = self._wait_until_quiet()
        progress(f"join news sent its last time after {self.quiet_periods} more periods")
        self.build_wall = time.perf_counter() - started
        gc.collect()
        self.rss_mib = (rss_bytes() - rss_before) / 2**20

    def converged(self) -> bool:
        """Every member holds every other ALIVE."""
        return self.watch.alive_pairs == self.size * (self.size - 1)

    def _wait_until_quiet(self) -> int:
        """Run period by period until every member's datagrams are bare pings
        and acks (nothing piggybacked) for two periods in a row."""
        bare = len(Codec(Config().cluster_name, 1400).encode(address(0), [Ping(2**62)]))
        quiet = 0
        before = self.counters()
        for periods in range(1, BUILD_LIMIT_PERIODS + 1):
            self.sim.run_for(PERIOD)
            after = self.counters()
            busiest = max(
                (b1 - b0) / max(1, p1 - p0)
                for (p0, b0), (p1, b1) in zip(before, after, strict=True)
            )
            before = after
            quiet = quiet + 1 if busiest < 1.5 * bare else 0
            if quiet >= 2:
                return periods
            if periods % 50 == 0:
                self.progress(f"still spreading the join news after {periods} periods")
        raise RuntimeError(f"n={self.size}: the join news never stopped")

    def counters(self) -> list[tuple[int, int]]:
        """(datagrams, bytes) sent so far, per member (by the instance running now)."""
        out = []
        for member in self.members:
            stats = member.statistics()
            out.append((stats.packets_sent, stats.bytes_sent))
        return out

    def sent(self) -> tuple[int, int]:
        """(datagrams, bytes) sent so far by every instance, restarted ones included."""
        datagrams, sent = self.retired
        for member in self.members:
            stats = member.statistics()
            datagrams += stats.packets_sent
            sent += stats.bytes_sent
        return datagrams, sent

    def traffic(self, before: tuple[int, int], periods: float) -> Traffic:
        """Per member and period since ``before`` (a :meth:`sent` snapshot)."""
        after = self.sent()
        scale = self.size * periods
        return Traffic(periods, (after[0] - before[0]) / scale, (after[1] - before[1]) / scale)

    def crash(self, index: int) -> None:
        """Crash the ``index``-th member (silent: no leave, nothing in or out)."""
        self.sim.crash(self.addresses[index])
        self.watch.forget(self.addresses[index])

    def restart(self, index: int) -> None:
        """Start the crashed ``index``-th member again, one incarnation higher,
        joining through the first member (as a restarted process would)."""
        old = self.members[index]
        stats = old.statistics()
        self.retired = (
            self.retired[0] + stats.packets_sent,
            self.retired[1] + stats.bytes_sent,
        )
        member_address = self.addresses[index]
        config = Config(
            listen_ip=HOST,
            listen_port=FIRST_PORT + index,
            initial_hosts=[self.addresses[0]],
            **self.fields,
        )
        self.members[index] = self.sim.add_member(
            config,
            incarnation=old.node.incarnation + 1,
            on_event=self.watch.handler(member_address),
        )


# ------------------------------------------------------------- experiments


def measure_rest(cluster: Cluster) -> Traffic:
    """Load of a quiet cluster over REST_PERIODS periods."""
    before = cluster.sent()
    cluster.sim.run_for(REST_PERIODS * PERIOD)
    return cluster.traffic(before, REST_PERIODS)


@dataclass
class Spread:
    """How one broadcast spread: receipt times after it was sent, in periods."""

    receipts: list[float]
    members: int

    def reached(self, fraction: float) -> float:
        """Periods until ``fraction`` of the other members had it (nan if never)."""
        needed = max(1, math.ceil(fraction * (self.members - 1)))
        return self.receipts[needed - 1] if len(self.receipts) >= needed else math.nan


def measure_dissemination(cluster: Cluster, count: int) -> tuple[list[Spread], Traffic]:
    """``count`` broadcasts from random members, one after the other."""
    sim, watch, rng = cluster.sim, cluster.watch, cluster.rng
    spreads = []
    before = cluster.sent()
    started = sim.now
    for number in range(count):
        sim.run_for(rng.uniform(0, PERIOD))
        origin = rng.choice(cluster.addresses)
        payload = f"broadcast {number} ".encode().ljust(BROADCAST_BYTES, b".")
        receipts = watch.receipts[payload] = []
        sent_at = sim.now
        sim.broadcast(origin, payload)
        sim.run_until(_holds_at_least(receipts, cluster.size - 1), BROADCAST_LIMIT_PERIODS * PERIOD)
        del watch.receipts[payload]
        spreads.append(Spread([(t - sent_at) / PERIOD for t in receipts], cluster.size))
    sim.run_for(5 * PERIOD)  # the last one's retransmissions
    return spreads, cluster.traffic(before, (sim.now - started) / PERIOD)


def _holds_at_least(values: list[float], count: int) -> Callable[[], bool]:
    return lambda: len(values) >= count


@dataclass
class Crash:
    """One simulated crash and its first detection."""

    victim: str
    to_suspicion: float
    """Periods from the crash to the first suspicion of the victim."""
    probe_periods: int
    """K: in which period after the crash the failed probe's ping went out."""


def measure_detection(cluster: Cluster, crashes: int) -> tuple[list[Crash], Traffic]:
    """``crashes`` crashes, at most ``n / 128`` down at a time, each restarted as
    soon as some member suspects it; also the load meanwhile."""
    sim, watch, rng = cluster.sim, cluster.watch, cluster.rng
    at_once = max(1, cluster.size // 128)
    results: list[Crash] = []
    before = cluster.sent()
    started = sim.now
    launched = 0
    # The first member is everyone's way back in: it never crashes.
    candidates = list(range(1, cluster.size))

    restarts: list[int] = []

    def collect() -> None:
        watch.fresh = False
        for victim, (when, _observer) in list(watch.detections.items()):
            crashed_at = watch.crashed.pop(victim)
            del watch.detections[victim]
            took = (when - crashed_at) / PERIOD
            # The suspicion ends the period whose ping failed.
            results.append(Crash(victim, took, max(1, math.ceil(took - 1))))
            restarts.append(cluster.addresses.index(victim))
            if len(results) % (crashes // 5 or 1) == 0:
                cluster.progress(f"{len(results)} crashes detected")

    while len(results) < crashes:
        if len(watch.crashed) < at_once and launched < crashes:
            sim.run_for(rng.uniform(0, PERIOD))
            collect()
            # Restarted at a random instant, not at the detector's period
            # boundary: else the members' periods would fall into step.
            for index in restarts:
                cluster.restart(index)
            restarts.clear()
            victim = _pick_victim(cluster, candidates)
            if victim is None:
                continue
            cluster.crash(victim)
            watch.crashed[cluster.addresses[victim]] = sim.now
            launched += 1
            continue
        if not sim.run_until(lambda: watch.fresh, DETECT_LIMIT_PERIODS * PERIOD):
            raise RuntimeError(f"n={cluster.size}: {sorted(watch.crashed)} never suspected")
        collect()
    return results, cluster.traffic(before, (sim.now - started) / PERIOD)


def _pick_victim(cluster: Cluster, candidates: list[int]) -> int | None:
    """A random member that is running and that nobody doubts (None if the
    draws found none: the caller lets time pass and asks again)."""
    for _ in range(100):
        index = cluster.rng.choice(candidates)
        member_address = cluster.addresses[index]
        if member_address not in cluster.watch.crashed and cluster.watch.trusted(member_address):
            return index
    return None


# ------------------------------------------------------------- per size


def run_cluster_parts(size: int, seed: int, parts: set[str], settings: Settings) -> dict[str, Any]:
    """Build one cluster and run the parts that concern it; one row each."""
    progress = Progress(f"n={size}")
    cluster = Cluster(size, seed, PLAIN_SWIM, progress)
    row: dict[str, Any] = {
        "members": size,
        "converge_periods": round(cluster.converge_periods, 2),
        "quiet_after_periods": cluster.quiet_periods,
        "build_wall_seconds": round(cluster.build_wall, 1),
        "rss_mib": round(cluster.rss_mib, 1),
    }
    if "load" in parts:
        row["rest"] = measure_rest(cluster).row()
        progress(f"at rest: {row['rest']['datagrams_per_member_period']} datagrams per period")
    if "dissemination" in parts:
        spreads, traffic = measure_dissemination(cluster, settings.broadcasts)
        row["broadcasting"] = traffic.row()
        row["dissemination"] = dissemination_row(spreads, size)
        progress(f"{len(spreads)} broadcasts: all reached in {row['dissemination']['all_mean']}")
    if "detection" in parts and size in settings.detection_sizes:
        wanted = settings.crashes if size <= 256 else settings.crashes_large
        crashes, traffic = measure_detection(cluster, wanted)
        row["detecting"] = traffic.row()
        row["detection"] = detection_row(crashes, size)
    row["wall_seconds"] = round(progress.wall(), 1)
    progress("done")
    return row


def dissemination_row(spreads: list[Spread], size: int) -> dict[str, Any]:
    """Summary of the broadcasts of one size (means over the broadcasts that
    got that far: SWIM's dissemination reaches everyone only with high
    probability, and a broadcast that missed someone is counted apart)."""

    def reached(fraction: float) -> list[float]:
        return [t for t in (s.reached(fraction) for s in spreads) if not math.isnan(t)]

    complete = reached(1.0)
    return {
        "broadcasts": len(spreads),
        "reached_everyone": len(complete),
        "half_mean": round(mean(reached(0.5)), 2),
        "p99_mean": round(mean(reached(0.99)), 2),
        "all_mean": round(mean(complete), 2),
        "all_max": round(max(complete, default=math.nan), 2),
        "all_per_ln_n": round(mean(complete) / math.log(size), 3),
        "missed_receipts": sum(size - 1 - len(s.receipts) for s in spreads),
    }


def detection_row(crashes: list[Crash], size: int) -> dict[str, Any]:
    """Summary of the crashes of one size, beside both models."""
    ks = [c.probe_periods for c in crashes]
    times = [c.to_suspicion for c in crashes]
    counts = [ks.count(k) for k in range(1, 13)]
    random_model = detection_model(size, "random")
    round_robin = detection_model(size, "round-robin")
    k_mean = mean(ks)
    return {
        "crashes": len(crashes),
        "k_mean": round(k_mean, 4),
        "k_stderr": round(statistics.stdev(ks) / math.sqrt(len(ks)), 4) if len(ks) > 1 else None,
        "k_max": max(ks),
        "k_counts": counts,
        "k_model_random": round(random_model["mean_periods_k"], 4),
        "k_model_round_robin": round(round_robin["mean_periods_k"], 4),
        "p_k_model_random": [round(p, 5) for p in random_model["p_k"]],
        "p_k_model_round_robin": [round(p, 5) for p in round_robin["p_k"]],
        "to_suspicion_mean": round(mean(times), 3),
        "to_suspicion_model_random": round(random_model["mean_time_to_suspicion_periods"], 3),
        "to_suspicion_model_round_robin": round(round_robin["mean_time_to_suspicion_periods"], 3),
        "to_suspicion_p50": round(quantile(times, 0.5), 3),
        "to_suspicion_p99": round(quantile(times, 0.99), 3),
        "to_suspicion_max": round(max(times), 3),
        "to_suspicion_samples": [round(t, 4) for t in times],
    }


# ------------------------------------------------------------- Lifeguard


@dataclass(frozen=True)
class FaultPlan:
    """The faults of one Lifeguard level, the same for every variant."""

    name: str
    slow: tuple[str, ...]
    loss: float
    episodes: tuple[tuple[float, str, float], ...]
    """(seconds after the start, slow member, its receive delay from then on)."""
    crashes: tuple[tuple[float, str], ...]
    """(seconds after the start, member) real crashes of healthy members."""


DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


def fault_plan(
    name: str, slow_count: int, loss: float, members: int, duration: float, seed: int
) -> FaultPlan:
    """Pick slow members, their episodes and the crashes from ``seed``."""
    rng = random.Random(f"{seed}/lifeguard/{name}")
    candidates = [address(i) for i in range(1, members)]
    slow = rng.sample(candidates, slow_count)
    episodes: list[tuple[float, str, float]] = []
    for member in slow:
        t = rng.uniform(0, 5)
        while t < duration:
            length = rng.uniform(5, 20)
            episodes.append((t, member, rng.choice(DELAYS)))
            episodes.append((min(t + length, duration), member, 0.0))
            t += length + rng.uniform(5, 15)
    healthy = [a for a in candidates if a not in slow]
    crash_count = max(1, round(duration / 15))
    victims = rng.sample(healthy, crash_count)
    crashes = tuple(
        (duration * (i + 0.5) / crash_count, victim) for i, victim in enumerate(victims)
    )
    return FaultPlan(name, tuple(slow), loss, tuple(sorted(episodes)), crashes)


@dataclass
class LifeguardOutcome:
    """What one (fault level, variant) run measured."""

    level: str
    variant: str
    slow_members: int
    loss: float
    false_dead_healthy: int = 0
    """DEAD events, at running members, about members never slow nor crashed."""
    false_verdicts_healthy: int = 0
    """Distinct (member, incarnation) among them."""
    false_dead_slow: int = 0
    """DEAD events about the slow members themselves (before any crash)."""
    false_suspect_healthy: int = 0
    first_dead: list[float] = field(default_factory=list)
    """Per crash: seconds until the first member declared it DEAD."""
    all_dead: list[float] = field(default_factory=list)
    """Per crash: seconds until every running member held it DEAD."""
    all_dead_not_slow: list[float] = field(default_factory=list)
    """The same over the running members never made slow (a slow member hears late)."""
    observer_dead: list[float] = field(default_factory=list)
    """Per (crash, running member): seconds until that member held it DEAD."""
    undetected: int = 0
    """(crash, running member) pairs that never held it DEAD."""
    max_local_health: int = 0
    wall_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """As JSON, with the latencies summarised."""
        row = {k: v for k, v in asdict(self).items() if k not in ("observer_dead",)}
        row["first_dead_p50"] = quantile(self.first_dead, 0.5)
        row["all_dead_p50"] = quantile(self.all_dead, 0.5)
        row["all_dead_not_slow_p50"] = quantile(self.all_dead_not_slow, 0.5)
        row["all_dead_not_slow_max"] = max(self.all_dead_not_slow, default=math.nan)
        row["observer_dead_p50"] = quantile(self.observer_dead, 0.5)
        row["observer_dead_p99"] = quantile(self.observer_dead, 0.99)
        return row


def run_lifeguard(
    plan: FaultPlan, variant: str, members: int, duration: float, seed: int
) -> LifeguardOutcome:
    """One fault level under one variant, on a fresh cluster of ``members``."""
    progress = Progress(f"lifeguard {plan.name} {variant}")
    settings = {**config_fields(LIFEGUARD_VARIANTS[variant])}
    log_rows: list[tuple[float, str, str, Status, int]] = []
    sim = plain_simulation(seed)
    addresses = [address(i) for i in range(members)]
    alive = [0]

    def handler(observer: str) -> Callable[[float, MemberEvent], None]:
        def on_event(now: float, event: MemberEvent) -> None:
            if isinstance(event, StatusChanged):
                if event.previous is Status.ALIVE:
                    alive[0] -= 1
                if event.status is Status.ALIVE:
                    alive[0] += 1
                else:
                    node = event.node
                    log_rows.append((now, observer, node.address, event.status, node.incarnation))

        return on_event

    handles = []
    for i, member_address in enumerate(addresses):
        config = Config(listen_ip=HOST, listen_port=FIRST_PORT + i, **settings)
        handles.append(sim.add_member(config, on_event=handler(member_address)))
        sim.run_for(PERIOD / members)
    for member_address in addresses[1:]:
        sim.join(member_address, [addresses[0]])
    if not sim.run_until(lambda: alive[0] == members * (members - 1), 600):
        raise RuntimeError(f"lifeguard {plan.name} {variant}: the cluster did not form")
    sim.run_for(10.0)  # let the join news die down
    log_rows.clear()
    start = sim.now
    sim.set_loss(plan.loss)
    actions: list[tuple[float, int, str, float]] = [
        (start + t, 0, member, delay) for t, member, delay in plan.episodes
    ]
    actions += [(start + t, 1, victim, 0.0) for t, victim in plan.crashes]
    actions += [(start + t, 2, "", 0.0) for t in range(1, int(duration + 20) + 1)]
    actions.sort()
    crashed_at: dict[str, float] = {}
    health = 0
    for at, kind, member, delay in actions:
        sim.run_for(max(0.0, at - sim.now))
        if kind == 0:
            sim.set_delay(member, inbound=delay)
        elif kind == 1:
            sim.crash(member)
            crashed_at[member] = sim.now
        else:
            running = [h for h in handles if h.address not in crashed_at]
            health = max(health, max(h.statistics().local_health for h in running))
            if int(at - start) % 60 == 0:
                progress(f"{at - start:.0f} s of {duration:.0f} + 20")
    sim.set_loss(0.0)
    outcome = summarise_lifeguard(plan, variant, addresses, log_rows, crashed_at)
    outcome.max_local_health = health
    outcome.wall_seconds = round(progress.wall(), 1)
    progress(
        f"false DEAD {outcome.false_dead_healthy} (healthy) {outcome.false_dead_slow} (slow); "
        f"DEAD everywhere p50 {quantile(outcome.all_dead, 0.5):.2f} s"
    )
    return outcome


def summarise_lifeguard(
    plan: FaultPlan,
    variant: str,
    addresses: list[str],
    log_rows: list[tuple[float, str, str, Status, int]],
    crashed_at: dict[str, float],
) -> LifeguardOutcome:
    """Count the false verdicts and the detection times of one run."""
    out = LifeguardOutcome(plan.name, variant, len(plan.slow), plan.loss)
    slow = set(plan.slow)
    counted = count_verdicts(log_rows, crashed_at, slow)
    out.false_dead_slow = counted.false_dead_slow
    out.false_dead_healthy = counted.false_dead_healthy
    out.false_suspect_healthy = counted.false_suspect_healthy
    out.false_verdicts_healthy = counted.false_verdicts_healthy
    dead_at = counted.dead_after
    for victim in crashed_at:
        # The members running at the end (a later victim may not have
        # heard of this crash before its own).
        observers = [a for a in addresses if a not in crashed_at]
        times = [dead_at[(o, victim)] for o in observers if (o, victim) in dead_at]
        out.undetected += len(observers) - len(times)
        out.observer_dead += times
        if times:
            out.first_dead.append(min(times))
        if times and len(times) == len(observers):
            out.all_dead.append(max(times))
        steady = [dead_at.get((o, victim), math.inf) for o in observers if o not in slow]
        if steady and max(steady) < math.inf:
            out.all_dead_not_slow.append(max(steady))
    return out


def lifeguard_levels(settings: Settings, seed: int) -> list[FaultPlan]:
    """The fault levels of the Lifeguard comparison."""
    members, duration = settings.lifeguard_members, settings.lifeguard_duration
    plans = [
        fault_plan(f"slow-{k}", k, 0.0, members, duration, seed) for k in settings.lifeguard_slow
    ]
    loss = settings.lifeguard_loss
    plans.append(fault_plan(f"loss-{loss:.0%}", 0, loss, members, duration, seed))
    return plans


# ------------------------------------------------------------- claims and tables


def fit_log(rows: list[dict[str, Any]]) -> float:
    """c of the least-squares fit all_mean = c * ln n (through the origin)."""
    points = [(math.log(r["members"]), r["dissemination"]["all_mean"]) for r in rows]
    points = [(x, y) for x, y in points if not math.isnan(y)]
    return sum(x * y for x, y in points) / sum(x * x for x, _ in points) if points else math.nan


def claims(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each paper claim beside what was measured, and whether it held."""
    out: list[dict[str, Any]] = []
    rows = document.get("clusters", [])
    detected = [r for r in rows if "detection" in r]
    if detected:
        worst = max(abs(r["detection"]["k_mean"] - E_OVER_E_MINUS_1) for r in detected)
        measured = ", ".join(f"n={r['members']}: {r['detection']['k_mean']:.3f}" for r in detected)
        out.append(
            {
                "claim": "first detection after e/(e-1) = 1.582 periods on average, for any n",
                "measured": measured,
                "held": worst <= 0.1 * E_OVER_E_MINUS_1,
                "rule": "every size within 10% of 1.582",
            }
        )
    spread = [r for r in rows if "dissemination" in r]
    if len(spread) >= 2:
        ratios = [r["dissemination"]["all_per_ln_n"] for r in spread]
        c = fit_log(spread)
        sizes = [r["members"] for r in spread]
        missed = sum(r["dissemination"]["missed_receipts"] for r in spread)
        out.append(
            {
                "claim": "a broadcast reaches all n members in O(log n) periods",
                "measured": f"periods to all / ln n = {min(ratios):.2f} .. {max(ratios):.2f} "
                f"for n = {sizes[0]} .. {sizes[-1]}; fit c = {c:.2f}; "
                f"{missed} missed receipts in all",
                "held": max(ratios) / min(ratios) <= 1.5,
                "rule": "(periods to all) / ln n varies by at most 1.5x across sizes",
            }
        )
    rested = [r for r in rows if "rest" in r]
    if len(rested) >= 2:
        datagrams = [r["rest"]["datagrams_per_member_period"] for r in rested]
        sent = [r["rest"]["bytes_per_member_period"] for r in rested]
        out.append(
            {
                "claim": "load per member per period does not grow with n",
                "measured": f"at rest {min(datagrams):.2f} .. {max(datagrams):.2f} datagrams, "
                f"{min(sent):.0f} .. {max(sent):.0f} bytes per member per period",
                "held": max(datagrams) <= 1.1 * min(datagrams) and max(sent) <= 1.1 * min(sent),
                "rule": "at rest, within 10% across sizes",
            }
        )
    runs = document.get("lifeguard", {}).get("runs", [])
    if runs:
        faulty = [r for r in runs if r["slow_members"] or r["loss"]]
        plain = sum(r["false_dead_healthy"] for r in faulty if r["variant"] == "swim")
        lg = sum(r["false_dead_healthy"] for r in faulty if r["variant"] == "lifeguard")
        ratio_text = f">= {plain}x" if lg == 0 else f"{plain / lg:.1f}x"
        out.append(
            {
                "claim": "Lifeguard: 50x fewer false positives than SWIM, or better",
                "measured": f"false DEAD about healthy members: SWIM {plain}, Lifeguard {lg} "
                f"({ratio_text})",
                "held": plain >= 50 and lg * 50 <= plain,
                "rule": "summed over the faulty levels; SWIM must have 50 or more",
            }
        )
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def news_bytes(row: dict[str, Any], phase: str, part: str, count: str) -> float:
    """Bytes each member sent per event (broadcast, crash) of ``phase`` beyond
    what it sends at rest (nan if the row lacks a figure)."""
    busy, rest, events = row.get(phase), row.get("rest"), row.get(part, {}).get(count)
    if not busy or not rest or not events:
        return math.nan
    extra = busy["bytes_per_member_period"] - rest["bytes_per_member_period"]
    return float(extra * busy["periods"] / events)


def _ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}"


def tables(document: dict[str, Any]) -> str:
    """Markdown tables of every part present in ``document``."""
    lines: list[str] = []
    rows = document.get("clusters", [])
    detected = [r for r in rows if "detection" in r]
    if detected:
        lines += [
            "First detection (plain SWIM): K = period of the failed ping, D = crash to suspicion",
            "",
            "| n | crashes | mean K | +- | model random | model round robin | e/(e-1) "
            "| P(K=1) | 1-1/e | max K | mean D | D model (rr) | D p99 |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in detected:
            d = r["detection"]
            lines.append(
                f"| {r['members']} | {d['crashes']} | {d['k_mean']:.3f} | {d['k_stderr']:.3f} "
                f"| {d['k_model_random']:.3f} | {d['k_model_round_robin']:.3f} "
                f"| {E_OVER_E_MINUS_1:.3f} | {d['k_counts'][0] / d['crashes']:.3f} "
                f"| {1 - 1 / math.e:.3f} | {d['k_max']} | {d['to_suspicion_mean']:.3f} "
                f"| {d['to_suspicion_model_round_robin']:.3f} | {d['to_suspicion_p99']:.2f} |"
            )
        lines.append("")
    spread = [r for r in rows if "dissemination" in r]
    if spread:
        c = fit_log(spread)
        lines += [
            f"Dissemination (plain SWIM, {BROADCAST_BYTES}-byte broadcasts), periods; "
            f"fit: all = {c:.2f} ln n",
            "",
            "| n | broadcasts | reached all | half | 99% | all (mean) | all (max) "
            "| all / ln n | c ln n |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in spread:
            d = r["dissemination"]
            lines.append(
                f"| {r['members']} | {d['broadcasts']} | {d['reached_everyone']} "
                f"| {_fmt(d['half_mean'])} | {_fmt(d['p99_mean'])} | {_fmt(d['all_mean'])} "
                f"| {_fmt(d['all_max'])} | {_fmt(d['all_per_ln_n'], 3)} "
                f"| {c * math.log(r['members']):.2f} |"
            )
        lines.append("")
    rested = [r for r in rows if "rest" in r]
    if rested:
        lines += [
            "Load per member per period (datagrams sent / bytes sent), and the bytes "
            "each member sent per broadcast and per crash beyond the load at rest",
            "",
            "| n | at rest | broadcasting | detecting crashes | bytes / broadcast "
            "| bytes / crash | build wall s | RSS MiB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rested:
            cells = []
            for key in ("rest", "broadcasting", "detecting"):
                t = r.get(key)
                cells.append(
                    "-"
                    if t is None
                    else f"{t['datagrams_per_member_period']:.2f} / "
                    f"{t['bytes_per_member_period']:.0f}"
                )
            per_broadcast = news_bytes(r, "broadcasting", "dissemination", "broadcasts")
            per_crash = news_bytes(r, "detecting", "detection", "crashes")
            lines.append(
                f"| {r['members']} | {' | '.join(cells)} | {_fmt(per_broadcast, 0)} "
                f"| {_fmt(per_crash, 0)} | {r['build_wall_seconds']} | {r['rss_mib']} |"
            )
        lines.append("")
    runs = document.get("lifeguard", {}).get("runs", [])
    if runs:
        lines += [
            f"Lifeguard vs SWIM ({document['lifeguard']['members']} members, "
            f"{document['lifeguard']['duration_seconds']:.0f} s of faults; false DEAD = "
            "events about members that never crashed; DEAD times in seconds after a crash)",
            "",
            "| level | variant | false DEAD healthy | verdicts | false DEAD slow "
            "| false SUSPECT | crashes | first DEAD p50 | at all not slow p50 | max "
            "| at all p50 | missed | max LHM |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in runs:
            lines.append(
                f"| {r['level']} | {r['variant']} | {r['false_dead_healthy']} "
                f"| {r['false_verdicts_healthy']} | {r['false_dead_slow']} "
                f"| {r['false_suspect_healthy']} | {len(r['first_dead'])} "
                f"| {_fmt(r['first_dead_p50'])} | {_fmt(r['all_dead_not_slow_p50'])} "
                f"| {_fmt(r['all_dead_not_slow_max'])} | {_fmt(r['all_dead_p50'])} "
                f"| {r['undetected']} | {r['max_local_health']} |"
            )
        lines += [
            "",
            "| level | false DEAD swim / lifeguard | first DEAD p50 lifeguard / swim "
            "| at all not slow p50 lifeguard / swim |",
            "|---|---:|---:|---:|",
        ]
        by_key = {(r["level"], r["variant"]): r for r in runs}
        for level in dict.fromkeys(r["level"] for r in runs):
            plain, lg = by_key.get((level, "swim")), by_key.get((level, "lifeguard"))
            if plain is None or lg is None:
                continue
            lines.append(
                f"| {level} | {plain['false_dead_healthy']} / {lg['false_dead_healthy']} "
                f"| {_ratio(lg['first_dead_p50'], plain['first_dead_p50'])} "
                f"| {_ratio(lg['all_dead_not_slow_p50'], plain['all_dead_not_slow_p50'])} |"
            )
        lines.append("")
    found = claims(document)
    if found:
        lines += ["| claim | measured | held |", "|---|---|---|"]
        for claim in found:
            lines.append(
                f"| {claim['claim']} | {claim['measured']} | {'yes' if claim['held'] else 'NO'} |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------- main


def _finite(value: Any) -> Any:
    """``value`` with every nan/inf float turned into None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _restore(value: Any) -> Any:
    """The inverse of :func:`_finite` for the figures the tables read."""
    if value is None:
        return math.nan
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    """Command line: run the chosen parts, print the tables, write papers.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the default: small sizes, short runs")
    mode.add_argument("--full", action="store_true", help="up to 4,096 members, 300 s runs")
    parser.add_argument("--part", action="append", choices=PARTS, help="repeat (default all)")
    parser.add_argument("--sizes", type=int, nargs="+", help="cluster sizes instead of the mode's")
    parser.add_argument(
        "--crashes", type=int, help="crashes per size (quick 500; full 4000, 1000 over 256)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args(argv)
    settings = FULL if args.full else QUICK
    if args.sizes:
        if any(not 4 <= s <= 10_000 for s in args.sizes):
            parser.error("--sizes: each must be 4..10000")
        sizes = tuple(sorted(set(args.sizes)))
        settings = Settings(
            **{**asdict(settings), "cluster_sizes": sizes, "detection_sizes": sizes}
        )
    if args.crashes is not None:
        if args.crashes < 1:
            parser.error("--crashes: must be at least 1")
        settings = Settings(
            **{**asdict(settings), "crashes": args.crashes, "crashes_large": args.crashes}
        )
    parts = set(args.part or PARTS)
    started = time.perf_counter()

    try:
        document: dict[str, Any] = _restore(json.loads(args.output.read_text()))
        if not isinstance(document, dict):
            document = {}
    except (OSError, ValueError):
        document = {}
    document.update(
        {
            "machine": machine(),
            "code": measured_code(),
            "mode": "full" if args.full else "quick",
            "seed": args.seed,
            "period_seconds": PERIOD,
            "plain_swim": config_fields(PLAIN_SWIM),
        }
    )

    def write() -> None:
        document["claims"] = claims(document)
        document["wall_seconds_last_run"] = round(time.perf_counter() - started, 1)
        args.output.write_text(json.dumps(_finite(document), indent=1) + "\n")

    if parts - {"lifeguard"}:
        kept = {r["members"]: r for r in document.get("clusters", []) if isinstance(r, dict)}
        for size in settings.cluster_sizes:
            row = run_cluster_parts(size, args.seed, parts, settings)
            row["seed"], row["mode"] = args.seed, document["mode"]
            kept[size] = {**kept.get(size, {}), **row}
            document["clusters"] = [kept[n] for n in sorted(kept)]
            write()  # a long run keeps what it measured so far
    if "lifeguard" in parts:
        outcomes = []
        for plan in lifeguard_levels(settings, args.seed):
            for variant in LIFEGUARD_VARIANTS:
                outcomes.append(
                    run_lifeguard(
                        plan,
                        variant,
                        settings.lifeguard_members,
                        settings.lifeguard_duration,
                        args.seed,
                    )
                )
        document["lifeguard"] = {
            "members": settings.lifeguard_members,
            "duration_seconds": settings.lifeguard_duration,
            "delays_seconds": list(DELAYS),
            "variants": {k: config_fields(v) for k, v in LIFEGUARD_VARIANTS.items()},
            "seed": args.seed,
            "mode": document["mode"],
            "runs": [o.summary() for o in outcomes],
        }
    write()
    print(tables(document))
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
