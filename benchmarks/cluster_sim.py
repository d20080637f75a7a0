"""Convergence, crash detection and load of whole clusters, simulated.

For each cluster size: every member joins through the first one at the same
instant (a herd), and we measure the virtual time until every member sees
every other ALIVE. Then one newcomer joins through another member, and we
measure until it knows everyone and everyone knows it. Then we measure the
packets and bytes each member sends per protocol period in steady state, and
last we crash one member and measure the time until every survivor holds it
DEAD. Times are in protocol periods; wall seconds is what the run cost.

Two engines run the same phases, polled on the same grid (every tenth of a
period): ``simulation`` (default) drives the protocol cores directly with
:class:`trio_swim.testing.Simulation`, no trio; ``simnetwork`` runs the real
trio members on :class:`trio_swim.testing.SimNetwork` under a mock clock.
The simulation engine also reports memory per simulated member: the growth
of the process's resident set size (RSS) from before the first member to the
converged cluster, divided by the cluster size (it includes the datagrams in
flight and the allocator's slack, so small clusters show mostly noise).

    python benchmarks/cluster_sim.py [--engine simulation|simnetwork]
                                     [--sizes 10 100 1000] [--seed 1]

Up to 1000 members on either engine; 10000 on the simulation engine only.
Progress (one line per phase, with wall time) goes to stderr; the table to
stdout; the rows to cluster_sim.json beside this file, where the rows of the
other engine from an earlier run are kept.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio
import trio.testing

from trio_swim import Config, MemberRemoved, Status, StatusChanged
from trio_swim.events import MemberEvent
from trio_swim.testing import SimMember, SimNetwork, Simulation, everyone_sees

STEADY_PERIODS = 40
LIMIT_SECONDS = 600.0
"""Virtual time allowed to each phase before the run is declared failed."""
ENGINES = ("simulation", "simnetwork")
MAX_SIZE = {"simulation": 10_000, "simnetwork": 1000}
PERIOD = Config().period
STEP = PERIOD / 10


class Progress:
    """Prints one line per phase of one cluster, with the wall time so far."""

    def __init__(self, engine: str, size: int) -> None:
        self._prefix = f"[{engine} n={size}]"
        self._start = time.perf_counter()

    def wall(self) -> float:
        """Wall seconds since this cluster started."""
        return time.perf_counter() - self._start

    def __call__(self, what: str) -> None:
        print(f"{self._prefix} {what} (wall {self.wall():.1f} s)", file=sys.stderr, flush=True)


def _row(
    size: int,
    converge: float,
    join: float,
    first_dead: float,
    all_dead: float,
    packets: int,
    sent: int,
    members: int,
) -> dict[str, Any]:
    return {
        "members": size,
        "herd_converge_periods": round(converge / PERIOD, 2),
        "newcomer_join_periods": round(join / PERIOD, 2),
        "first_dead_periods": round(first_dead / PERIOD, 2),
        "all_dead_periods": round(all_dead / PERIOD, 2),
        "packets_per_member_period": round(packets / members / STEADY_PERIODS, 2),
        "bytes_per_member_period": round(sent / members / STEADY_PERIODS, 1),
    }


# ------------------------------------------------------------ simulation


def _rss_bytes() -> int:
    """The resident set size now (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class _Watch:
    """What every member sees, kept up to date from its events (polling each
    member's table would cost O(n^2) per poll)."""

    def __init__(self) -> None:
        self.alive_others: dict[str, int] = {}
        """Per member: how many other members it holds ALIVE."""
        self.victim = ""
        self.holding_dead: set[str] = set()
        """Members that hold the victim DEAD now."""

    def handler(self, address: str) -> Callable[[float, MemberEvent], None]:
        self.alive_others[address] = 0
        alive = self.alive_others

        def on_event(_time: float, event: MemberEvent) -> None:
            if isinstance(event, StatusChanged):
                if event.status is Status.ALIVE:
                    if event.previous is not Status.ALIVE:
                        alive[address] += 1
                elif event.previous is Status.ALIVE:
                    alive[address] -= 1
                if event.node.address == self.victim:
                    if event.status is Status.DEAD:
                        self.holding_dead.add(address)
                    else:
                        self.holding_dead.discard(address)
            elif isinstance(event, MemberRemoved) and event.node.address == self.victim:
                self.holding_dead.discard(address)

        return on_event

    def converged(self, size: int) -> bool:
        return all(count == size - 1 for count in self.alive_others.values())


def measure_simulation(size: int, seed: int, progress: Progress) -> dict[str, Any]:
    """One cluster of ``size`` members on :class:`Simulation`: one table row."""
    gc.collect()
    rss_before = _rss_bytes()
    sim = Simulation(seed=seed, latency=0.001, jitter=0.001)
    watch = _Watch()

    def add(port: int, hosts: list[str]) -> SimMember:
        cfg = Config(listen_port=port, initial_hosts=hosts)
        return sim.add_member(cfg, on_event=watch.handler(f"127.0.0.1:{port}"))

    def wait(condition: Callable[[], bool], what: str) -> float:
        start = sim.now
        if not sim.run_until(condition, LIMIT_SECONDS, step=STEP):
            raise RuntimeError(f"n={size}: {what} not within {LIMIT_SECONDS} s")
        return sim.now - start

    members = [add(1 + i, ["127.0.0.1:1"] if i else []) for i in range(size)]
    progress(f"{size} members added")
    converge = wait(lambda: watch.converged(size), "herd convergence")
    progress(f"herd converged in {converge / PERIOD:.2f} periods")
    sim.run_for(5 * PERIOD)  # let the join gossip die down
    gc.collect()
    rss_per_member = (_rss_bytes() - rss_before) / size
    # The event counts must agree with the tables (checked on a sample).
    for member in members[:: max(1, size // 10)]:
        assert len(member.healthy_members()) == size, member
    members.append(add(size + 1, [f"127.0.0.1:{1 + size // 3}"]))
    join = wait(lambda: watch.converged(size + 1), "newcomer join")
    progress(f"newcomer joined in {join / PERIOD:.2f} periods")
    sim.run_for(5 * PERIOD)
    before = [m.statistics() for m in members]
    sim.run_for(STEADY_PERIODS * PERIOD)
    after = [m.statistics() for m in members]
    packets = sum(a.packets_sent - b.packets_sent for a, b in zip(after, before, strict=True))
    sent = sum(a.bytes_sent - b.bytes_sent for a, b in zip(after, before, strict=True))
    progress(f"{STEADY_PERIODS} periods of steady state measured")
    victim = members[size // 2]
    watch.victim = victim.address
    sim.crash(victim.address)
    crashed_at = sim.now
    first_dead = None
    while len(watch.holding_dead) < len(members) - 1:
        if first_dead is None and watch.holding_dead:
            first_dead = sim.now - crashed_at
        sim.run_for(STEP)
        if sim.now - crashed_at > LIMIT_SECONDS:
            raise RuntimeError("crash never detected")
    all_dead = sim.now - crashed_at
    survivors = [m for m in members if m is not victim]
    assert everyone_sees(survivors[:: max(1, size // 10)], victim.address, Status.DEAD)
    progress(f"DEAD everywhere in {all_dead / PERIOD:.2f} periods")
    row = _row(size, converge, join, first_dead or all_dead, all_dead, packets, sent, len(members))
    row["rss_kib_per_member"] = round(rss_per_member / 1024, 1)
    return row


# ------------------------------------------------------------ simnetwork


async def _wait(condition: Any, step: float, limit: float) -> float:
    start = trio.current_time()
    with trio.fail_after(limit):
        while not condition():
            await trio.sleep(step)
    return trio.current_time() - start


async def measure_simnetwork(size: int, seed: int, progress: Progress) -> dict[str, Any]:
    """One cluster of ``size`` real members on :class:`SimNetwork`: one table row."""
    net = SimNetwork(seed=seed, latency=0.001, jitter=0.001)
    async with AsyncExitStack() as stack:
        members = []
        for i in range(size):
            hosts = ["127.0.0.1:1"] if i else []
            cfg = Config(listen_port=1 + i, initial_hosts=hosts)
            members.append(await stack.enter_async_context(net.open_member(cfg)))
        progress(f"{size} members started")
        converge = await _wait(
            lambda: all(len(m.healthy_members()) == size for m in members), STEP, LIMIT_SECONDS
        )
        progress(f"herd converged in {converge / PERIOD:.2f} periods")
        await trio.sleep(5 * PERIOD)  # let the join gossip die down
        contact = f"127.0.0.1:{1 + size // 3}"
        newcomer_cfg = Config(listen_port=size + 1, initial_hosts=[contact])
        newcomer = await stack.enter_async_context(net.open_member(newcomer_cfg))
        members.append(newcomer)
        join = await _wait(
            lambda: all(len(m.healthy_members()) == size + 1 for m in members), STEP, LIMIT_SECONDS
        )
        progress(f"newcomer joined in {join / PERIOD:.2f} periods")
        await trio.sleep(5 * PERIOD)
        before = [m.statistics() for m in members]
        await trio.sleep(STEADY_PERIODS * PERIOD)
        after = [m.statistics() for m in members]
        packets = sum(a.packets_sent - b.packets_sent for a, b in zip(after, before, strict=True))
        sent = sum(a.bytes_sent - b.bytes_sent for a, b in zip(after, before, strict=True))
        progress(f"{STEADY_PERIODS} periods of steady state measured")
        victim = members[size // 2]
        net.crash(victim.address)
        crashed_at = trio.current_time()
        first_dead = None
        survivors = [m for m in members if m is not victim]
        while not everyone_sees(survivors, victim.address, Status.DEAD):
            if first_dead is None and any(
                next(n for n in m.members() if n.address == victim.address).status is Status.DEAD
                for m in survivors
            ):
                first_dead = trio.current_time() - crashed_at
            await trio.sleep(STEP)
            if trio.current_time() - crashed_at > LIMIT_SECONDS:
                raise RuntimeError("crash never detected")
        all_dead = trio.current_time() - crashed_at
        progress(f"DEAD everywhere in {all_dead / PERIOD:.2f} periods")
    return _row(size, converge, join, first_dead or all_dead, all_dead, packets, sent, len(members))


# ------------------------------------------------------------------ main


def run(engine: str, size: int, seed: int) -> dict[str, Any]:
    """Measure one size on one engine, adding the wall time it took."""
    progress = Progress(engine, size)
    result: dict[str, Any] = {"engine": engine, "seed": seed}
    if engine == "simulation":
        result.update(measure_simulation(size, seed, progress))
    else:

        async def main() -> None:
            result.update(await measure_simnetwork(size, seed, progress))

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    result["wall_seconds"] = round(progress.wall(), 2)
    return result


def _merge(out: Path, engine: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This run's rows, after the other engines' rows of the file's last version."""
    try:
        old = json.loads(out.read_text()).get("rows", [])
    except (OSError, ValueError, AttributeError):
        old = []
    # Rows written before there were engines came from SimNetwork.
    kept = [r for r in old if isinstance(r, dict) and r.get("engine", "simnetwork") != engine]
    return kept + rows


def main() -> None:
    """Run every size, print the table, write cluster_sim.json beside this file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=ENGINES, default="simulation")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for size in args.sizes:
        if not 2 <= size <= MAX_SIZE[args.engine]:
            parser.error(f"--sizes: {size} is not 2..{MAX_SIZE[args.engine]} on {args.engine}")
    rows = [run(args.engine, size, args.seed) for size in args.sizes]
    columns = [c for c in rows[0] if c not in ("engine", "seed")]
    print(f"engine: {args.engine}, seed: {args.seed}")
    print(" | ".join(f"{c:>25}" if i else f"{c:>8}" for i, c in enumerate(columns)))
    for row in rows:
        print(
            " | ".join(f"{row[c]!s:>25}" if i else f"{row[c]!s:>8}" for i, c in enumerate(columns))
        )
    out = Path(__file__).with_suffix(".json")
    machine = {"python": platform.python_version(), "machine": platform.machine()}
    document = {"machine": machine, "seed": args.seed, "rows": _merge(out, args.engine, rows)}
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
