"""Pieces the benchmark scripts share: progress lines, the machine's
description, setup commands, and a network namespace of their own."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

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
