"""Test kit: an in-memory datagram network that runs real members.

:class:`SimNetwork` gives each member an endpoint with the same contract as
UDP, so the code under test is the code that runs in production. Loss,
latency, partitions, slow members and crashes are decided by the network's
seeded random generators. Run it under ``trio.testing.MockClock`` to simulate
minutes of cluster life in a second of wall time::

    net = SimNetwork(seed=1)
    async with net.open_member(Config(listen_port=1)) as a, \\
               net.open_member(Config(listen_port=2, initial_hosts=["127.0.0.1:1"])) as b:
        ...

Reproducibility: loss and latency draws come from one generator per sending
endpoint, and each member's own generator is seeded from the network seed and
its address, so a run depends on the seed and on the order in which trio runs
tasks that wake at the same instant. trio randomises that order; call
:func:`seed_trio_scheduler` first for a run that replays exactly.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import trio

from .addresses import canonical_address, format_address, split_address
from .config import Config
from .member import Member, run_member

# Datagrams queued for one endpoint; beyond this they are dropped, as a full
# socket receive buffer drops them.
INBOX_LIMIT = 4096
_MAX_DATAGRAM = 65_507


class _Endpoint:
    """One simulated socket (implements :class:`trio_swim.transport.Transport`)."""

    def __init__(self, network: SimNetwork, address: str, rng: random.Random) -> None:
        self._network = network
        self._address = address
        self.rng = rng
        self.crashed = False
        self.closed = False
        self.inbound_delay = 0.0
        self.outbound_delay = 0.0
        self.paused_until = -math.inf
        self.inbox: list[tuple[float, int, bytes, str]] = []
        self._wakeup = trio.Event()

    @property
    def local_address(self) -> str:
        return self._address

    async def send(self, data: bytes, address: str) -> bool:
        await trio.lowlevel.checkpoint()
        self._network._carry(self, address, data)
        return True

    async def receive(self) -> tuple[bytes, str]:
        while True:
            now = trio.current_time()
            if self.inbox and self.inbox[0][0] <= now and not self.crashed:
                _, _, data, source = heapq.heappop(self.inbox)
                return data, source
            self._wakeup = trio.Event()
            deadline = self.inbox[0][0] if self.inbox and not self.crashed else math.inf
            with trio.move_on_at(deadline):
                await self._wakeup.wait()

    def deliver(self, deliver_at: float, data: bytes, source: str, order: int) -> None:
        if len(self.inbox) >= INBOX_LIMIT:
            self._network.dropped += 1
            return
        heapq.heappush(self.inbox, (deliver_at, order, data, source))
        if self.inbox[0][1] == order:
            self._wakeup.set()

    async def resolve(self, text: str) -> str:
        await trio.lowlevel.checkpoint()
        host, port = split_address(text)
        if host == "localhost":
            host = "127.0.0.1"
        return format_address(host, port)

    def close(self) -> None:
        self.closed = True
        self._network._release(self)


class SimNetwork:
    """An in-memory network of members, deterministic from ``seed``.

    ``loss`` is the chance that any datagram is dropped; each datagram takes
    ``latency`` seconds plus up to ``jitter`` more. Members are opened with
    :meth:`open_member`; a member's address is its config's
    ``listen_ip:listen_port`` (port 0 picks a free one).
    """

    def __init__(
        self, *, seed: int = 0, loss: float = 0.0, latency: float = 0.001, jitter: float = 0.0
    ) -> None:
        self.seed = seed
        self.loss = 0.0
        self.latency = 0.0
        self.jitter = 0.0
        self.set_loss(loss)
        self.set_latency(latency, jitter)
        self.delivered = 0
        """Datagrams handed to an endpoint so far."""
        self.dropped = 0
        """Datagrams lost (loss, partition, crash, full inbox) so far."""
        self._endpoints: dict[str, _Endpoint] = {}
        self._cuts: list[tuple[frozenset[str], frozenset[str]]] = []
        self._opened = itertools.count()
        self._order = itertools.count()
        self._next_port = 40_000

    # ------------------------------------------------------------- faults

    def set_loss(self, probability: float) -> None:
        """Drop each datagram with this probability (0 .. 1)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"loss={probability!r}: must be 0..1")
        self.loss = probability

    def set_latency(self, latency: float, jitter: float = 0.0) -> None:
        """One-way delay of every datagram: ``latency`` plus up to ``jitter``."""
        if latency < 0 or jitter < 0:
            raise ValueError("latency and jitter must be >= 0")
        self.latency = latency
        self.jitter = jitter

    def set_delay(self, address: str, *, inbound: float = 0.0, outbound: float = 0.0) -> None:
        """Make one member slow: its datagrams in and out take this much longer."""
        endpoint = self._endpoint(address)
        endpoint.inbound_delay = inbound
        endpoint.outbound_delay = outbound

    def pause(self, address: str, duration: float) -> None:
        """Freeze one member's network for ``duration`` seconds, as a long GC
        pause would: what it sends and receives meanwhile arrives afterwards."""
        endpoint = self._endpoint(address)
        endpoint.paused_until = max(endpoint.paused_until, trio.current_time() + duration)

    def partition(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        """Cut every link between a member of ``group_a`` and one of ``group_b``."""
        a = frozenset(canonical_address(x) for x in group_a)
        b = frozenset(canonical_address(x) for x in group_b)
        if a & b:
            raise ValueError("a member cannot be on both sides of a partition")
        self._cuts.append((a, b))

    def heal(self) -> None:
        """Restore every link cut by :meth:`partition`."""
        self._cuts.clear()

    def crash(self, address: str) -> None:
        """The member at ``address`` falls silent, as a killed process would:
        it sends nothing (no leave) and receives nothing from now on."""
        endpoint = self._endpoint(address)
        endpoint.crashed = True
        endpoint.inbox.clear()
        endpoint._wakeup.set()

    # ------------------------------------------------------------- members

    @asynccontextmanager
    async def open_member(
        self, config: Config | None = None, *, incarnation: int = 0
    ) -> AsyncIterator[Member]:
        """Run a member on this network; same contract as :func:`trio_swim.open_member`.

        ``incarnation`` is where the member's incarnation starts (a real
        member starts from the wall clock; here 0 keeps runs reproducible).
        """
        config = Config() if config is None else config
        address = self._bind(config)
        opened = next(self._opened)
        endpoint = _Endpoint(self, address, random.Random(f"{self.seed}/net/{address}/{opened}"))
        self._endpoints[address] = endpoint
        rng = random.Random(f"{self.seed}/member/{address}/{opened}")
        async with run_member(config, endpoint, rng=rng, incarnation=incarnation) as member:
            yield member

    def _bind(self, config: Config) -> str:
        port = config.listen_port
        if port == 0:
            while format_address(config.listen_ip, self._next_port) in self._endpoints:
                self._next_port += 1
            port = self._next_port
            self._next_port += 1
        address = format_address(config.listen_ip, port)
        existing = self._endpoints.get(address)
        if existing is not None and not existing.crashed:
            raise OSError(98, f"address {address} is already in use")
        return address

    def _endpoint(self, address: str) -> _Endpoint:
        endpoint = self._endpoints.get(canonical_address(address))
        if endpoint is None:
            raise KeyError(f"no member at {address}")
        return endpoint

    def _release(self, endpoint: _Endpoint) -> None:
        if self._endpoints.get(endpoint.local_address) is endpoint:
            del self._endpoints[endpoint.local_address]

    def _carry(self, source: _Endpoint, address: str, data: bytes) -> None:
        target = self._endpoints.get(address)
        if (
            target is None
            or source.crashed
            or target.crashed
            or len(data) > _MAX_DATAGRAM
            or (self._cuts and self._cut(source.local_address, address))
            or (self.loss and source.rng.random() < self.loss)
        ):
            self.dropped += 1
            return
        now = trio.current_time()
        sent_at = max(now, source.paused_until) + source.outbound_delay
        arrives = sent_at + self.latency + target.inbound_delay
        if self.jitter:
            arrives += self.jitter * source.rng.random()
        arrives = max(arrives, target.paused_until)
        self.delivered += 1
        target.deliver(arrives, data, source.local_address, next(self._order))

    def _cut(self, a: str, b: str) -> bool:
        return any(
            (a in left and b in right) or (a in right and b in left) for left, right in self._cuts
        )


def seed_trio_scheduler(seed: int) -> None:
    """Seed the generator trio uses to order tasks that wake together.

    trio keeps that generator private; this reaches it on purpose so that a
    simulation replays exactly. It raises :class:`RuntimeError` if the trio in
    use no longer has it, rather than silently giving an unseeded run.
    """
    from trio._core import _run

    generator = getattr(_run, "_r", None)
    if not isinstance(generator, random.Random):
        raise RuntimeError("this trio version has no seedable scheduler generator")
    generator.seed(seed)
