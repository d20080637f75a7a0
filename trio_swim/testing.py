"""Test kit: two simulators of a whole cluster, sharing one model of the network.

Which one to use:

:class:`SimNetwork`
    An in-memory datagram network on which *real* members run: each member
    is the trio runner of :func:`trio_swim.open_member` (tasks, timers,
    event streams) on an endpoint with the same contract as UDP. Use it to
    test a service's own trio code against the real runner, under
    ``trio.testing.MockClock`` to live minutes of cluster life in a second::

        net = SimNetwork(seed=1)
        async with net.open_member(Config(listen_port=1)) as a, \\
                   net.open_member(Config(listen_port=2, initial_hosts=["127.0.0.1:1"])) as b:
            ...

    Reproducibility: loss and latency draws come from one generator per
    sending endpoint, and each member's own generator is seeded from the
    network seed and its address, so a run depends on the seed and on the
    order in which trio runs tasks that wake at the same instant. trio
    randomises that order; call :func:`seed_trio_scheduler` first for a run
    that replays exactly. Exactly means within one program: trio breaks ties
    between deadlines by object identity, so an unrelated change to the
    program (even one more module imported) may reorder such ties and give
    another, equally valid, run.

:class:`Simulation`
    A discrete-event driver of many protocol cores
    (:class:`trio_swim.protocol.Swim`) with no trio, no tasks and no clock:
    datagrams and timers are entries in two heaps, processed in time order.
    Use it to study the protocol itself at scale (thousands of members,
    hours of virtual time), to measure convergence, detection and load::

        sim = Simulation(seed=1, loss=0.01)
        a = sim.add_member(Config(listen_port=1))
        b = sim.add_member(Config(listen_port=2, initial_hosts=["127.0.0.1:1"]))
        sim.run_until(lambda: converged([a, b]), timeout=10)

    Reproducibility: a run depends on its seed and on the calls made to it,
    nothing else (no scheduler, no object identities, no string hashing):
    the same calls give the same run, event for event, in any process.

Both draw loss, latency and jitter from the same :class:`LinkModel`, with the
same generators seeded the same way; one seed need not give the same run on
both, since the runner and the simulation feed the core at different moments.
Both carry TCP streams too (state exchanges, fallback probes, reliable
messages): each way takes the link's latency and delays, a partition or a
crash leaves the exchange unanswered until its timeout, and ``loss`` does
not apply (TCP retransmits; loss here models UDP loss alone).

For a service's own trio tests, :func:`wait_converged` waits until members
see each other ALIVE.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import math
import random
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, Generic, Protocol, TypeVar

import trio

from .addresses import canonical_address, format_address, split_address
from .config import Config
from .events import (
    BroadcastReceived,
    MemberEvent,
    MemberRemoved,
    MessageReceived,
    MetadataChanged,
    StatusChanged,
)
from .member import Member, run_member
from .membership import Node, Status
from .transport import StreamCounters, StreamHandler, StreamLimits

if TYPE_CHECKING:
    from .protocol import MemberStatistics, Swim

# Datagrams queued for one SimNetwork endpoint; beyond this they are dropped,
# as a full socket receive buffer drops them.
INBOX_LIMIT = 4096
_MAX_DATAGRAM = 65_507
# Ports handed out for Config(listen_port=0), upwards from here.
_FIRST_FREE_PORT = 40_000


# ---------------------------------------------------------------- link model


class Link:
    """The network state of one address in a :class:`LinkModel`."""

    __slots__ = (
        "address",
        "crashed",
        "inbound_delay",
        "opened",
        "outbound_delay",
        "paused_until",
        "rng",
    )

    def __init__(self, address: str, opened: int, rng: random.Random) -> None:
        self.address = address
        """The canonical ``host:port`` of this endpoint."""
        self.opened = opened
        """How many endpoints the model had opened before this one."""
        self.rng = rng
        """Loss and jitter draws of the datagrams this endpoint sends."""
        self.crashed = False
        """Sends and receives nothing (see :meth:`LinkModel.crash`)."""
        self.paused_until = -math.inf
        """Nothing goes in or out before this time (see :meth:`LinkModel.pause`)."""
        self.inbound_delay = 0.0
        """Extra delay of every datagram to this endpoint."""
        self.outbound_delay = 0.0
        """Extra delay of every datagram from this endpoint."""


class LinkModel:
    """What the network does to each datagram: pure decisions, no I/O, no clock.

    Holds one :class:`Link` per open address (crash, pause, delays and a
    generator seeded ``f"{seed}/net/{address}/{opened}"``), the partitions,
    and the loss, latency and jitter of every link. :meth:`route` decides
    the fate of one datagram. Both :class:`SimNetwork` and
    :class:`Simulation` are built on it; time is always passed in as ``now``.
    """

    def __init__(
        self, *, seed: int = 0, loss: float = 0.0, latency: float = 0.001, jitter: float = 0.0
    ) -> None:
        self.seed = seed
        self.loss = 0.0
        """Chance that a datagram is dropped."""
        self.latency = 0.0
        """One-way delay of every datagram, in seconds."""
        self.jitter = 0.0
        """Up to this much more delay, drawn uniformly per datagram."""
        self.set_loss(loss)
        self.set_latency(latency, jitter)
        self.delivered = 0
        """Datagrams routed to an endpoint so far."""
        self.dropped = 0
        """Datagrams lost (loss, partition, crash, no such address) so far."""
        self.links: dict[str, Link] = {}
        """The open endpoints by address."""
        self._cuts: list[tuple[frozenset[str], frozenset[str]]] = []
        self._opened = itertools.count()
        self._next_port = _FIRST_FREE_PORT

    # ------------------------------------------------------------- settings

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
        """Make one endpoint slow: its datagrams in and out take this much longer."""
        if not (inbound >= 0 and outbound >= 0):
            raise ValueError("inbound and outbound delays must be >= 0")
        link = self.link(address)
        link.inbound_delay = inbound
        link.outbound_delay = outbound

    def pause(self, address: str, duration: float, now: float) -> None:
        """Freeze one endpoint's network from ``now`` for ``duration`` seconds:
        what it sends and receives meanwhile arrives afterwards."""
        link = self.link(address)
        link.paused_until = max(link.paused_until, now + duration)

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

    def crash(self, address: str) -> Link:
        """The endpoint at ``address`` sends and receives nothing from now on."""
        link = self.link(address)
        link.crashed = True
        return link

    # ------------------------------------------------------------ endpoints

    def bind(self, listen_ip: str, listen_port: int) -> str:
        """The address an endpoint for ``listen_ip:listen_port`` gets.

        Port 0 picks the next free port from 40000 up. Raises ``OSError``
        (errno 98) if a live endpoint holds the address; a crashed one may be
        replaced (a restart).
        """
        port = listen_port
        if port == 0:
            while format_address(listen_ip, self._next_port) in self.links:
                self._next_port += 1
            port = self._next_port
            self._next_port += 1
        address = format_address(listen_ip, port)
        existing = self.links.get(address)
        if existing is not None and not existing.crashed:
            raise OSError(98, f"address {address} is already in use")
        return address

    def open(self, address: str) -> Link:
        """Open the endpoint at ``address`` (from :meth:`bind`), replacing a crashed one."""
        opened = next(self._opened)
        link = Link(address, opened, random.Random(f"{self.seed}/net/{address}/{opened}"))
        self.links[address] = link
        return link

    def release(self, link: Link) -> None:
        """Close ``link``: datagrams to its address are dropped from now on."""
        if self.links.get(link.address) is link:
            del self.links[link.address]

    def link(self, address: str) -> Link:
        """The open endpoint at ``address`` (any spelling); ``KeyError`` if none."""
        link = self.links.get(canonical_address(address))
        if link is None:
            raise KeyError(f"no member at {address}")
        return link

    # -------------------------------------------------------------- routing

    def route(self, source: Link, target: str, size: int, now: float) -> float | None:
        """When a datagram of ``size`` bytes sent at ``now`` reaches ``target``;
        None if it is dropped (counted in :attr:`dropped`, or else in
        :attr:`delivered`).

        Draws from ``source.rng``: first loss (only when loss is set), then
        jitter (only when jitter is set).
        """
        link = self.links.get(target)
        if (
            link is None
            or source.crashed
            or link.crashed
            or size > _MAX_DATAGRAM
            or (self._cuts and self.cut(source.address, target))
            or (self.loss and source.rng.random() < self.loss)
        ):
            self.dropped += 1
            return None
        sent_at = max(now, source.paused_until) + source.outbound_delay
        arrives = sent_at + self.latency + link.inbound_delay
        if self.jitter:
            arrives += self.jitter * source.rng.random()
        self.delivered += 1
        return max(arrives, link.paused_until)

    def route_stream(self, source: Link, target: str, now: float) -> float | None:
        """When one leg of a stream exchange sent at ``now`` reaches ``target``;
        None if it never does (crash, partition, no such address).

        No loss and no draw from any generator: streams leave the datagram
        draws, and so the rest of a seeded run, as they were.
        """
        link = self.links.get(target)
        if (
            link is None
            or source.crashed
            or link.crashed
            or (self._cuts and self.cut(source.address, target))
        ):
            return None
        sent_at = max(now, source.paused_until) + source.outbound_delay
        return max(sent_at + self.latency + link.inbound_delay, link.paused_until)

    def cut(self, a: str, b: str) -> bool:
        """True if a partition separates ``a`` from ``b``."""
        return any(
            (a in left and b in right) or (a in right and b in left) for left, right in self._cuts
        )


# --------------------------------------------------------------- SimNetwork


class _Endpoint:
    """One simulated socket (implements :class:`trio_swim.transport.Transport`)."""

    def __init__(self, network: SimNetwork, link: Link) -> None:
        self._network = network
        self.link = link
        self.closed = False
        self.inbox: list[tuple[float, int, bytes, str]] = []
        self._wakeup = trio.Event()
        self.stream_handler: StreamHandler | None = None
        self._stream_counters = StreamCounters()

    @property
    def local_address(self) -> str:
        return self.link.address

    def send_nowait(self, data: bytes, address: str) -> bool:
        self._network._carry(self, address, data)
        return True

    async def send(self, data: bytes, address: str) -> bool:
        await trio.lowlevel.checkpoint()
        self._network._carry(self, address, data)
        return True

    async def receive(self) -> tuple[bytes, str]:
        link = self.link
        while True:
            now = trio.current_time()
            if self.inbox and self.inbox[0][0] <= now and not link.crashed:
                _, _, data, source = heapq.heappop(self.inbox)
                return data, source
            self._wakeup = trio.Event()
            deadline = self.inbox[0][0] if self.inbox and not link.crashed else math.inf
            with trio.move_on_at(deadline):
                await self._wakeup.wait()

    def deliver(self, deliver_at: float, data: bytes, source: str, order: int) -> None:
        if len(self.inbox) >= INBOX_LIMIT:
            self._network.link_model.dropped += 1
            return
        heapq.heappush(self.inbox, (deliver_at, order, data, source))
        if self.inbox[0][1] == order:
            self._wakeup.set()

    async def resolve(self, text: str) -> list[str]:
        await trio.lowlevel.checkpoint()
        return [_resolve(text)]

    async def request(self, address: str, data: bytes, limits: StreamLimits) -> bytes:
        model = self._network.link_model
        arrives = model.route_stream(self.link, address, trio.current_time())
        target = self._network._endpoints.get(address)
        if target is None or target.closed:
            await trio.lowlevel.checkpoint()
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"{address}: connection refused")
        if arrives is None:
            await trio.sleep_forever()  # the caller's timeout ends it
        await trio.sleep_until(arrives)
        handler = target.stream_handler
        if handler is None or target.link.crashed or len(data) > limits.max_frame:
            raise ConnectionResetError(errno.ECONNRESET, f"{address}: connection reset")
        target._stream_counters.accepted += 1
        answer = handler(data, self.link.address)
        back = model.route_stream(target.link, self.link.address, trio.current_time())
        if back is None:
            await trio.sleep_forever()
        await trio.sleep_until(back)
        if answer is None or len(answer) > limits.max_frame:
            raise ConnectionResetError(errno.ECONNRESET, f"{address}: no answer on the stream")
        return answer

    async def serve_streams(self, handler: StreamHandler, limits: StreamLimits) -> None:
        self.stream_handler = handler
        try:
            await trio.sleep_forever()
        finally:
            self.stream_handler = None

    @property
    def stream_counters(self) -> StreamCounters:
        return self._stream_counters

    def close(self) -> None:
        self.closed = True
        self._network._release(self)


_V = TypeVar("_V")


class _LinkAttribute(Generic[_V]):
    """An attribute of a :class:`SimNetwork` that lives in its link model."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, network: SimNetwork, owner: type | None = None) -> _V:
        value: _V = getattr(network.link_model, self._name)
        return value

    def __set__(self, network: SimNetwork, value: _V) -> None:
        setattr(network.link_model, self._name, value)


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
        self.link_model = LinkModel(seed=seed, loss=loss, latency=latency, jitter=jitter)
        """The decisions of this network (shared with :class:`Simulation`)."""
        self._endpoints: dict[str, _Endpoint] = {}
        self._order = itertools.count()

    delivered = _LinkAttribute[int]("Datagrams handed to an endpoint so far.")
    dropped = _LinkAttribute[int]("Datagrams lost (loss, partition, crash, full inbox) so far.")
    loss = _LinkAttribute[float]("Chance that a datagram is dropped (see :meth:`set_loss`).")
    latency = _LinkAttribute[float]("One-way delay of every datagram (see :meth:`set_latency`).")
    jitter = _LinkAttribute[float](
        "Up to this much more delay per datagram (see :meth:`set_latency`)."
    )

    # ------------------------------------------------------------- faults

    def set_loss(self, probability: float) -> None:
        """Drop each datagram with this probability (0 .. 1)."""
        self.link_model.set_loss(probability)

    def set_latency(self, latency: float, jitter: float = 0.0) -> None:
        """One-way delay of every datagram: ``latency`` plus up to ``jitter``."""
        self.link_model.set_latency(latency, jitter)

    def set_delay(self, address: str, *, inbound: float = 0.0, outbound: float = 0.0) -> None:
        """Make one member slow: its datagrams in and out take this much longer."""
        self.link_model.set_delay(address, inbound=inbound, outbound=outbound)

    def pause(self, address: str, duration: float) -> None:
        """Freeze one member's network for ``duration`` seconds, as a long GC
        pause would: what it sends and receives meanwhile arrives afterwards."""
        self.link_model.pause(address, duration, trio.current_time())

    def partition(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        """Cut every link between a member of ``group_a`` and one of ``group_b``."""
        self.link_model.partition(group_a, group_b)

    def heal(self) -> None:
        """Restore every link cut by :meth:`partition`."""
        self.link_model.heal()

    def crash(self, address: str) -> None:
        """The member at ``address`` falls silent, as a killed process would:
        it sends nothing (no leave) and receives nothing from now on."""
        endpoint = self._endpoint(address)
        endpoint.link.crashed = True
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
        address = self.link_model.bind(*_bind_address(config))
        link = self.link_model.open(address)
        endpoint = _Endpoint(self, link)
        self._endpoints[address] = endpoint
        rng = random.Random(f"{self.seed}/member/{address}/{link.opened}")
        async with run_member(config, endpoint, rng=rng, incarnation=incarnation) as member:
            yield member

    def _endpoint(self, address: str) -> _Endpoint:
        endpoint = self._endpoints.get(canonical_address(address))
        if endpoint is None:
            raise KeyError(f"no member at {address}")
        return endpoint

    def _release(self, endpoint: _Endpoint) -> None:
        self.link_model.release(endpoint.link)
        if self._endpoints.get(endpoint.local_address) is endpoint:
            del self._endpoints[endpoint.local_address]

    def _carry(self, source: _Endpoint, address: str, data: bytes) -> None:
        arrives = self.link_model.route(source.link, address, len(data), trio.current_time())
        if arrives is not None:
            self._endpoints[address].deliver(arrives, data, source.local_address, next(self._order))


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


# --------------------------------------------------------------- Simulation

_USER_EVENTS: Final = (
    StatusChanged,
    MetadataChanged,
    BroadcastReceived,
    MessageReceived,
    MemberRemoved,
)


class _StreamLeg:
    """One leg of a stream exchange in flight in a :class:`Simulation`: the
    request to the answerer, or the answer (None: the exchange failed) back
    to the initiator."""

    __slots__ = ("answer", "data", "deadline", "initiator", "token")

    def __init__(
        self, initiator: SimMember, token: int, deadline: float, data: bytes | None, answer: bool
    ) -> None:
        self.initiator = initiator
        self.token = token
        self.deadline = deadline
        """When the initiator gives up (the request's timeout)."""
        self.data = data
        self.answer = answer


class SimMember:
    """One member of a :class:`Simulation`: its protocol core and its network link.

    Made by :meth:`Simulation.add_member`. Reading it (``members()``,
    ``statistics()`` ...) is free; inputs go through the simulation
    (:meth:`Simulation.broadcast`, :meth:`Simulation.join` ...), which carries
    out what the core asks for in return.
    """

    __slots__ = ("_armed", "_index", "address", "closed", "link", "on_event", "swim")

    def __init__(
        self,
        swim: Swim,
        link: Link,
        index: int,
        on_event: Callable[[float, MemberEvent], object] | None,
    ) -> None:
        self.swim = swim
        """The protocol core (:class:`trio_swim.protocol.Swim`)."""
        self.address = link.address
        """The canonical ``host:port`` this member is known by."""
        self.link = link
        """Its state in the network (:class:`Link`)."""
        self.on_event = on_event
        """Called as ``on_event(time, event)`` for each of its events."""
        self.closed = False
        """It left (:meth:`Simulation.close`); it is no longer driven."""
        self._index = index
        # The earliest deadline of this member in the simulation's timer heap
        # (None: none pending); heap entries with another deadline are stale.
        self._armed: float | None = None

    @property
    def crashed(self) -> bool:
        """It was crashed (:meth:`Simulation.crash`)."""
        return self.link.crashed

    @property
    def node(self) -> Node:
        """This member's own record."""
        return self.swim.me

    def members(self) -> list[Node]:
        """Every member it knows, itself included."""
        return self.swim.members()

    def healthy_members(self) -> list[Node]:
        """The ALIVE members it knows, itself included."""
        return self.swim.healthy_members()

    def statistics(self) -> MemberStatistics:
        """A snapshot of its counters (as :meth:`trio_swim.Member.statistics`)."""
        return self.swim.statistics()

    def __repr__(self) -> str:
        return f"<SimMember {self.address}>"


class Simulation:
    """A trio-free discrete-event simulation of many protocol cores.

    Every member is a :class:`trio_swim.protocol.Swim` fed by this driver:
    pending datagrams sit in one heap ordered by arrival, and the members'
    next timer deadlines in another. Time jumps from one instant to the next;
    at each instant, datagrams due are always delivered first (in send
    order), then members due are ticked (by deadline, then in the order they
    were added). After every input to a core, its datagrams go through the
    :class:`LinkModel` (the same model as :class:`SimNetwork`: ``loss``,
    ``latency``, ``jitter``) and its events to its ``on_event``.

    The run is a function of ``seed`` and the calls made: it replays exactly.
    """

    def __init__(
        self,
        seed: int = 0,
        loss: float = 0.0,
        latency: float = 0.001,
        jitter: float = 0.0,
        *,
        streams: bool = True,
    ) -> None:
        self.seed = seed
        self.link_model = LinkModel(seed=seed, loss=loss, latency=latency, jitter=jitter)
        """The network's decisions (see :class:`LinkModel`)."""
        self.streams = streams
        """False: every TCP exchange is refused at once (a firewall that rejects
        TCP), so members fall back to UDP for state exchanges."""
        self.now = 0.0
        """The virtual time, in seconds (starts at 0)."""
        self._members: dict[str, SimMember] = {}
        self._deliveries: list[tuple[float, int, SimMember, bytes | _StreamLeg, str]] = []
        self._timers: list[tuple[float, int, int, SimMember]] = []
        self._order = itertools.count()

    # ------------------------------------------------------------- members

    def add_member(
        self,
        config: Config,
        *,
        incarnation: int = 0,
        on_event: Callable[[float, MemberEvent], object] | None = None,
    ) -> SimMember:
        """Start a member at ``config.listen_ip:listen_port`` and join its
        ``initial_hosts`` ("localhost" stands for 127.0.0.1).

        Port 0 picks a free port from 40000 up; a taken address raises
        ``OSError`` (errno 98). ``on_event(time, event)`` is called for each
        :class:`~trio_swim.StatusChanged`, :class:`~trio_swim.BroadcastReceived`
        and :class:`~trio_swim.MemberRemoved` of this member, as it happens.
        """
        from .protocol import Swim

        address = self.link_model.bind(*_bind_address(config))
        link = self.link_model.open(address)
        rng = random.Random(f"{self.seed}/member/{address}/{link.opened}")
        swim = Swim(config, address, rng=rng, incarnation=incarnation, now=self.now)
        member = SimMember(swim, link, link.opened, on_event)
        self._members[address] = member
        seeds = []
        for host in config.initial_hosts:
            try:
                seeds.append(_resolve(host))
            except ValueError:
                continue
        if seeds:
            swim.set_seeds(seeds, self.now)
        self._after_input(member)
        return member

    def member(self, address: str) -> SimMember:
        """The member at ``address`` (any spelling); ``KeyError`` if none."""
        member = self._members.get(canonical_address(address))
        if member is None:
            raise KeyError(f"no member at {address}")
        return member

    def running(self) -> list[SimMember]:
        """The members neither crashed nor closed, in the order they were added."""
        return [m for m in self._members.values() if not m.link.crashed]

    @property
    def delivered(self) -> int:
        """Datagrams routed to a member so far."""
        return self.link_model.delivered

    @property
    def dropped(self) -> int:
        """Datagrams lost (loss, partition, crash, no such member) so far."""
        return self.link_model.dropped

    # -------------------------------------------------------------- inputs

    def broadcast(self, address: str, payload: bytes) -> None:
        """The member at ``address`` broadcasts ``payload`` now."""
        member = self.member(address)
        member.swim.broadcast(payload, self.now)
        self._after_input(member)

    def join(self, address: str, targets: Iterable[str]) -> None:
        """The member at ``address`` exchanges state with ``targets`` now."""
        member = self.member(address)
        member.swim.join([_resolve(t) for t in targets], self.now)
        self._after_input(member)

    def set_metadata(self, address: str, metadata: bytes) -> None:
        """The member at ``address`` announces new metadata now."""
        member = self.member(address)
        member.swim.set_metadata(metadata, self.now)
        self._after_input(member)

    def send(self, address: str, target: str, payload: bytes, *, reliable: bool = False) -> None:
        """The member at ``address`` sends ``payload`` to ``target`` now: in one
        datagram, or over a stream (``reliable``)."""
        member = self.member(address)
        if reliable:
            member.swim.send_reliable(_resolve(target), payload, self.now)
        else:
            member.swim.send(_resolve(target), payload, self.now)
        self._after_input(member)

    def inject(self, address: str, data: bytes, source: str) -> None:
        """Hand the member at ``address`` one datagram from ``source`` now, as
        if it had come over the network (what an attacker would send)."""
        member = self.member(address)
        member.swim.receive(data, self.now, source)
        self._after_input(member)

    def close(self, address: str) -> None:
        """The member at ``address`` leaves gracefully now: it becomes LEFT,
        its goodbyes go out, and it is gone (no wait for an ack)."""
        member = self.member(address)
        if not member.link.crashed:
            member.swim.leave(self.now)
            self._after_input(member)
        member.closed = True
        self.link_model.release(member.link)
        del self._members[member.address]

    # -------------------------------------------------------------- faults

    def crash(self, address: str) -> None:
        """The member at ``address`` falls silent, as a killed process would:
        it sends and receives nothing (no leave), and its core is no longer
        ticked. A new member may then be added at its address (a restart)."""
        self.link_model.crash(address)

    def pause(self, address: str, seconds: float) -> None:
        """Freeze one member's network for ``seconds``, as a long GC pause
        would: what it sends and receives meanwhile arrives afterwards. Its
        core keeps running (its probes time out)."""
        self.link_model.pause(address, seconds, self.now)

    def partition(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        """Cut every link between a member of ``group_a`` and one of ``group_b``."""
        self.link_model.partition(group_a, group_b)

    def heal(self) -> None:
        """Restore every link cut by :meth:`partition`."""
        self.link_model.heal()

    def set_loss(self, probability: float) -> None:
        """Drop each datagram with this probability (0 .. 1)."""
        self.link_model.set_loss(probability)

    def set_latency(self, latency: float, jitter: float = 0.0) -> None:
        """One-way delay of every datagram: ``latency`` plus up to ``jitter``."""
        self.link_model.set_latency(latency, jitter)

    def set_delay(self, address: str, *, inbound: float = 0.0, outbound: float = 0.0) -> None:
        """Make one member slow: its datagrams in and out take this much longer."""
        self.link_model.set_delay(address, inbound=inbound, outbound=outbound)

    # ------------------------------------------------------------- running

    def run_for(self, seconds: float) -> None:
        """Advance the virtual time by ``seconds``, processing all that falls due."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._run(self.now + seconds, None)

    def run_until(
        self, predicate: Callable[[], bool], timeout: float, *, step: float | None = None
    ) -> bool:
        """Advance until ``predicate()`` is true; False if ``timeout`` seconds
        passed first (the time is then ``timeout`` later).

        The predicate is checked now, then after each instant processed, or,
        with ``step``, only every ``step`` seconds of virtual time (cheaper
        for a costly predicate). Returns at once when it is true.
        """
        if timeout < 0:
            raise ValueError("timeout must be >= 0")
        if predicate():
            return True
        end = self.now + timeout
        if step is None:
            return self._run(end, predicate)
        if not step > 0:
            raise ValueError("step must be > 0")
        ticks = 0
        start = self.now
        while self.now < end:
            ticks += 1
            self._run(min(start + ticks * step, end), None)
            if predicate():
                return True
        return False

    def _run(self, end: float, predicate: Callable[[], bool] | None) -> bool:
        deliveries = self._deliveries
        timers = self._timers
        pop = heapq.heappop
        after = self._after_input
        while True:
            next_delivery = deliveries[0][0] if deliveries else math.inf
            next_timer = timers[0][0] if timers else math.inf
            instant = min(next_delivery, next_timer)
            if instant > end:
                break
            if instant > self.now:
                self.now = instant
            now = self.now
            while True:
                if deliveries and deliveries[0][0] <= now:
                    target, data, sender = pop(deliveries)[2:]
                    if data.__class__ is not bytes:
                        self._stream_leg(target, data, sender)  # type: ignore[arg-type]
                        continue
                    if target.closed or target.link.crashed:
                        continue
                    target.swim.receive(data, now, sender)
                    after(target)
                elif timers and timers[0][0] <= now:
                    deadline, _, _, member = pop(timers)
                    if deadline != member._armed or member.closed or member.link.crashed:
                        continue  # stale, or no longer driven
                    member._armed = None
                    due = member.swim.next_deadline()
                    if due is not None and due <= now:
                        member.swim.tick(now)
                    after(member)
                else:
                    break
            if predicate is not None and predicate():
                return True
        if end > self.now:
            self.now = end
        return False

    def _stream_leg(self, at: SimMember, leg: _StreamLeg, sender: str) -> None:
        """A stream leg arrived at ``at`` (the answerer, or back at the initiator)."""
        now = self.now
        initiator = leg.initiator
        if leg.answer:
            if not (initiator.closed or initiator.link.crashed):
                initiator.swim.stream_reply(leg.token, leg.data, now)
                self._after_input(initiator)
            return
        answer = None
        if not (at.closed or at.link.crashed) and leg.data is not None:
            answer = at.swim.handle_stream(leg.data, now, sender)
            self._after_input(at)
        back = self.link_model.route_stream(at.link, initiator.address, now)
        if back is None or back > leg.deadline:
            # The answer cannot make it: the initiator gives up at its timeout.
            back, answer = leg.deadline, None
        reply = _StreamLeg(initiator, leg.token, leg.deadline, answer, answer=True)
        heapq.heappush(self._deliveries, (back, next(self._order), initiator, reply, at.address))

    def _after_input(self, member: SimMember) -> None:
        """Carry out what ``member``'s core asks after an input."""
        swim = member.swim
        now = self.now
        source = member.link
        route = self.link_model.route
        members = self._members
        order = self._order
        deliveries = self._deliveries
        while (out := swim.next_datagram()) is not None:
            target, data = out
            arrives = route(source, target, len(data), now)
            if arrives is not None:
                delivery = (arrives, next(order), members[target], data, member.address)
                heapq.heappush(deliveries, delivery)
        while (request := swim.next_stream()) is not None:
            give_up = now + request.timeout
            leg = _StreamLeg(member, request.token, give_up, request.data, answer=False)
            reaches = self.link_model.route_stream(source, request.address, now)
            answerer = members.get(request.address)
            if not self.streams:
                leg.data, leg.answer, answerer, reaches = None, True, member, now
            elif reaches is None or answerer is None or reaches > give_up:
                leg.data, leg.answer, answerer, reaches = None, True, member, give_up
            heapq.heappush(deliveries, (reaches, next(order), answerer, leg, member.address))
        on_event = member.on_event
        while (event := swim.next_event()) is not None:
            if on_event is not None and isinstance(event, _USER_EVENTS):
                on_event(now, event)
        deadline = swim.next_deadline()
        armed = member._armed
        if deadline is not None and (armed is None or deadline < armed):
            member._armed = deadline
            heapq.heappush(self._timers, (deadline, member._index, next(order), member))


# ------------------------------------------------------------------ helpers


class Observed(Protocol):
    """What the helpers below read: a :class:`~trio_swim.Member` or a :class:`SimMember`."""

    @property
    def address(self) -> str: ...

    def members(self) -> list[Node]: ...

    def healthy_members(self) -> list[Node]: ...


def status_seen(member: Observed, target: str) -> Status | None:
    """What ``member`` believes of ``target`` (None: unknown)."""
    for node in member.members():
        if node.address == target:
            return node.status
    return None


def everyone_sees(members: Iterable[Observed], target: str, status: Status) -> bool:
    """True if every member other than ``target`` holds ``target`` as ``status``."""
    return all(status_seen(m, target) is status for m in members if m.address != target)


def converged(members: Iterable[Observed]) -> bool:
    """True if every one of ``members`` sees every one of them ALIVE (and no more)."""
    members = list(members)
    return all(len(m.healthy_members()) == len(members) for m in members)


# The timeout is the helper's whole point (fail_after around it would do the
# same, less clearly), and membership has no single event to wait on.
async def wait_converged(*members: Member, timeout: float) -> None:  # noqa: ASYNC109
    """Wait until every one of ``members`` sees every one of them ALIVE.

    For a service's own tests: raises :class:`trio.TooSlowError` if that
    takes longer than ``timeout`` seconds (of trio's clock, so a
    ``MockClock`` makes it instant). Checks after every protocol period
    and a tenth of one.
    """
    step = min(m.config.period for m in members) / 10 if members else 0.01
    with trio.fail_after(timeout):
        while not converged(members):  # noqa: ASYNC110
            await trio.sleep(step)


def _bind_address(config: Config) -> tuple[str, int]:
    """Where a simulated member sits: its advertised address, if it has one."""
    if config.advertise_address:
        return split_address(config.advertise_address)
    return config.listen_ip, config.listen_port


def _resolve(text: str) -> str:
    """``text`` as a canonical address; "localhost" stands for 127.0.0.1."""
    host, port = split_address(text)
    if host == "localhost":
        host = "127.0.0.1"
    return format_address(host, port)
