"""False positives and crash detection, Lifeguard on vs. off, on SimNetwork.

The experiment of the Lifeguard paper, in virtual time: ``n`` members (100 by
default) at a 250 ms period; a few of them are made slow for set durations
(their receive path delayed, their send path delayed, or their network frozen
as by a long GC pause), or every datagram has a 10% chance of being lost. In
every run a few healthy members also crash for real. Each scenario runs once
per protocol variant on the same seed and the same fault schedule:

* ``swim``: plain SWIM (``lifeguard=False``, fixed 100 ms ack timeout);
* ``lifeguard``: local health, nacks, dynamic suspicion and the buddy
  system (with this library's additions: re-check of an under-confirmed
  suspicion, refutations repeated to whoever still spreads the suspicion),
  fixed ack timeout;
* ``lifeguard+rtt``: the default ``Config()``: the above plus the adaptive
  ack timeout.

Counted:

* false DEAD events: a ``StatusChanged`` to DEAD, at any member that is
  running, about a member that has not crashed. ``healthy`` counts those
  about members never made slow (the false positives Lifeguard is about:
  a slow member blaming others); ``slow`` counts those about the slow
  members themselves (a member frozen for seconds does look dead);
* verdicts: distinct (member, incarnation) pairs among the healthy ones;
* detection: for each real crash, the time from the crash to DEAD at every
  surviving member (median, 99th percentile, max over all such pairs; and
  the 99th percentile over the survivors never made slow, since a frozen
  member hears of a crash only when it thaws).

Run ``python benchmarks/false_positives.py`` (about ten minutes of wall time
on one core); ``--duration 30`` for a quick look, ``--members 20
--scenario loss-20%`` for the setting of the real-socket experiment. It
prints a table and writes ``false_positives.json`` beside this file.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import trio
import trio.testing

from trio_swim import Config, Member, Status, StatusChanged
from trio_swim.testing import SimNetwork, seed_trio_scheduler

from _common import count_verdicts, quantile

HOST = "127.0.0.1"
FIRST_PORT = 10_000
WARMUP = 15.0
"""Virtual seconds for the cluster to form before faults start."""
DRAIN = 20.0
"""Virtual seconds after the last fault, so late verdicts are counted."""

VARIANTS: dict[str, dict[str, object]] = {
    "swim": {"lifeguard": False, "adaptive_probe_timeout": False},
    "lifeguard": {"lifeguard": True, "adaptive_probe_timeout": False},
    "lifeguard+rtt": {},
}


@dataclass(frozen=True)
class Scenario:
    """One kind of fault, applied to ``slow`` members (or to the whole network)."""

    name: str
    description: str
    mode: str
    """``recv``, ``send`` or ``pause`` (slow members), or ``loss`` (everyone)."""
    levels: tuple[float, ...] = ()
    """Delays or pause lengths (seconds) the slow episodes draw from."""
    loss: float = 0.0


SCENARIOS = (
    Scenario(
        "recv-slow",
        "5 members' receive path delayed 0.5-8 s in episodes of 5-20 s",
        "recv",
        (0.5, 1.0, 2.0, 4.0, 8.0),
    ),
    Scenario(
        "send-slow",
        "5 members' send path delayed 0.5-8 s in episodes of 5-20 s",
        "send",
        (0.5, 1.0, 2.0, 4.0, 8.0),
    ),
    Scenario(
        "pause",
        "5 members frozen 0.5-8 s at a time (GC-like), 2-10 s apart",
        "pause",
        (0.5, 1.0, 2.0, 4.0, 8.0),
    ),
    Scenario("loss-10%", "10% of all datagrams lost", "loss", loss=0.10),
    Scenario("loss-5%", "5% of all datagrams lost", "loss", loss=0.05),
    Scenario("loss-20%", "20% of all datagrams lost", "loss", loss=0.20),
)
DEFAULT_SCENARIOS = ("recv-slow", "send-slow", "pause", "loss-10%")


@dataclass
class Outcome:
    """What one (scenario, variant) run measured."""

    scenario: str
    variant: str
    false_dead_healthy: int = 0
    false_dead_slow: int = 0
    false_verdicts_healthy: int = 0
    false_suspect_healthy: int = 0
    detections: list[float] = field(default_factory=list)
    """Crash to DEAD, per (crash, surviving member)."""
    healthy_detections: list[float] = field(default_factory=list)
    """The same, for the survivors that were never made slow."""
    undetected: int = 0
    max_local_health: int = 0
    """Highest local health score seen at a member still running (sampled each second)."""
    wall_seconds: float = 0.0

    def detection(self, q: float) -> float:
        """The ``q`` quantile of detection times (nan without any)."""
        return quantile(self.detections, q)


@dataclass(frozen=True)
class Plan:
    """The fault schedule of one scenario, shared by every variant."""

    slow: list[str]
    episodes: dict[str, list[tuple[float, float, float]]]
    """Per slow member: (start, length, level) in seconds after warm-up."""
    crashes: list[tuple[float, str]]
    """(seconds after warm-up, member) crashes."""


def make_plan(scenario: Scenario, n: int, slow_count: int, duration: float, seed: int) -> Plan:
    """Pick slow members, their episodes and the crash victims from ``seed``."""
    rng = random.Random(f"{seed}/{scenario.name}")
    addresses = [f"{HOST}:{FIRST_PORT + i}" for i in range(n)]
    # The first member is everyone's seed; keep it out of the faults.
    candidates = addresses[1:]
    slow = [] if scenario.mode == "loss" else rng.sample(candidates, slow_count)
    episodes: dict[str, list[tuple[float, float, float]]] = {}
    for member in slow:
        t = rng.uniform(0, 5)
        runs = []
        while t < duration:
            level = rng.choice(scenario.levels)
            if scenario.mode == "pause":
                length, gap = level, rng.uniform(2, 10)
            else:
                length, gap = rng.uniform(5, 20), rng.uniform(5, 15)
            runs.append((t, min(length, duration - t), level))
            t += length + gap
        episodes[member] = runs
    healthy = [a for a in candidates if a not in slow]
    victims = rng.sample(healthy, 3)
    crashes = [(duration * (i + 1) / 4, victim) for i, victim in enumerate(victims)]
    return Plan(slow, episodes, crashes)


async def _apply_episodes(
    net: SimNetwork, mode: str, member: str, runs: list[tuple[float, float, float]], t0: float
) -> None:
    for start, length, level in runs:
        await trio.sleep_until(t0 + start)
        if mode == "pause":
            net.pause(member, level)
            continue
        if mode == "recv":
            net.set_delay(member, inbound=level)
        else:
            net.set_delay(member, outbound=level)
        await trio.sleep(length)
        net.set_delay(member, inbound=0.0, outbound=0.0)


async def _record(
    member: Member, log: list[tuple[float, str, str, Status, int]], stream: AsyncIterator[object]
) -> None:
    async for event in stream:
        if isinstance(event, StatusChanged):
            log.append(
                (
                    trio.current_time(),
                    member.address,
                    event.node.address,
                    event.status,
                    event.node.incarnation,
                )
            )


async def run_one(
    scenario: Scenario, variant: str, plan: Plan, n: int, duration: float, seed: int
) -> Outcome:
    """Run one scenario with one protocol variant; return what was measured."""
    settings = VARIANTS[variant]
    net = SimNetwork(seed=seed, latency=0.0005, jitter=0.002)
    log: list[tuple[float, str, str, Status, int]] = []
    members: list[Member] = []
    health = 0
    async with AsyncExitStack() as stack:
        for i in range(n):
            hosts = [f"{HOST}:{FIRST_PORT}"] if i else []
            config = Config(listen_port=FIRST_PORT + i, initial_hosts=hosts, **settings)  # type: ignore[arg-type]
            members.append(await stack.enter_async_context(net.open_member(config)))
        await trio.sleep(WARMUP)
        formed = min(len(m.healthy_members()) for m in members)
        if formed != n:
            raise RuntimeError(f"cluster did not form: {formed}/{n}")
        t0 = trio.current_time()
        crashed_at: dict[str, float] = {}
        async with trio.open_nursery() as nursery:
            for member in members:
                nursery.start_soon(_record, member, log, member.events(buffer=100_000))
            net.set_loss(scenario.loss)
            for slow_member, runs in plan.episodes.items():
                nursery.start_soon(_apply_episodes, net, scenario.mode, slow_member, runs, t0)
            for at, victim in plan.crashes:
                await trio.sleep_until(t0 + at)
                net.crash(victim)
                crashed_at[victim] = trio.current_time()
            end = t0 + duration + DRAIN
            while trio.current_time() < end:
                await trio.sleep(1.0)
                running = [m for m in members if m.address not in crashed_at]
                health = max(health, *(m.statistics().local_health for m in running))
            nursery.cancel_scope.cancel()
        net.set_loss(0.0)
    addresses = [m.address for m in members]
    return summarise(scenario, variant, plan, addresses, log, crashed_at, health)


def summarise(
    scenario: Scenario,
    variant: str,
    plan: Plan,
    addresses: list[str],
    log: list[tuple[float, str, str, Status, int]],
    crashed_at: dict[str, float],
    health: int,
) -> Outcome:
    """Turn the event log into counts and detection times."""
    out = Outcome(scenario.name, variant, max_local_health=health)
    slow = set(plan.slow)
    counted = count_verdicts(log, crashed_at, slow)
    out.false_dead_slow = counted.false_dead_slow
    out.false_dead_healthy = counted.false_dead_healthy
    out.false_suspect_healthy = counted.false_suspect_healthy
    out.false_verdicts_healthy = counted.false_verdicts_healthy
    first_dead = counted.dead_after
    survivors = [a for a in addresses if a not in crashed_at]
    for victim in crashed_at:
        for observer in survivors:
            took = first_dead.get((observer, victim))
            if took is None:
                out.undetected += 1
            else:
                out.detections.append(took)
                if observer not in slow:
                    out.healthy_detections.append(took)
    return out


def run_variant(
    scenario: Scenario, variant: str, plan: Plan, n: int, duration: float, seed: int
) -> Outcome:
    """One trio run in virtual time, with trio's scheduling order seeded too."""
    seed_trio_scheduler(seed)
    started = time.perf_counter()

    async def main() -> Outcome:
        return await run_one(scenario, variant, plan, n, duration, seed)

    outcome = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    outcome.wall_seconds = round(time.perf_counter() - started, 1)
    return outcome


def ratio(plain: float, better: float) -> str:
    """``plain / better`` as text; ``>= plain`` when ``better`` is zero."""
    if better == 0:
        return "-" if plain == 0 else f">={plain:g}x"
    return f"{plain / better:.1f}x"


def table(outcomes: list[Outcome]) -> str:
    """The markdown table of every run."""
    lines = [
        "| scenario | variant | false DEAD (healthy) | verdicts | false DEAD (slow) "
        "| false SUSPECT | detect p50 s | p99 s | max s | p99 not slow s | missed | max LHM |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.scenario} | {o.variant} | {o.false_dead_healthy} | {o.false_verdicts_healthy} "
            f"| {o.false_dead_slow} | {o.false_suspect_healthy} | {o.detection(0.5):.2f} "
            f"| {o.detection(0.99):.2f} | {max(o.detections, default=math.nan):.2f} "
            f"| {quantile(o.healthy_detections, 0.99):.2f} | {o.undetected} "
            f"| {o.max_local_health} |"
        )
    return "\n".join(lines)


def comparison(outcomes: list[Outcome], best: str) -> str:
    """Plain SWIM against ``best``: false-positive and detection ratios."""
    by_key = {(o.scenario, o.variant): o for o in outcomes}
    lines = [
        f"| scenario | false DEAD swim / {best} | detect p50 {best} / swim "
        f"| detect p99 {best} / swim |",
        "|---|---:|---:|---:|",
    ]
    totals = [0, 0]
    for scenario in dict.fromkeys(o.scenario for o in outcomes):
        plain, lg = by_key.get((scenario, "swim")), by_key.get((scenario, best))
        if plain is None or lg is None:
            continue
        totals[0] += plain.false_dead_healthy
        totals[1] += lg.false_dead_healthy
        lines.append(
            f"| {scenario} | {plain.false_dead_healthy} / {lg.false_dead_healthy} = "
            f"{ratio(plain.false_dead_healthy, lg.false_dead_healthy)} "
            f"| {lg.detection(0.5) / plain.detection(0.5):.2f} "
            f"| {lg.detection(0.99) / plain.detection(0.99):.2f} |"
        )
    lines.append(f"| all | {totals[0]} / {totals[1]} = {ratio(totals[0], totals[1])} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: run the chosen scenarios and variants, print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--slow", type=int, default=5, help="slow members per scenario")
    parser.add_argument("--duration", type=float, default=120.0, help="virtual seconds of faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", action="append", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--variant", action="append", choices=list(VARIANTS))
    parser.add_argument("--output", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args(argv)
    chosen = args.scenario or DEFAULT_SCENARIOS
    scenarios = [s for s in SCENARIOS if s.name in chosen]
    variants = args.variant or list(VARIANTS)
    outcomes: list[Outcome] = []
    for scenario in scenarios:
        plan = make_plan(scenario, args.members, args.slow, args.duration, args.seed)
        for variant in variants:
            outcome = run_variant(scenario, variant, plan, args.members, args.duration, args.seed)
            outcomes.append(outcome)
            print(
                f"{scenario.name:10} {variant:14} false DEAD {outcome.false_dead_healthy:5} "
                f"detect p50 {outcome.detection(0.5):.2f} s  ({outcome.wall_seconds} s wall)",
                file=sys.stderr,
            )
    print(table(outcomes))
    best = variants[-1]
    if "swim" in variants and best != "swim":
        print()
        print(comparison(outcomes, best))
    report = {
        "members": args.members,
        "slow_members": args.slow,
        "duration": args.duration,
        "seed": args.seed,
        "period": Config().period,
        "scenarios": {s.name: s.description for s in scenarios},
        "runs": [
            {
                **{
                    k: v
                    for k, v in asdict(o).items()
                    if k not in ("detections", "healthy_detections")
                },
                "detect_p50": o.detection(0.5),
                "detect_p99": o.detection(0.99),
                "detect_max": max(o.detections, default=math.nan),
                "detections": len(o.detections),
                "detect_p99_not_slow": quantile(o.healthy_detections, 0.99),
            }
            for o in outcomes
        ],
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
