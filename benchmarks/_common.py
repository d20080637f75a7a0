"""Pieces the benchmark scripts share: progress lines, the machine's
description, setup commands, a network namespace of their own, quantiles,
the sorting of false verdicts, and stopping member processes."""

from __future__ import annotations

import math
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import trio

from trio_swim import Status

REPO = Path(__file__).resolve().parent.parent
"""The checkout the benchmarks belong to."""
COMMAND_LIMIT = 30.0
"""Seconds a setup command (ip, iptables) may take."""


def log(text: str) -> None:
    """One progress line on stderr."""
    print(text, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """What ran the benchmark."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("trio", "msgspec", "cryptography"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "-"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }


def run_command(*argv: str) -> None:
    """Run one setup command; raise with its stderr if it fails."""
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=COMMAND_LIMIT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


class Namespace:
    """A network namespace with loopback up; deleted by :meth:`delete`."""

    def __init__(self, name: str) -> None:
        self.name = name
        run_command("ip", "netns", "add", name)
        try:
            run_command("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise

    @property
    def prefix(self) -> list[str]:
        """What runs a command inside (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name]

    def drop_udp(self, probability: float) -> None:
        """Drop incoming UDP datagrams at random, inside this namespace only."""
        if probability <= 0:
            return
        run_command(
            *self.prefix,
            "iptables", "-A", "INPUT", "-p", "udp",
            "-m", "statistic", "--mode", "random", "--probability", f"{probability}",
            "-j", "DROP",
        )  # fmt: skip

    def delete(self) -> None:
        """Remove the namespace (its firewall rules go with it)."""
        subprocess.run(
            ["ip", "netns", "del", self.name], capture_output=True, timeout=COMMAND_LIMIT,
            check=False,
        )  # fmt: skip


def code_state() -> dict[str, Any]:
    """The commit measured, and whether the package had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "trio_swim"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "trio_swim_uncommitted_changes": bool(dirty)}


# ------------------------------------------------------------ figures


def finite(value: Any) -> Any:
    """``value`` with every NaN replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def quantile(values: Iterable[float], q: float) -> float:
    """Nearest-rank quantile (nan for no values)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@dataclass
class Verdicts:
    """What an event log of a run with slow and crashed members says (see
    :func:`count_verdicts`)."""

    false_dead_slow: int = 0
    """DEAD events about slow members that were never crashed."""
    false_dead_healthy: int = 0
    """DEAD events about healthy members that were never crashed."""
    false_suspect_healthy: int = 0
    false_verdicts_healthy: int = 0
    """Distinct (member, incarnation) pairs falsely declared DEAD."""
    dead_after: dict[tuple[str, str], float] = field(default_factory=dict)
    """(observer, victim): seconds from the victim's crash to the observer's DEAD."""


def count_verdicts(
    rows: Iterable[tuple[float, str, str, Status, int]],
    crashed_at: Mapping[str, float],
    slow: Iterable[str],
) -> Verdicts:
    """Sort a log of (time, observer, subject, status, incarnation) into false
    verdicts and detection times. A crashed observer's later events are left
    out: it hears nothing and blames everyone."""
    slow = set(slow)
    out = Verdicts()
    verdicts: set[tuple[str, int]] = set()
    for at, observer, subject, status, incarnation in rows:
        if observer in crashed_at and at >= crashed_at[observer]:
            continue
        since = crashed_at.get(subject)
        if since is not None and at >= since:
            if status is Status.DEAD:
                out.dead_after.setdefault((observer, subject), at - since)
            continue
        if status is Status.DEAD:
            if subject in slow:
                out.false_dead_slow += 1
            else:
                out.false_dead_healthy += 1
                verdicts.add((subject, incarnation))
        elif status is Status.SUSPECT and subject not in slow:
            out.false_suspect_healthy += 1
    out.false_verdicts_healthy = len(verdicts)
    return out


# ------------------------------------------------------------ processes

STOP_LIMIT = 10.0
"""Seconds member processes get to leave, then again to die once killed."""


async def stop_processes(processes: Iterable[trio.Process]) -> None:
    """SIGTERM every process (members leave), then SIGKILL whoever is still there."""
    processes = list(processes)
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    with trio.move_on_after(STOP_LIMIT):
        for process in processes:
            await process.wait()
    for process in processes:
        if process.returncode is None:
            process.kill()
    with trio.CancelScope(shield=True), trio.move_on_after(STOP_LIMIT):
        for process in processes:
            await process.wait()
