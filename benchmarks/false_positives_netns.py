"""False DEAD events and kill detection on real sockets, under UDP loss.

``--members`` (20) separate ``trio-swim run --json`` processes on 127.0.0.1
inside a network namespace made for the run, where an iptables rule drops
each incoming UDP datagram with probability ``--loss`` (every channel the
protocol has is UDP, so every channel is lossy). Per loss level:

1. start the members (no loss yet) and wait until each sees all the others;
2. switch the loss on and count, for ``--duration`` seconds (120 by default),
   every DEAD event any member prints: nobody has been killed, so each one
   is false;
3. SIGKILL one member (no leave) and time, from the kill, its DEAD event at
   every survivor (loss still on);
4. stop everything and delete the namespace (also on error or Ctrl-C).

Needs root, ``ip`` and ``iptables``; the host's own firewall is never
touched. CPU use of the members is read from ``/proc`` and reported, with
the load average, because 20 interpreters share the machine's cores.

``python benchmarks/false_positives_netns.py`` runs the issue's experiment
(5%, 10%, 20% loss, 120 s each, Lifeguard on); ``--duration 20 --loss 0.1``
is a short check; ``--variant swim`` adds plain SWIM (``SWIM_LIFEGUARD=false``
and a fixed ack timeout). Prints a table and writes
``false_positives_netns.json`` beside this file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import trio

from _common import Namespace, stop_processes

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
JOIN_LIMIT = 60.0
"""Seconds the members get to find each other before a level is abandoned."""

VARIANTS: dict[str, dict[str, str]] = {
    "lifeguard": {"SWIM_LIFEGUARD": "true"},
    "swim": {"SWIM_LIFEGUARD": "false", "SWIM_ADAPTIVE_PROBE_TIMEOUT": "false"},
}


@dataclass
class Level:
    """What one (variant, loss) run measured."""

    variant: str
    loss: float
    members: int
    duration: float
    false_dead: int = 0
    """DEAD events about members that were not killed (whole run)."""
    false_dead_pairs: int = 0
    """Distinct (observer, subject) pairs among them."""
    suspect_events: int = 0
    """SUSPECT events during the counting window (false, all of them)."""
    detections: list[float] = field(default_factory=list)
    """Seconds from the kill to DEAD, one per survivor that saw it."""
    undetected: int = 0
    join_seconds: float = math.nan
    cpu_seconds_per_member_minute: float = math.nan
    cpu_share_of_one_core: float = math.nan
    load_average: float = math.nan

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile of the detection times (nan without any)."""
        if not self.detections:
            return math.nan
        ordered = sorted(self.detections)
        return ordered[max(1, math.ceil(q * len(ordered))) - 1]


class Cluster:
    """The member processes of one run and what they print."""

    def __init__(self, size: int, base_port: int) -> None:
        self.addresses = [f"{HOST}:{base_port + i}" for i in range(size)]
        self.processes: dict[str, trio.Process] = {}
        # Latest status each member has printed about each other one.
        self.view: dict[str, dict[str, str]] = {a: {} for a in self.addresses}
        # (monotonic time, observer, subject, status) of every status event.
        self.events: list[tuple[float, str, str, str]] = []
        self.ready = trio.Event()

    def converged(self) -> bool:
        """Every member has printed ALIVE for every other one, as its latest word."""
        others = len(self.addresses) - 1
        return all(
            sum(1 for status in self.view[a].values() if status == "alive") == others
            for a in self.addresses
        )

    async def start(
        self, nursery: trio.Nursery, namespace: str, env: dict[str, str], heartbeat_ms: int
    ) -> None:
        """Start every member in ``namespace``; each joins the first two."""
        for address in self.addresses:
            argv = [
                "ip", "netns", "exec", namespace,
                sys.executable, "-m", "trio_swim", "run", "--json", "--no-multicast",
                "--listen", address, "--heartbeat-ms", str(heartbeat_ms),
            ]  # fmt: skip
            for seed in self.addresses[:2]:
                if seed != address:
                    argv += ["--join", seed]
            process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            self.processes[address] = process
            nursery.start_soon(self._read, address, process)

    async def _read(self, observer: str, process: trio.Process) -> None:
        assert process.stdout is not None
        pending = b""
        async for chunk in process.stdout:
            now = time.monotonic()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") != "status":
                    continue
                subject, status = str(record["node"]), str(record["status"])
                self.view[observer][subject] = status
                self.events.append((now, observer, subject, status))

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the member processes alive now."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for process in self.processes.values():
            try:
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / ticks

    def kill(self, address: str) -> None:
        """SIGKILL one member: no leave, it just falls silent."""
        self.processes[address].send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM everyone (they leave), then SIGKILL whoever is still there."""
        await stop_processes(self.processes.values())


async def watch_convergence(cluster: Cluster) -> None:
    """Set ``cluster.ready`` once it has converged (events are read elsewhere)."""
    while not cluster.converged():
        await trio.sleep(0.1)
    cluster.ready.set()


async def run_level(variant: str, loss: float, args: argparse.Namespace, run_index: int) -> Level:
    """One loss level of one variant, in its own namespace."""
    level = Level(variant, loss, args.members, args.duration)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        **VARIANTS[variant],
    }
    namespace = Namespace(f"swimbench-{os.getpid()}-{run_index}")
    cluster = Cluster(args.members, args.base_port)
    try:
        async with trio.open_nursery() as nursery:
            started = time.monotonic()
            await cluster.start(nursery, namespace.name, env, args.heartbeat_ms)
            nursery.start_soon(watch_convergence, cluster)
            with trio.fail_after(JOIN_LIMIT):
                await cluster.ready.wait()
            level.join_seconds = round(time.monotonic() - started, 2)
            await trio.sleep(args.settle)

            await trio.to_thread.run_sync(namespace.drop_udp, loss)
            window_start = time.monotonic()
            cpu_before = cluster.cpu_seconds()
            await trio.sleep(args.duration)
            window_end = time.monotonic()
            cpu_used = cluster.cpu_seconds() - cpu_before
            level.cpu_seconds_per_member_minute = round(
                cpu_used / args.members / (args.duration / 60), 3
            )
            level.cpu_share_of_one_core = round(cpu_used / args.duration, 3)
            level.load_average = os.getloadavg()[0]

            victim = cluster.addresses[-1]
            killed_at = time.monotonic()
            cluster.kill(victim)
            survivors = [a for a in cluster.addresses if a != victim]

            def all_saw_it() -> bool:
                return all(cluster.view[s].get(victim) == "dead" for s in survivors)

            with trio.move_on_after(args.detect_limit):
                while not all_saw_it():
                    await trio.sleep(0.05)
            detect_end = time.monotonic()
            await cluster.stop()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await cluster.stop()
        namespace.delete()

    first_dead: dict[str, float] = {}
    false_pairs: set[tuple[str, str]] = set()
    for at, observer, subject, status in cluster.events:
        if at < window_start or at > detect_end:
            continue
        if subject == victim and at >= killed_at:
            if status == "dead":
                first_dead.setdefault(observer, at - killed_at)
            continue
        if status == "dead":
            level.false_dead += 1
            false_pairs.add((observer, subject))
        elif status == "suspect" and at <= window_end:
            level.suspect_events += 1
    level.false_dead_pairs = len(false_pairs)
    level.detections = [round(first_dead[s], 3) for s in survivors if s in first_dead]
    level.undetected = sum(1 for s in survivors if s not in first_dead)
    return level


def table(levels: list[Level]) -> str:
    """The markdown table of every level."""
    lines = [
        "| variant | loss | n | seconds | false DEAD | pairs | SUSPECT events "
        "| kill→DEAD p50 s | p99 s | all s | missed | CPU s/member/min | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in levels:
        everyone = max(lv.detections) if lv.detections and not lv.undetected else math.nan
        lines.append(
            f"| {lv.variant} | {lv.loss:.0%} | {lv.members} | {lv.duration:g} | {lv.false_dead} "
            f"| {lv.false_dead_pairs} | {lv.suspect_events} | {lv.quantile(0.5):.2f} "
            f"| {lv.quantile(0.99):.2f} | {everyone:.2f} | {lv.undetected} "
            f"| {lv.cpu_seconds_per_member_minute:.2f} | {lv.load_average:.2f} |"
        )
    return "\n".join(lines)


def unavailable() -> str | None:
    """Why this machine cannot run the experiment, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are a Linux feature"
    if os.geteuid() != 0:
        return "creating a network namespace needs root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"the {tool!r} command is not installed"
    return None


def main(argv: list[str] | None = None) -> int:
    """Command line: run each loss level for each variant, print, write JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument(
        "--loss", type=float, action="append", help="drop probability; repeat (default 5, 10, 20%%)"
    )
    parser.add_argument("--duration", type=float, default=120.0, help="seconds counted per level")
    parser.add_argument("--heartbeat-ms", type=int, default=250)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after joining")
    parser.add_argument("--detect-limit", type=float, default=60.0)
    parser.add_argument("--base-port", type=int, default=17_000)
    parser.add_argument("--variant", action="append", choices=list(VARIANTS))
    parser.add_argument("--output", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason is not None:
        # Not a failure: ``nox -s bench`` runs every benchmark, root or not.
        print(f"skipped: {reason}", file=sys.stderr)
        return 0
    losses = args.loss or [0.05, 0.10, 0.20]
    variants = args.variant or ["lifeguard"]
    levels: list[Level] = []
    run_index = 0
    for variant in variants:
        for loss in losses:
            started = time.monotonic()
            level = trio.run(run_level, variant, loss, args, run_index)
            run_index += 1
            levels.append(level)
            print(
                f"{variant:9} loss {loss:4.0%}: false DEAD {level.false_dead}, kill seen by all "
                f"in {max(level.detections, default=math.nan):.2f} s "
                f"({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    print(table(levels))
    report = {
        "members": args.members,
        "duration": args.duration,
        "heartbeat_ms": args.heartbeat_ms,
        "cpus": os.cpu_count(),
        "levels": [
            {
                **asdict(lv),
                "detect_p50": lv.quantile(0.5),
                "detect_p99": lv.quantile(0.99),
            }
            for lv in levels
        ],
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
