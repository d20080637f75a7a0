"""How many pings a second one member takes in and answers, on real sockets.

One real member (``open_member``, 127.0.0.1, port 0, in this process under
trio) is sent ``Ping`` packets built with the protocol's own structs
(:class:`trio_swim.wire.Codec`) by a *separate* process (a plain socket,
so it shares no GIL with the member), from one socket, at rising rates
(``--rates``: 5k, 10k, 15k, 20k, 25k, 30k, 40k and 80k a second, for
``--seconds``, 3, each). The sender builds each step's pings beforehand,
paces its sends on the clock, collects whatever comes back, and afterwards
counts the ``Ack`` messages answering its pings. Per rate we
report what was sent, what reached the member's core, what was acked (and
acked per second), the member's own drop counters (``statistics()``) and
the kernel's drops at each socket (``/proc/net/udp``), and the CPU time of
this process (the member's) while the pings were sent, with the time it
was runnable but waited for its CPU (other work on the machine). Unless
``--no-pin``, the sender is pinned to the first CPU and the member to the
last, so that the two never share one; a rate during which either waited
for its CPU more than 5% of the time is run again (``--retries``, 3) and
the least contended run kept (the table shows the wait and the number of
runs). The *sustained rate* is the highest rate with at least 99% of the
pings answered.

The pure-core rate is the same packets handed straight to
:class:`trio_swim.protocol.Swim` (``receive`` then drain ``next_datagram``),
no sockets and no trio: the protocol's own cost per datagram.

Variants (``--variant``, repeatable; both by default): ``plain`` and
``keyed`` (``Config(secret_keys=[key])``; the sender seals every ping with
``Keyring.seal`` and the cluster's associated data, and opens the answers).
Before any figure, each variant checks the member: a plain one must answer a
plaintext ping; a keyed one must *not* answer a plaintext ping and must
answer a sealed one with a sealed ack. If a keyed member answers plaintext,
the variant prints "keyed path not wired yet" instead of figures.

    python benchmarks/receive_path.py [--rates 5000 10000 ...] [--seconds 3]
                                      [--variant plain|keyed]...

Progress goes to stderr, the table to stdout, everything to
receive_path.json beside this file. About 45 s per variant on a quiet
machine, at most about four times that on a busy one.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import multiprocessing
import os
import random
import socket
import statistics as stats
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import trio

from trio_swim import Config, Member, open_member
from trio_swim.protocol import Swim
from trio_swim.security import Keyring, associated_data, is_sealed
from trio_swim.wire import PROTOCOL_VERSION, Ack, Codec, Packet, Ping

from _common import code_state, log, machine

HOST = "127.0.0.1"
CLUSTER = Config().cluster_name
MAX_PACKET = Config().max_packet_bytes
VARIANTS = ("plain", "keyed")
DEFAULT_RATES = (5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 40_000, 80_000)
MAX_RATE = 500_000
ANSWERED = 0.99
"""Share of pings that must be acked for a rate to count as sustained."""
GRACE = 1.0
"""Seconds the sender keeps collecting answers after its last ping."""
CHECK_WAIT = 1.0
"""Seconds to wait for the answer to each wiring check."""
SENDER_RCVBUF = 16 * 1024 * 1024
CONTENDED = 0.05
"""Share of a step the member may wait for its CPU before the step is flagged."""
CORE_PACKETS = 50_000
CORE_REPEATS = 3
SEQ_STRIDE = 10_000_000
"""Each step's pings use their own range of sequence numbers."""


def socket_drops(port: int) -> int:
    """Datagrams the kernel dropped at the UDP socket bound to 127.0.0.1:``port``."""
    local = f"0100007F:{port:04X}" if sys.byteorder == "little" else f"7F000001:{port:04X}"
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return -1
    for line in lines:
        fields = line.split()
        if fields[1] == local:
            return int(fields[-1])
    return -1


def _runqueue_wait() -> float:
    """Seconds this thread (trio's) has waited, runnable, for a CPU."""
    try:
        return int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return math.nan


# ------------------------------------------------------------ the sender


class Sealer:
    """Builds pings as the sender would send them and reads the answers."""

    def __init__(self, address: str, key: bytes | None) -> None:
        self.address = address
        self.codec = Codec(CLUSTER, MAX_PACKET)
        self.ring = Keyring([key]) if key is not None else None
        self.ad = associated_data(PROTOCOL_VERSION, CLUSTER)

    def ping(self, seq: int, *, sealed: bool) -> bytes:
        data = self.codec.encode(self.address, [Ping(seq)])
        if sealed:
            assert self.ring is not None
            data = self.ring.seal(data, self.ad)
        return data

    def acks(self, data: bytes) -> tuple[bool, list[int]]:
        """(was it sealed?, the seqs it acks); nothing if it does not open or decode."""
        sealed = is_sealed(data)
        if sealed:
            opened = None if self.ring is None else self.ring.open(data, self.ad)
            if opened is None:
                return True, []
            data = opened
        packet = self.codec.decode(data)
        if not isinstance(packet, Packet):
            return sealed, []
        return sealed, [m.seq for m in packet.messages if isinstance(m, Ack)]


def _drain(sock: socket.socket, into: list[bytes]) -> None:
    while True:
        try:
            into.append(sock.recv(4096))
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionRefusedError:
            continue


def _check(sock: socket.socket, sealer: Sealer, seq: int, sealed: bool) -> dict[str, Any]:
    """Send one ping; did an ack come back, and was it sealed?"""
    sock.send(sealer.ping(seq, sealed=sealed))
    replies: list[bytes] = []
    until = time.monotonic() + CHECK_WAIT
    while time.monotonic() < until:
        time.sleep(0.01)
        _drain(sock, replies)
    answers = [sealer.acks(r) for r in replies]
    acked = [s for s, seqs in answers if seq in seqs]
    return {"answered": bool(acked), "answer_sealed": bool(acked) and all(acked)}


def _step(
    conn: Connection,
    sock: socket.socket,
    sealer: Sealer,
    rate: int,
    seconds: float,
    base: int,
    sealed: bool,
) -> dict[str, Any]:
    """Send ``rate`` pings a second for ``seconds``; count the acks.

    Tells ``conn`` "ready" once the pings are built, waits for "go", and
    tells it "sent" after the last one (then collects answers for a while).
    """
    total = int(rate * seconds)
    packets = [sealer.ping(base + i, sealed=sealed) for i in range(total)]
    _drain(sock, [])  # late answers of an earlier step
    conn.send("ready")
    conn.recv()
    replies: list[bytes] = []
    blocked = 0
    sent = 0
    waited = _runqueue_wait()
    start = time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        burst_end = min(due, sent + 256)
        while sent < burst_end:
            try:
                sock.send(packets[sent])
            except (BlockingIOError, InterruptedError):
                blocked += 1
                break
            except ConnectionRefusedError:
                continue
            sent += 1
        _drain(sock, replies)
    send_seconds = time.perf_counter() - start
    waited = _runqueue_wait() - waited
    conn.send("sent")
    until = time.monotonic() + GRACE
    while time.monotonic() < until:
        time.sleep(0.005)
        _drain(sock, replies)
    acked: set[int] = set()
    sealed_answers = 0
    other = 0
    for data in replies:
        was_sealed, seqs = sealer.acks(data)
        mine = [s for s in seqs if base <= s < base + total]
        if mine:
            acked.update(mine)
            sealed_answers += was_sealed
        else:
            other += 1
    return {
        "rate": rate,
        "sent": sent,
        "send_seconds": round(send_seconds, 3),
        "blocked_sends": blocked,
        "replies": len(replies),
        "other_replies": other,
        "acked": len(acked),
        "sealed_answers": sealed_answers,
        "runqueue_wait_share": round(waited / send_seconds, 3),
    }


def sender_main(conn: Connection, member: str, key: bytes | None, cpu: int | None) -> None:
    """The sender process: one connected UDP socket; commands come over ``conn``."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    host, port = member.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, SENDER_RCVBUF)  # SO_RCVBUFFORCE (root)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SENDER_RCVBUF)
    sock.bind((HOST, 0))
    sock.connect((host, int(port)))
    sock.setblocking(False)
    address = f"{HOST}:{sock.getsockname()[1]}"
    sealer = Sealer(address, key)
    conn.send(
        {
            "address": address,
            "port": sock.getsockname()[1],
            "rcvbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        }
    )
    while True:
        command = conn.recv()
        if command[0] == "check":
            _, seq, sealed = command
            conn.send(_check(sock, sealer, seq, sealed))
        elif command[0] == "step":
            _, rate, seconds, base, sealed = command
            conn.send(_step(conn, sock, sealer, rate, seconds, base, sealed))
        else:
            break
    sock.close()


# ------------------------------------------------------------ the member


@dataclass
class Step:
    """One rate on real sockets."""

    rate: int
    sent: int = 0
    send_rate: float = 0.0
    """What the sender achieved (it paces itself; below ``rate`` if it could not keep up)."""
    received: int = 0
    """Datagrams that reached the member's core."""
    acked: int = 0
    acked_per_s: float = 0.0
    answered: float = 0.0
    member_socket_drops: int = 0
    sender_socket_drops: int = 0
    statistics_drops: dict[str, int] = field(default_factory=dict)
    member_cpu_share: float = 0.0
    """CPU time of the member's process while the pings were sent, over that
    time (1 = one core)."""
    member_cpu_us_per_datagram: float = 0.0
    """The same CPU time per datagram that reached the member's core."""
    member_runqueue_wait_share: float = 0.0
    """Time trio's thread was runnable but waited for its CPU (other work on
    the machine), over the same time."""
    sender_runqueue_wait_share: float = 0.0
    """The same for the sender process."""
    attempts: int = 1
    """Runs of this rate: a run where either side waited for its CPU more than
    ``CONTENDED`` of the time is run again (up to ``--retries`` times) and the
    least contended run is kept."""
    sender: dict[str, Any] = field(default_factory=dict)

    @property
    def contention(self) -> float:
        return max(self.member_runqueue_wait_share, self.sender_runqueue_wait_share)


@dataclass
class Variant:
    """What one variant measured."""

    variant: str
    status: str = "ok"
    """``ok``, or why there are no figures."""
    checks: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    sustained_rate: int | None = None
    core_checks: dict[str, Any] = field(default_factory=dict)
    core_rate: float | None = None
    """Pings a second the bare core takes in and answers (median of the repeats)."""
    core_rates: list[float] = field(default_factory=list)
    core_status: str = "ok"
    load_average: list[float] = field(default_factory=list)
    """1-minute load average at the start and at the end (other work on the machine)."""
    wall_seconds: float = 0.0


def _drop_counters(member: Any) -> dict[str, int]:
    """The member's drop and error counters (whatever this version has)."""
    fields = msgspec.structs.asdict(member.statistics())
    return {k: int(v) for k, v in fields.items() if k.startswith("dropped_") or k == "send_errors"}


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def cpus() -> tuple[int, int] | None:
    """(the sender's CPU, the member's CPU), or None if this process cannot pin."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[-1]) if len(allowed) >= 2 else None


async def _ask(conn: Connection, command: tuple[Any, ...]) -> Any:
    conn.send(command)
    return await trio.to_thread.run_sync(conn.recv)


async def _run_step(
    conn: Connection,
    member: Member,
    sender_port: int,
    rate: int,
    base: int,
    key: bytes | None,
    args: Any,
) -> Step:
    """One run of one rate."""
    member_port = int(member.address.rsplit(":", 1)[1])
    drops_before = _drop_counters(member)
    received_before = member.statistics().packets_received
    kernel_before = (socket_drops(member_port), socket_drops(sender_port))
    ready = await _ask(conn, ("step", rate, args.seconds, base, key is not None))
    assert ready == "ready", ready
    cpu_before, wall_before, wait_before = _cpu(), time.perf_counter(), _runqueue_wait()
    sent = await _ask(conn, ("go",))
    assert sent == "sent", sent
    cpu_used, wall = _cpu() - cpu_before, time.perf_counter() - wall_before
    waited = _runqueue_wait() - wait_before
    outcome = await trio.to_thread.run_sync(conn.recv)
    kernel_after = (socket_drops(member_port), socket_drops(sender_port))
    drops_after = _drop_counters(member)
    step = Step(rate)
    step.sent = outcome["sent"]
    step.send_rate = round(outcome["sent"] / outcome["send_seconds"], 0)
    step.received = member.statistics().packets_received - received_before
    step.acked = outcome["acked"]
    step.acked_per_s = round(outcome["acked"] / outcome["send_seconds"], 0)
    step.answered = round(outcome["acked"] / max(1, outcome["sent"]), 4)
    step.member_socket_drops = kernel_after[0] - kernel_before[0]
    step.sender_socket_drops = kernel_after[1] - kernel_before[1]
    step.statistics_drops = {k: drops_after[k] - drops_before[k] for k in drops_after}
    step.member_cpu_share = round(cpu_used / wall, 3)
    step.member_cpu_us_per_datagram = round(cpu_used / max(1, step.received) * 1e6, 1)
    step.member_runqueue_wait_share = round(waited / wall, 3)
    step.sender_runqueue_wait_share = outcome["runqueue_wait_share"]
    step.sender = outcome
    return step


async def measure_member(variant: str, config: Config, key: bytes | None, args: Any) -> Variant:
    """Start a member, a sender process, run the checks and every rate."""
    result = Variant(variant)
    context = multiprocessing.get_context("spawn")
    async with open_member(config) as member:
        ours, theirs = context.Pipe()
        pinned = args.pinned
        process = context.Process(
            target=sender_main,
            args=(theirs, member.address, key, pinned[0] if pinned else None),
        )
        process.start()
        try:
            hello = await trio.to_thread.run_sync(ours.recv)
            result.checks["sender"] = hello
            plain = await _ask(ours, ("check", 1, False))
            result.checks["plaintext_ping"] = plain
            if key is not None:
                sealed = await _ask(ours, ("check", 2, True))
                result.checks["sealed_ping"] = sealed
                if plain["answered"]:
                    result.status = "keyed path not wired yet (a keyed member answered plaintext)"
                elif not (sealed["answered"] and sealed["answer_sealed"]):
                    result.status = "keyed member did not answer a sealed ping with a sealed ack"
            elif not plain["answered"]:
                result.status = "the member did not answer a plaintext ping"
            log(f"[{variant}] checks: {result.checks} -> {result.status}")
            if result.status != "ok":
                return result
            for index, rate in enumerate(args.rates):
                step = None
                for attempt in range(1 + args.retries):
                    base = (index * (1 + args.retries) + attempt + 1) * SEQ_STRIDE
                    run = await _run_step(ours, member, hello["port"], rate, base, key, args)
                    run.attempts = attempt + 1
                    if step is None or run.contention < step.contention:
                        step = run
                    if step.contention <= CONTENDED:
                        break
                    log(f"[{variant}] {rate:>6}/s: contended ({run.contention:.0%}), again")
                assert step is not None
                result.steps.append(step)
                nonzero = {k: v for k, v in step.statistics_drops.items() if v}
                log(
                    f"[{variant}] {rate:>6}/s: sent {step.sent} ({step.send_rate:.0f}/s), "
                    f"acked {step.acked} ({step.answered:.1%}), kernel drops at member "
                    f"{step.member_socket_drops}, statistics drops {nonzero or 0}, "
                    f"member CPU {step.member_cpu_share:.2f}, waited {step.contention:.0%}"
                )
        finally:
            ours.send(("stop",))
            await trio.to_thread.run_sync(process.join, 10.0)
            if process.is_alive():
                process.kill()
    answered = [s.rate for s in result.steps if s.answered >= ANSWERED]
    result.sustained_rate = max(answered) if answered else 0
    return result


# ------------------------------------------------------------ the core


def _receiver(core: Swim) -> Callable[[bytes, float, str], None]:
    """``core.receive`` with the source address, if this version takes one."""
    receive: Callable[..., None] = core.receive
    if "source" in inspect.signature(core.receive).parameters:
        return lambda data, now, source: receive(data, now, source)
    return lambda data, now, source: receive(data, now)


def measure_core(result: Variant, config: Config, key: bytes | None, packets: int) -> None:
    """The bare protocol core on the same pings: checks, then the rate."""
    sender = f"{HOST}:7001"
    sealer = Sealer(sender, key)

    def new_core() -> Swim:
        return Swim(config, f"{HOST}:7000", rng=random.Random(1), incarnation=1, now=0.0)

    def answers(core: Swim, data: bytes) -> list[tuple[bool, list[int]]]:
        _receiver(core)(data, 0.0, sender)
        out = []
        while (datagram := core.next_datagram()) is not None:
            out.append(sealer.acks(datagram[1]))
        return out

    plain = answers(new_core(), sealer.ping(1, sealed=False))
    result.core_checks["plaintext_ping_answered"] = any(1 in seqs for _, seqs in plain)
    if key is not None:
        sealed = answers(new_core(), sealer.ping(2, sealed=True))
        acked = [s for s, seqs in sealed if 2 in seqs]
        result.core_checks["sealed_ping_answered"] = bool(acked)
        result.core_checks["answer_sealed"] = bool(acked) and all(acked)
        if result.core_checks["plaintext_ping_answered"]:
            result.core_status = "keyed path not wired yet (the keyed core answered plaintext)"
            return
        if not result.core_checks["answer_sealed"]:
            result.core_status = "the keyed core did not answer a sealed ping with a sealed ack"
            return
    elif not result.core_checks["plaintext_ping_answered"]:
        result.core_status = "the core did not answer a plaintext ping"
        return
    data = [sealer.ping(i, sealed=key is not None) for i in range(packets)]
    for _ in range(CORE_REPEATS):
        core = new_core()
        receive = _receiver(core)
        next_datagram, next_event = core.next_datagram, core.next_event
        answered = 0
        start = time.perf_counter()
        for i, datagram in enumerate(data):
            receive(datagram, i * 1e-5, sender)
            while next_datagram() is not None:
                answered += 1
            while next_event() is not None:
                pass
        elapsed = time.perf_counter() - start
        if answered < packets:
            result.core_status = f"the core answered only {answered} of {packets} pings"
            return
        result.core_rates.append(round(packets / elapsed, 0))
    result.core_rate = stats.median(result.core_rates)


# ------------------------------------------------------------ report


def table(results: list[Variant]) -> str:
    lines = [
        "| variant | rate /s | sent | send rate /s | reached core | acked | answered | acked /s "
        "| kernel drops at member | statistics drops | member CPU | CPU µs / datagram "
        "| waited for CPU (runs) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.status != "ok":
            lines.append(f"| {r.variant} | {r.status} |||||||||||")
            continue
        for s in r.steps:
            drops = sum(s.statistics_drops.values())
            lines.append(
                f"| {r.variant} | {s.rate} | {s.sent} | {s.send_rate:.0f} | {s.received} "
                f"| {s.acked} | {s.answered:.2%} | {s.acked_per_s:.0f} "
                f"| {s.member_socket_drops} | {drops} | {s.member_cpu_share:.2f} "
                f"| {s.member_cpu_us_per_datagram:.1f} | {s.contention:.0%} ({s.attempts}) |"
            )
    lines += [
        "",
        "| variant | sustained rate /s (>= 99% acked) | best acked /s | pure core /s "
        "| best acked / pure core |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.status != "ok":
            sustained = best = r.status
        else:
            sustained = str(r.sustained_rate)
            best = f"{max((s.acked_per_s for s in r.steps), default=0):.0f}"
        core = f"{r.core_rate:.0f}" if r.core_rate else r.core_status
        share = (
            f"{max(s.acked_per_s for s in r.steps) / r.core_rate:.2f}"
            if r.core_rate and r.status == "ok" and r.steps
            else "-"
        )
        lines.append(f"| {r.variant} | {sustained} | {best} | {core} | {share} |")
    by_name = {r.variant: r for r in results}
    plain, keyed = by_name.get("plain"), by_name.get("keyed")
    if plain and keyed:
        cells = []
        if plain.status == keyed.status == "ok" and plain.steps and keyed.steps:
            best_plain = max(s.acked_per_s for s in plain.steps)
            best_keyed = max(s.acked_per_s for s in keyed.steps)
            cells.append(f"best acked /s {best_keyed / best_plain:.2f}")
            if plain.sustained_rate:
                cells.append(f"sustained {(keyed.sustained_rate or 0) / plain.sustained_rate:.2f}")
        if plain.core_rate and keyed.core_rate:
            cells.append(f"pure core {keyed.core_rate / plain.core_rate:.2f}")
        lines += ["", "keyed / plain: " + (", ".join(cells) if cells else "-")]
    return "\n".join(lines)


def _config(variant: str) -> tuple[Config, bytes | None] | str:
    """The member's Config for ``variant`` and its key, or why there is none."""
    if variant == "plain":
        return Config(listen_port=0), None
    key = os.urandom(32)
    try:
        return Config(listen_port=0, secret_keys=[key]), key
    except (TypeError, ValueError) as exc:
        return f"keyed variant unavailable: Config(secret_keys=...) failed ({exc})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rates", type=int, nargs="+", default=list(DEFAULT_RATES))
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per rate")
    parser.add_argument(
        "--variant", action="append", choices=VARIANTS, help="repeat for several (default: both)"
    )
    parser.add_argument("--core-packets", type=int, default=CORE_PACKETS)
    parser.add_argument(
        "--retries", type=int, default=3, help="extra runs of a rate while contended"
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the sender to the first CPU and the member to the last",
    )
    parser.add_argument("--output", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args(argv)
    if not all(100 <= r <= MAX_RATE for r in args.rates):
        parser.error(f"--rates: each must be 100..{MAX_RATE}")
    if not 0.5 <= args.seconds <= 30:
        parser.error("--seconds: must be 0.5..30")
    if not 0 <= args.retries <= 10:
        parser.error("--retries: must be 0..10")
    if not 1000 <= args.core_packets <= 1_000_000:
        parser.error("--core-packets: must be 1000..1000000")
    args.rates = sorted(set(args.rates))
    pinned = args.pinned = cpus() if args.pin else None
    if pinned is not None:
        os.sched_setaffinity(0, {pinned[1]})
        log(f"sender pinned to CPU {pinned[0]}, member (this process) to CPU {pinned[1]}")
    results = []
    for variant in dict.fromkeys(args.variant or VARIANTS):
        started = time.monotonic()
        made = _config(variant)
        if isinstance(made, str):
            log(f"[{variant}] {made}")
            results.append(Variant(variant, status=made, core_status=made))
            continue
        config, key = made
        load_before = os.getloadavg()[0]
        result = trio.run(measure_member, variant, config, key, args)
        measure_core(result, config, key, args.core_packets)
        result.load_average = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        log(f"[{variant}] pure core: {result.core_rates or result.core_status}")
        result.wall_seconds = round(time.monotonic() - started, 1)
        results.append(result)
    print(table(results))
    contended = [
        f"{r.variant} {s.rate}/s ({s.contention:.0%})"
        for r in results
        for s in r.steps
        if s.contention > CONTENDED
    ]
    if contended:
        print(
            "WARNING: the member or the sender waited for its CPU (other work on the machine) "
            "for more than "
            f"{CONTENDED:.0%} of: {', '.join(contended)}; those rates are skewed"
        )
    document = {
        "machine": machine(),
        "code": code_state(),
        "rates": args.rates,
        "seconds_per_rate": args.seconds,
        "retries": args.retries,
        "pinned_cpus": {"sender": pinned[0], "member": pinned[1]} if pinned else None,
        "answered_threshold": ANSWERED,
        "results": [asdict(r) for r in results],
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
