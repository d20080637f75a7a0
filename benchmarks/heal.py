"""Time to heal after a partition, on SimNetwork, in protocol periods.

For each cluster size ``n`` (20, 100 and 500 by default): ``n`` members join
through the first one; once every member sees every other ALIVE, the network
is cut into two halves. The cut is held for at least ``--hold`` periods (60)
and until the split is complete: every member holds every member of the
other half DEAD. It is held at most ``--max-split`` periods (360: with the
default retry settings a DEAD member is removed 383 periods after the
verdict, and a removed member is no longer retried); a split not complete
by then is reported as such and healed anyway. Then ``heal()``, with no call
to any member, and we wait until every member sees all ``n`` ALIVE again.

Measured, in periods of the default 250 ms:

* split: from the cut until the split is complete;
* heal: from ``heal()`` until one cluster again (every member sees every
  other ALIVE), to the period.

Default configuration, 1 ms latency plus up to 1 ms jitter, no loss. Each run
is seeded (the network and trio's task order), yet runs still differ a little:
trio also orders some wake-ups by object identity. The members' views are
followed through their event streams, so a poll costs O(n), not O(n^2).

    python benchmarks/heal.py [--sizes 20 100 500] [--seed 1]

It prints a table and writes ``heal.json`` beside this file. The n = 500 run
takes about five minutes of wall time on one core.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio
import trio.testing

from trio_swim import (
    Config,
    EventsMissed,
    EventStream,
    Member,
    MemberRemoved,
    Status,
    StatusChanged,
)
from trio_swim.testing import SimNetwork, seed_trio_scheduler

PERIOD = Config().period
JOIN_LIMIT_PERIODS = 2000
HEAL_LIMIT_PERIODS = 1000


class Views:
    """Every member's view, kept current from its events.

    Counts the (observer, subject) pairs that are ALIVE, and the pairs across
    the cut that are DEAD, so that checking a condition costs nothing.
    """

    def __init__(self, half: dict[str, int]) -> None:
        self.half = half
        self.status: dict[str, dict[str, Status]] = {}
        self.alive_pairs = 0
        self.cross_dead_pairs = 0

    def _count(self, observer: str, subject: str, status: Status | None, sign: int) -> None:
        if status is Status.ALIVE:
            self.alive_pairs += sign
        elif status is Status.DEAD and self.half[observer] != self.half[subject]:
            self.cross_dead_pairs += sign

    def _set(self, observer: str, subject: str, status: Status | None) -> None:
        view = self.status[observer]
        self._count(observer, subject, view.get(subject), -1)
        if status is None:
            view.pop(subject, None)
        else:
            view[subject] = status
        self._count(observer, subject, status, +1)

    def snapshot(self, member: Member) -> None:
        """(Re)read ``member``'s whole view."""
        observer = member.address
        for subject in list(self.status.get(observer, {})):
            self._set(observer, subject, None)
        self.status[observer] = {}
        for node in member.members():
            if node.address != observer:
                self._set(observer, node.address, node.status)

    async def follow(self, member: Member, stream: EventStream) -> None:
        """Apply ``member``'s events as they come."""
        async for event in stream:
            if isinstance(event, StatusChanged):
                self._set(member.address, event.node.address, event.status)
            elif isinstance(event, MemberRemoved):
                self._set(member.address, event.node.address, None)
            elif isinstance(event, EventsMissed):
                self.snapshot(member)


_started = time.perf_counter()


def _progress(n: int, text: str) -> None:
    print(f"  n={n}: {text} ({time.perf_counter() - _started:.0f} s wall)", file=sys.stderr)


async def _wait(condition: Any, limit_periods: int) -> float | None:
    """Periods until ``condition()`` (checked once a period); None past the limit."""
    start = trio.current_time()
    with trio.move_on_after(limit_periods * PERIOD):
        while not condition():
            await trio.sleep(PERIOD)
        return (trio.current_time() - start) / PERIOD
    return None


async def measure(n: int, seed: int, hold: int, max_split: int) -> dict[str, Any]:
    """One cluster of ``n`` members: the figures of one table row."""
    net = SimNetwork(seed=seed, latency=0.001, jitter=0.001)
    addresses = [f"127.0.0.1:{1 + i}" for i in range(n)]
    half = {a: (0 if i < n // 2 else 1) for i, a in enumerate(addresses)}
    views = Views(half)
    cross_total = 2 * (n // 2) * (n - n // 2)
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        members: list[Member] = []
        for i in range(n):
            config = Config(
                listen_port=1 + i,
                initial_hosts=[addresses[0]] if i else [],
                # Quick teardown; leaving is not measured.
                leave_timeout_millis=0,
            )
            member = await stack.enter_async_context(net.open_member(config))
            stream = member.events(buffer=10 * n)
            views.snapshot(member)
            nursery.start_soon(views.follow, member, stream)
            members.append(member)
        join = await _wait(lambda: views.alive_pairs == n * (n - 1), JOIN_LIMIT_PERIODS)
        if join is None:
            raise RuntimeError(f"n={n}: the cluster did not form")
        _progress(n, f"formed after {join:g} periods")

        net.partition(addresses[: n // 2], addresses[n // 2 :])
        cut_at = trio.current_time()
        split: int | None = None
        dead_after_hold = 0.0
        held = 0
        while held < max_split and (held < hold or split is None):
            held += 1
            await trio.sleep_until(cut_at + held * PERIOD)
            if split is None and views.cross_dead_pairs == cross_total:
                split = held
            if held == hold:
                dead_after_hold = views.cross_dead_pairs / cross_total
        not_dead_at_heal = cross_total - views.cross_dead_pairs
        _progress(n, f"cut held {held} periods, split complete after {split}")

        net.heal()
        heal = await _wait(lambda: views.alive_pairs == n * (n - 1), HEAL_LIMIT_PERIODS)
        if heal is None:
            raise RuntimeError(f"n={n}: no single cluster {HEAL_LIMIT_PERIODS} periods after heal")
        incarnations = sorted(m.node.incarnation for m in members)
        # Leaving closes every event stream, which ends the followers.
    return {
        "n": n,
        "join_periods": join,
        "split_periods": split,
        "held_periods": held,
        "cross_dead_after_hold": round(dead_after_hold, 4),
        "cross_pairs": cross_total,
        "cross_pairs_not_dead_at_heal": not_dead_at_heal,
        "heal_periods": heal,
        "incarnation_min": incarnations[0],
        "incarnation_max": incarnations[-1],
        "datagrams_delivered": net.delivered,
    }


def run(n: int, seed: int, hold: int, max_split: int) -> dict[str, Any]:
    """One seeded trio run in virtual time; adds the wall time it cost."""
    seed_trio_scheduler(seed)
    started = time.perf_counter()

    async def main() -> dict[str, Any]:
        return await measure(n, seed, hold, max_split)

    row = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    row["wall_seconds"] = round(time.perf_counter() - started, 1)
    return row


def table(rows: list[dict[str, Any]], hold: int, max_split: int) -> str:
    """The markdown table."""
    lines = [
        f"| n | DEAD across the cut after {hold} periods | split complete after (periods) "
        "| cut held (periods) | one cluster after heal() (periods) | wall s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        split = (
            f"> {max_split} ({r['cross_pairs_not_dead_at_heal']} of {r['cross_pairs']} not yet)"
            if r["split_periods"] is None
            else str(r["split_periods"])
        )
        lines.append(
            f"| {r['n']} | {100 * r['cross_dead_after_hold']:.1f}% | {split} "
            f"| {r['held_periods']} | {r['heal_periods']:g} | {r['wall_seconds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: measure each size, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hold", type=int, default=60, help="periods the cut lasts at least")
    parser.add_argument("--max-split", type=int, default=360, help="periods the cut lasts at most")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args(argv)
    if any(n < 2 for n in args.sizes) or args.hold < 0 or args.max_split < args.hold:
        parser.error("sizes must be >= 2 and 0 <= hold <= max-split")
    rows = []
    for n in args.sizes:
        row = run(n, args.seed, args.hold, args.max_split)
        print(
            f"n={n}: split {row['split_periods']}, heal {row['heal_periods']:g} periods "
            f"({row['wall_seconds']} s wall)",
            file=sys.stderr,
        )
        rows.append(row)
    print(table(rows, args.hold, args.max_split))
    report = {
        "seed": args.seed,
        "hold_periods": args.hold,
        "max_split_periods": args.max_split,
        "period_seconds": PERIOD,
        "latency_seconds": 0.001,
        "jitter_seconds": 0.001,
        "python": platform.python_version(),
        "rows": rows,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
