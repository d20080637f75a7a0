"""A newcomer's time to a full view of the cluster: TCP push-pull vs chunked UDP.

Every member carries 512 bytes of metadata (``Config.metadata``, distinct per
member, the default ``max_metadata_bytes``), so a full state of ``n`` members
is about ``n`` x 550 bytes: 0.27 MB at n = 500, some 250 datagrams of at most
1400 bytes (two records each), or one TCP frame.

For each cluster size ``n`` (50, 200, 500) and seed, on
:class:`trio_swim.testing.Simulation` (no trio; 1 ms latency plus up to 1 ms
jitter): ``n`` members join through the first one, with no loss, and we wait
until the cluster has converged (every member holds every other ALIVE,
checked with :func:`trio_swim.testing.converged`, and every member holds
every other's metadata) and let it settle for five periods. Then, for each
UDP loss rate (0, then 5%), the loss is set and the cluster runs 40 periods
under it, and two newcomers come in turn, one per transport, each joining
through a member of its own:

* ``tcp``: the simulation carries TCP streams, so the join is one push-pull
  exchange over a stream;
* ``udp``: the simulation refuses every TCP exchange at once (what
  ``Simulation(streams=False)`` does, here switched on the running cluster
  through its ``streams`` attribute), so the join falls back to ``Sync``
  datagrams, the state split over as many as it takes.

The cluster is built once per size and seed, with no loss, for both loss
rates: a build of 500 members costs about 45 s of wall time (the records'
metadata makes the build's gossip heavy), and what is measured is the
newcomer's join into a converged cluster, not the build.

A newcomer is measured from its start until its view holds all ``n`` members
ALIVE with their metadata (``node.metadata`` equal to what each was started
with); also until it first held every member's record with its metadata,
ALIVE or SUSPECT (under loss, a member some prober suspects for a moment
delays the first measure but not the second). Then it leaves, and once no
member holds it ALIVE or SUSPECT and 20 more periods passed, the next one
starts. Which transport goes first alternates with the seed.

Reported per run: the times, in seconds and in protocol periods (250 ms);
the datagrams and stream frames and the bytes the newcomer received until
then (``statistics()``: ``packets_received`` and ``bytes_received`` count
stream frames too); its completed and failed TCP exchanges; and the rounds:
bursts of records the newcomer held for the first time, a new round starting
when more than one period passed with no new record (the first full state,
then each later exchange that filled what was lost). Per size, loss and
transport: median, min and max over the seeds, and the ratio of the UDP time
to the TCP time, seed by seed.

The simulation carries a stream leg in one latency, whatever its size, and a
datagram likewise, and UDP loss does not touch streams (TCP retransmits):
there is no bandwidth in the model, so this compares round trips and losses,
not throughput.

    python benchmarks/join_state.py [--quick] [--sizes 50 200 500]
                                    [--losses 0 0.05] [--seeds 1 2 3 4 5]

The default run (five seeds) takes about six minutes on one idle core, most
of it building the five clusters of 500; ``--quick`` is 50 and 200 members,
two seeds, in under a minute. Progress goes to stderr, the table to stdout,
everything to ``join_state.json`` beside this file (``--output`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trio_swim import Config, MemberRemoved, MetadataChanged, Status, StatusChanged
from trio_swim.events import MemberEvent
from trio_swim.testing import SimMember, Simulation, converged, status_seen

from _common import code_state, log, machine

PERIOD = Config().period
STEP = PERIOD / 10
METADATA_BYTES = 512
LATENCY = 0.001
JITTER = 0.001
SETTLE_PERIODS = 5
WARMUP_PERIODS = 40
"""Periods the cluster runs at a new loss rate before the newcomers come."""
BUILD_LIMIT = 600.0
"""Virtual seconds the cluster may take to converge."""
JOIN_LIMIT = 300.0
"""Virtual seconds a newcomer may take to a full view before it is reported as not done."""
LEAVE_LIMIT = 120.0
"""Virtual seconds for every member to hold a newcomer that left as LEFT."""
TRANSPORTS = ("tcp", "udp")
LIVE = (Status.ALIVE, Status.SUSPECT)


def metadata_of(seed: int, index: int) -> bytes:
    """The metadata of member ``index``: exactly 512 bytes, distinct, reproducible."""
    head = f"member-{index:05d};".encode()
    body = random.Random(f"{seed}/metadata/{index}").randbytes(METADATA_BYTES)
    return (head + body)[:METADATA_BYTES]


class AliveCounts:
    """How many others each member holds ALIVE, kept from its events (polling
    every table would cost O(n^2) per poll)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def handler(self, address: str) -> Callable[[float, MemberEvent], None]:
        """The ``on_event`` of the member at ``address``."""
        self.counts[address] = 0
        counts = self.counts

        def on_event(_time: float, event: MemberEvent) -> None:
            if isinstance(event, StatusChanged):
                if event.status is Status.ALIVE and event.previous is not Status.ALIVE:
                    counts[address] += 1
                elif event.status is not Status.ALIVE and event.previous is Status.ALIVE:
                    counts[address] -= 1
            elif isinstance(event, MemberRemoved) and event.node.status is Status.ALIVE:
                counts[address] -= 1

        return on_event

    def all_see(self, members: list[SimMember], others: int) -> bool:
        """True if each of ``members`` holds ``others`` other members ALIVE."""
        counts = self.counts
        return all(counts[m.address] == others for m in members)


class FullView:
    """Follows one newcomer's events: which of the expected members it holds
    ALIVE with the expected metadata, and when it first held each record."""

    def __init__(self, expected: dict[str, bytes]) -> None:
        self.expected = expected
        self.complete: set[str] = set()
        """Held ALIVE with the expected metadata now."""
        self.first_held: dict[str, float] = {}
        """When each record was first held with its metadata (ALIVE or SUSPECT)."""
        self.all_held_at: float | None = None
        """When every record was first held with its metadata."""
        self.suspicions = 0
        """Times a member held ALIVE with its metadata went SUSPECT (or worse)."""

    def on_event(self, time_now: float, event: MemberEvent) -> None:
        """The newcomer's ``on_event``."""
        if not isinstance(event, StatusChanged | MetadataChanged | MemberRemoved):
            return
        node = event.node
        wanted = self.expected.get(node.address)
        if wanted is None:
            return
        held = not isinstance(event, MemberRemoved) and node.metadata == wanted
        if held and node.status in LIVE and node.address not in self.first_held:
            self.first_held[node.address] = time_now
            if len(self.first_held) == len(self.expected):
                self.all_held_at = time_now
        if held and node.status is Status.ALIVE:
            self.complete.add(node.address)
        elif node.address in self.complete:
            self.complete.discard(node.address)
            self.suspicions += 1

    def done(self) -> bool:
        """True once every expected member is held ALIVE with its metadata."""
        return len(self.complete) == len(self.expected)

    def rounds(self) -> list[tuple[float, int]]:
        """When each round began and how many records it brought for the first
        time: a round ends when more than one period passes with no new record."""
        rounds: list[tuple[float, int]] = []
        last = None
        for moment in sorted(self.first_held.values()):
            if last is None or moment - last > PERIOD:
                rounds.append((moment, 0))
            rounds[-1] = (rounds[-1][0], rounds[-1][1] + 1)
            last = moment
        return rounds


def holds_full_view(member: SimMember, expected: dict[str, bytes]) -> bool:
    """Checked on the table itself: ``member`` holds every expected member
    ALIVE with the expected metadata."""
    held = {node.address: node for node in member.members()}
    for address, metadata in expected.items():
        node = held.get(address)
        if node is None or node.status is not Status.ALIVE or node.metadata != metadata:
            return False
    return True


def wait(sim: Simulation, condition: Callable[[], bool], limit: float, what: str) -> float:
    """Run until ``condition`` holds (checked every tenth of a period); the virtual time it took."""
    start = sim.now
    if not sim.run_until(condition, limit, step=STEP):
        raise RuntimeError(f"{what}: not within {limit} s of virtual time")
    return sim.now - start


def build(
    n: int, seed: int
) -> tuple[Simulation, list[SimMember], dict[str, bytes], dict[str, Any]]:
    """A converged cluster of ``n`` members with metadata, built with no loss
    and settled; the metadata of each member; what the build took."""
    wall = time.perf_counter()
    sim = Simulation(seed=seed, latency=LATENCY, jitter=JITTER, streams=True)
    alive = AliveCounts()
    members = []
    for i in range(n):
        config = Config(
            listen_port=1 + i,
            initial_hosts=["127.0.0.1:1"] if i else [],
            metadata=metadata_of(seed, i),
        )
        members.append(sim.add_member(config, on_event=alive.handler(f"127.0.0.1:{1 + i}")))
    took = wait(sim, lambda: alive.all_see(members, n - 1), BUILD_LIMIT, f"n={n} convergence")
    sim.run_for(SETTLE_PERIODS * PERIOD)
    if not converged(members):
        raise RuntimeError(f"n={n}: the event counts said converged, the tables do not")
    expected = {m.address: metadata_of(seed, i) for i, m in enumerate(members)}
    lacking = sum(not holds_full_view(m, expected) for m in members)
    if lacking:
        raise RuntimeError(f"n={n}: {lacking} members converged without everyone's metadata")
    info = {
        "converge_seconds": round(took, 3),
        "converge_periods": round(took / PERIOD, 1),
        "build_wall_seconds": round(time.perf_counter() - wall, 1),
        "datagrams_delivered": sim.delivered,
        "datagrams_dropped": sim.dropped,
    }
    return sim, members, expected, info


def measure_newcomer(
    sim: Simulation,
    members: list[SimMember],
    expected: dict[str, bytes],
    transport: str,
    port: int,
    contact: SimMember,
    seed: int,
) -> dict[str, Any]:
    """One newcomer joins ``contact``; measured until it holds everyone with metadata."""
    n = len(members)
    sim.streams = transport == "tcp"
    view = FullView(expected)
    config = Config(
        listen_port=port, initial_hosts=[contact.address], metadata=metadata_of(seed, port - 1)
    )
    start = sim.now
    newcomer = sim.add_member(config, on_event=view.on_event)
    done = sim.run_until(view.done, JOIN_LIMIT)  # O(1) predicate: checked at every instant
    took = sim.now - start
    stats = newcomer.statistics()
    if done and not holds_full_view(newcomer, expected):
        raise RuntimeError(f"n={n} {transport}: the events said complete, the table does not")
    rounds = view.rounds()
    row: dict[str, Any] = {
        "transport": transport,
        "done": done,
        "seconds": round(took, 4) if done else None,
        "periods": round(took / PERIOD, 3) if done else None,
        "members_complete": len(view.complete),
        "all_records_seconds": (
            None if view.all_held_at is None else round(view.all_held_at - start, 4)
        ),
        "suspicions_seen": view.suspicions,
        "rounds": len(rounds),
        "records_per_round": [count for _, count in rounds],
        "round_start_seconds": [round(moment - start, 4) for moment, _ in rounds],
        "received_packets": stats.packets_received,
        "received_bytes": stats.bytes_received,
        "sent_packets": stats.packets_sent,
        "sent_bytes": stats.bytes_sent,
        "stream_exchanges": stats.stream_exchanges,
        "stream_failures": stats.stream_failures,
    }
    # Leave, and wait until the cluster is quiet again for the next newcomer.
    sim.close(newcomer.address)
    gone = newcomer.address

    def nobody_holds_it_live() -> bool:
        return not any(status_seen(m, gone) in LIVE for m in members)

    wait(sim, nobody_holds_it_live, LEAVE_LIMIT, f"n={n} {transport} newcomer's leave")
    sim.run_for(4 * SETTLE_PERIODS * PERIOD)
    sim.streams = True
    return row


def run_cluster(n: int, seed: int, losses: list[float]) -> list[dict[str, Any]]:
    """Build one cluster; at each loss, measure one newcomer per transport on it."""
    wall = time.perf_counter()
    sim, members, expected, info = build(n, seed)
    log(
        f"[n={n} seed={seed}] converged in {info['converge_periods']} periods "
        f"(wall {info['build_wall_seconds']} s)"
    )
    order = TRANSPORTS if seed % 2 else TRANSPORTS[::-1]
    rows = []
    newcomers = 0
    for loss in losses:
        label = f"[n={n} seed={seed} loss={loss:g}]"
        sim.set_loss(loss)
        sim.run_for(WARMUP_PERIODS * PERIOD)
        for k, transport in enumerate(order):
            newcomers += 1
            contact = members[newcomers * n // (2 * len(losses) + 1)]
            row = measure_newcomer(sim, members, expected, transport, n + newcomers, contact, seed)
            row = {"n": n, "loss": loss, "seed": seed, "order": k + 1, **row, **info}
            rows.append(row)
            took = f"{row['periods']} periods" if row["done"] else f"not within {JOIN_LIMIT} s"
            log(
                f"{label} {transport}: full view in {took}, {row['rounds']} rounds, "
                f"{row['received_packets']} received, {row['received_bytes'] / 1024:.0f} KiB "
                f"(wall {time.perf_counter() - wall:.1f} s)"
            )
    return rows


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def _ratios(by_seed: dict[int, dict[str, dict[str, Any]]], column: str) -> list[float]:
    """UDP over TCP of ``column``, for each seed where both have it."""
    return [
        pair["udp"][column] / pair["tcp"][column]
        for pair in by_seed.values()
        if pair.get("udp", {}).get(column) and pair.get("tcp", {}).get(column)
    ]


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size, loss and transport: median, min, max over the seeds; and the
    UDP/TCP time ratios, paired by seed."""
    out = []
    keys = sorted({(r["n"], r["loss"]) for r in runs})
    for n, loss in keys:
        mine = [r for r in runs if r["n"] == n and r["loss"] == loss]
        by_seed: dict[int, dict[str, dict[str, Any]]] = {}
        for r in mine:
            by_seed.setdefault(r["seed"], {})[r["transport"]] = r
        for transport in TRANSPORTS:
            rows = [r for r in mine if r["transport"] == transport]
            entry: dict[str, Any] = {
                "n": n,
                "loss": loss,
                "transport": transport,
                "seeds": len(rows),
                "not_done": sum(not r["done"] for r in rows),
            }
            for column in ("seconds", "periods", "all_records_seconds"):
                values = [r[column] for r in rows if r[column] is not None]
                entry[column] = _spread(values) if values else None
            entry["first_round_records"] = _spread([r["records_per_round"][0] for r in rows])
            for column in (
                "rounds",
                "received_packets",
                "received_bytes",
                "stream_exchanges",
                "stream_failures",
                "suspicions_seen",
            ):
                entry[column] = _spread([r[column] for r in rows])
            if transport == "udp":
                for name, column in (
                    ("udp_over_tcp", "seconds"),
                    ("udp_over_tcp_all_records", "all_records_seconds"),
                ):
                    ratios = _ratios(by_seed, column)
                    entry[name] = (
                        {k: round(v, 1) for k, v in _spread(ratios).items()} if ratios else None
                    )
            out.append(entry)
    return out


def _fmt(spread: dict[str, float] | None, digits: int = 2, scale: float = 1.0) -> str:
    if spread is None:
        return "-"
    median, low, high = (spread[k] / scale for k in ("median", "min", "max"))
    if low == high:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def table(summary: list[dict[str, Any]]) -> str:
    """The markdown table: median (min-max) over the seeds."""
    lines = [
        "| n | UDP loss | transport | full view, all ALIVE (s) | (periods) "
        "| every record held (s) | rounds | records in 1st round "
        "| datagrams+frames received | KiB received | UDP/TCP full view | UDP/TCP records |",
        "|---:|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in summary:
        late = f" ({e['not_done']} of {e['seeds']} not done)" if e["not_done"] else ""
        udp = e["transport"] == "udp"
        ratio = _fmt(e["udp_over_tcp"], 0) if udp else ""
        ratio_records = _fmt(e["udp_over_tcp_all_records"], 0) if udp else ""
        lines.append(
            f"| {e['n']} | {100 * e['loss']:g}% | {e['transport']} "
            f"| {_fmt(e['seconds'], 3)}{late} | {_fmt(e['periods'], 2)} "
            f"| {_fmt(e['all_records_seconds'], 3)} "
            f"| {_fmt(e['rounds'], 0)} | {_fmt(e['first_round_records'], 0)} "
            f"| {_fmt(e['received_packets'], 0)} "
            f"| {_fmt(e['received_bytes'], 0, 1024)} | {ratio} | {ratio_records} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: build the clusters, measure, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="50 and 200 members, seeds 1 and 2")
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--losses", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args(argv)
    sizes = args.sizes or ([50, 200] if args.quick else [50, 200, 500])
    seeds = args.seeds or ([1, 2] if args.quick else [1, 2, 3, 4, 5])
    if any(n < 4 for n in sizes) or any(not 0 <= p < 1 for p in args.losses):
        parser.error("sizes must be >= 4 and losses 0 <= p < 1")
    wall = time.perf_counter()
    runs = []
    for n in sizes:
        for seed in seeds:
            runs.extend(run_cluster(n, seed, args.losses))
    summary = summarise(runs)
    print(table(summary))
    report = {
        "command": " ".join(["python", "benchmarks/join_state.py", *sys.argv[1:]]),
        "sizes": sizes,
        "losses": args.losses,
        "seeds": seeds,
        "metadata_bytes": METADATA_BYTES,
        "period_seconds": PERIOD,
        "latency_seconds": LATENCY,
        "jitter_seconds": JITTER,
        "wall_seconds": round(time.perf_counter() - wall, 1),
        "machine": machine(),
        "code": code_state(),
        "summary": summary,
        "runs": runs,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    log(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
