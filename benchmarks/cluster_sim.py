"""Convergence, crash detection and load of whole clusters on SimNetwork.

For each cluster size: every member joins through the first one at the same
instant (a herd), and we measure the virtual time until every member sees
every other ALIVE. Then one newcomer joins through another member, and we
measure until it knows everyone and everyone knows it. Then we measure the
packets and bytes each member sends per protocol period in steady state, and
last we crash one member and measure the time until every survivor holds it
DEAD. Times are in protocol periods; wall seconds is what the run cost.

    python benchmarks/cluster_sim.py [--sizes 10 100 500] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio
import trio.testing

from trio_swim import Config, Member, Status
from trio_swim.testing import SimNetwork

STEADY_PERIODS = 40


def _all_see(members: list[Member], target: str, status: Status) -> bool:
    for member in members:
        if member.address == target:
            continue
        node = next((n for n in member.members() if n.address == target), None)
        if node is None or node.status is not status:
            return False
    return True


async def _wait(condition: Any, step: float, limit: float) -> float:
    start = trio.current_time()
    with trio.fail_after(limit):
        while not condition():
            await trio.sleep(step)
    return trio.current_time() - start


async def measure(size: int, seed: int) -> dict[str, Any]:
    """One cluster of ``size`` members: the figures of one table row."""
    net = SimNetwork(seed=seed, latency=0.001, jitter=0.001)
    period = Config().period
    async with AsyncExitStack() as stack:
        members = []
        for i in range(size):
            hosts = ["127.0.0.1:1"] if i else []
            cfg = Config(listen_port=1 + i, initial_hosts=hosts)
            members.append(await stack.enter_async_context(net.open_member(cfg)))
        converge = await _wait(
            lambda: all(len(m.healthy_members()) == size for m in members), period / 10, 600
        )
        await trio.sleep(5 * period)  # let the join gossip die down
        contact = f"127.0.0.1:{1 + size // 3}"
        newcomer_cfg = Config(listen_port=size + 1, initial_hosts=[contact])
        newcomer = await stack.enter_async_context(net.open_member(newcomer_cfg))
        members.append(newcomer)
        join = await _wait(
            lambda: all(len(m.healthy_members()) == size + 1 for m in members), period / 10, 600
        )
        await trio.sleep(5 * period)
        before = [m.statistics() for m in members]
        await trio.sleep(STEADY_PERIODS * period)
        after = [m.statistics() for m in members]
        packets = sum(a.packets_sent - b.packets_sent for a, b in zip(after, before, strict=True))
        sent = sum(a.bytes_sent - b.bytes_sent for a, b in zip(after, before, strict=True))
        victim = members[size // 2]
        net.crash(victim.address)
        crashed_at = trio.current_time()
        first_dead = None
        survivors = [m for m in members if m is not victim]
        while not _all_see(survivors, victim.address, Status.DEAD):
            if first_dead is None and any(
                next(n for n in m.members() if n.address == victim.address).status is Status.DEAD
                for m in survivors
            ):
                first_dead = trio.current_time() - crashed_at
            await trio.sleep(period / 10)
            if trio.current_time() - crashed_at > 600:
                raise RuntimeError("crash never detected")
        all_dead = trio.current_time() - crashed_at
    return {
        "members": size,
        "herd_converge_periods": round(converge / period, 2),
        "newcomer_join_periods": round(join / period, 2),
        "first_dead_periods": round((first_dead or all_dead) / period, 2),
        "all_dead_periods": round(all_dead / period, 2),
        "packets_per_member_period": round(packets / len(members) / STEADY_PERIODS, 2),
        "bytes_per_member_period": round(sent / len(members) / STEADY_PERIODS, 1),
    }


def run(size: int, seed: int) -> dict[str, Any]:
    """Measure one size under a mock clock, adding the wall time it took."""
    result: dict[str, Any] = {}

    async def main() -> None:
        result.update(await measure(size, seed))

    start = time.perf_counter()
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    result["wall_seconds"] = round(time.perf_counter() - start, 2)
    return result


def main() -> None:
    """Run every size, print the table, write cluster_sim.json beside this file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = [run(size, args.seed) for size in args.sizes]
    columns = list(rows[0])
    print(" | ".join(f"{c:>25}" if i else f"{c:>8}" for i, c in enumerate(columns)))
    for row in rows:
        print(
            " | ".join(f"{row[c]!s:>25}" if i else f"{row[c]!s:>8}" for i, c in enumerate(columns))
        )
    out = Path(__file__).with_suffix(".json")
    machine = {"python": platform.python_version(), "machine": platform.machine()}
    out.write_text(json.dumps({"machine": machine, "seed": args.seed, "rows": rows}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
