"""Pure membership rules: the member table, status precedence, refutation,
tombstones and the shuffled round-robin probe order.

Nothing here sleeps, sends or reads a clock: callers pass ``now``.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    import random


class Status(enum.Enum):
    """What a member is believed to be."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"

    # Enum's own hash is written in Python; identity is enough for members
    # and much faster in the per-update precedence lookups.
    __hash__ = object.__hash__

    def __str__(self) -> str:
        return self.value


# At equal incarnation, a later entry overrides an earlier one.
_RANK = {Status.ALIVE: 0, Status.SUSPECT: 1, Status.DEAD: 2, Status.LEFT: 3}
_PROBED = (Status.ALIVE, Status.SUSPECT)


class Node(msgspec.Struct, frozen=True):
    """One member as this member sees it."""

    address: str
    """``host:port`` (``[v6]:port`` for IPv6) the member listens on."""
    status: Status
    incarnation: int
    """Grows only; a member raises its own to refute suspicion."""
    metadata: bytes = b""
    """What the member says about itself (``Config.metadata``); empty if it says nothing."""


def supersedes(status: Status, incarnation: int, old: Node) -> bool:
    """True if (status, incarnation) overrides what ``old`` records.

    The order is lexicographic on (incarnation, rank) with
    ALIVE < SUSPECT < DEAD < LEFT, so merging is commutative, associative and
    idempotent: every delivery order of the same updates yields the same table.
    """
    return (incarnation, _RANK[status]) > (old.incarnation, _RANK[old.status])


class Change(msgspec.Struct, frozen=True):
    """An update changed the table: ``node`` is the new record."""

    node: Node
    previous: Node | None
    evicted: Node | None = None
    """A member never heard from directly, forgotten to make room for ``node``."""


class Refute(msgspec.Struct, frozen=True):
    """An update contradicted this member; it must announce ``node`` (ALIVE)."""

    node: Node


class Refused(enum.Enum):
    """Why an update left the table unchanged."""

    STALE = "stale"
    TOMBSTONE = "tombstone"
    TABLE_FULL = "table_full"


class MemberTable:
    """Every known member, self included, and the rules to update them.

    Bounds: at most ``max_members`` records and at most ``max_members``
    tombstones (the oldest is forgotten first). When the table is full, a
    newcomer takes the place of the oldest member that never proved it is a
    real endpoint (:meth:`verify`), which is what a flood of made-up members
    consists of; only when every member was heard from is it refused with
    :attr:`Refused.TABLE_FULL`.
    """

    def __init__(
        self,
        self_address: str,
        incarnation: int,
        *,
        max_members: int,
        rng: random.Random,
        metadata: bytes = b"",
    ) -> None:
        self.self_address = self_address
        self.max_members = max_members
        self._rng = rng
        self._nodes: dict[str, Node] = {
            self_address: Node(self_address, Status.ALIVE, incarnation, metadata)
        }
        # Members other than self that are probed and gossiped to, kept in a
        # list with an index so that a random one costs O(1).
        self._live: list[str] = []
        self._live_index: dict[str, int] = {}
        self._probe_order: list[str] = []
        self._probe_next = 0
        self._tombstones: OrderedDict[str, tuple[int, float]] = OrderedDict()
        # Members only heard of, never heard from; oldest first.
        self._unverified: dict[str, None] = {}

    # ----------------------------------------------------------------- reading

    @property
    def me(self) -> Node:
        """This member's own record."""
        return self._nodes[self.self_address]

    def get(self, address: str) -> Node | None:
        """The record of ``address``, if known."""
        return self._nodes.get(address)

    def nodes(self) -> list[Node]:
        """Every record, self included."""
        return list(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def live_count(self) -> int:
        """ALIVE and SUSPECT members, self included: the ``n`` of the formulas."""
        return len(self._live) + 1

    def random_live(self, count: int, exclude: frozenset[str] = frozenset()) -> list[str]:
        """Up to ``count`` distinct random ALIVE/SUSPECT members not in ``exclude``."""
        live = self._live
        available = len(live) - sum(1 for a in exclude if a in self._live_index)
        count = min(count, available)
        if count <= 0:
            return []
        if count * 3 > len(live):
            pool = [a for a in live if a not in exclude]
            return self._rng.sample(pool, count)
        chosen: list[str] = []
        while len(chosen) < count:
            candidate = live[self._rng.randrange(len(live))]
            if candidate not in exclude and candidate not in chosen:
                chosen.append(candidate)
        return chosen

    def next_probe_target(self) -> str | None:
        """The next member to probe: a shuffled round robin over live members.

        Every live member is probed once per round, so a failed member is first
        probed within two rounds at worst.
        """
        for _ in range(2):
            while self._probe_next < len(self._probe_order):
                address = self._probe_order[self._probe_next]
                self._probe_next += 1
                if address in self._live_index:
                    return address
            self._probe_order = list(self._live)
            self._rng.shuffle(self._probe_order)
            self._probe_next = 0
        return None

    def tombstone(self, address: str, now: float) -> int | None:
        """Incarnation at which ``address`` was removed, if still remembered."""
        entry = self._tombstones.get(address)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._tombstones[address]
            return None
        return entry[0]

    # ---------------------------------------------------------------- updating

    def apply(
        self,
        address: str,
        status: Status,
        incarnation: int,
        now: float,
        metadata: bytes | None = None,
    ) -> Change | Refute | Refused:
        """Merge one piece of news into the table.

        ``metadata`` None means the news does not carry it: the member keeps
        what was known of it (nothing, for a newcomer).
        """
        if address == self.self_address:
            return self._apply_to_self(status, incarnation)
        old = self._nodes.get(address)
        if old is None:
            removed_at = self.tombstone(address, now)
            if removed_at is not None and incarnation <= removed_at:
                return Refused.TOMBSTONE
            evicted = None
            if len(self._nodes) >= self.max_members:
                if not self._unverified:
                    return Refused.TABLE_FULL
                evicted = self._nodes[next(iter(self._unverified))]
                self._forget(evicted.address)
            self._tombstones.pop(address, None)
            node = Node(address, status, incarnation, metadata or b"")
            self._set(node)
            self._unverified[address] = None
            return Change(node, None, evicted)
        elif not supersedes(status, incarnation, old):
            return Refused.STALE
        node = Node(address, status, incarnation, old.metadata if metadata is None else metadata)
        self._set(node)
        return Change(node, old)

    def verify(self, address: str) -> None:
        """``address`` proved it is a real endpoint (it answered a ping)."""
        self._unverified.pop(address, None)

    def is_verified(self, address: str) -> bool:
        """True if ``address`` is a member that proved it is a real endpoint."""
        return address in self._nodes and address not in self._unverified

    def _apply_to_self(self, status: Status, incarnation: int) -> Refute | Refused:
        me = self.me
        if me.status is not Status.ALIVE:
            return Refused.STALE  # leaving: nothing to refute
        contradicts = (
            incarnation > me.incarnation
            if status is Status.ALIVE
            else incarnation >= me.incarnation
        )
        if not contradicts:
            return Refused.STALE
        node = Node(self.self_address, Status.ALIVE, incarnation + 1, me.metadata)
        self._nodes[self.self_address] = node
        return Refute(node)

    def set_own_metadata(self, metadata: bytes) -> Node:
        """Give this member new metadata, at a new incarnation; return the record."""
        me = self.me
        node = Node(self.self_address, me.status, me.incarnation + 1, metadata)
        self._nodes[self.self_address] = node
        return node

    def leave(self) -> Node:
        """Mark this member LEFT (at its current incarnation) and return the record."""
        me = self.me
        node = Node(self.self_address, Status.LEFT, me.incarnation, me.metadata)
        self._nodes[self.self_address] = node
        return node

    def remove(self, address: str, now: float, remember_for: float) -> Node | None:
        """Forget a member, keeping a tombstone against stale gossip about it."""
        node = self._nodes.get(address)
        if node is None or address == self.self_address:
            return None
        self._forget(address)
        self._tombstones.pop(address, None)
        self._tombstones[address] = (node.incarnation, now + remember_for)
        while len(self._tombstones) > self.max_members:
            self._tombstones.popitem(last=False)
        return node

    def _forget(self, address: str) -> None:
        del self._nodes[address]
        self._drop_live(address)
        self._unverified.pop(address, None)

    def _set(self, node: Node) -> None:
        self._nodes[node.address] = node
        if node.status in _PROBED:
            if node.address not in self._live_index:
                self._live_index[node.address] = len(self._live)
                self._live.append(node.address)
                # A newcomer joins the current round at a random place.
                remaining = len(self._probe_order) - self._probe_next
                spot = self._probe_next + self._rng.randint(0, max(0, remaining))
                self._probe_order.insert(spot, node.address)
        else:
            self._drop_live(node.address)

    def _drop_live(self, address: str) -> None:
        index = self._live_index.pop(address, None)
        if index is None:
            return
        last = self._live.pop()
        if last != address:
            self._live[index] = last
            self._live_index[last] = index


class DeadRetries:
    """Where each DEAD member is in its retry schedule.

    A member is retried 1, 2, 4 ... periods after its verdict and removed
    after the last retry; ``attempt`` numbers the retries, and each verdict
    starts a schedule with a number of its own, so a timer set for an
    earlier death of the member (it came back and died again) is stale.
    Bound: one entry per DEAD member of the table.
    """

    def __init__(self) -> None:
        # address -> (schedule, attempt). Insertion order is the order of the
        # early retries (oldest first).
        self._at: dict[str, tuple[int, int]] = {}
        self._schedules = 0

    def __len__(self) -> int:
        return len(self._at)

    def start(self, address: str) -> int:
        """``address`` was just declared DEAD: a new schedule, at attempt 0."""
        self._schedules += 1
        self._at[address] = (self._schedules, 0)
        return self._schedules

    def stop(self, address: str) -> bool:
        """``address`` is no longer DEAD (or was removed); True if it was scheduled."""
        return self._at.pop(address, None) is not None

    def is_current(self, address: str, schedule: int, attempt: int) -> bool:
        """True if retry ``attempt`` of ``schedule`` is where ``address`` is at."""
        return self._at.get(address) == (schedule, attempt)

    def advance(self, address: str, schedule: int, attempt: int) -> None:
        """Retry ``attempt`` was sent; the schedule moves to the next one."""
        self._at[address] = (schedule, attempt + 1)

    def longest_waiting(self) -> str | None:
        """The member that has waited longest for an early retry, moved to the
        back of the line so that the next call picks another."""
        if not self._at:
            return None
        address = next(iter(self._at))
        self._at[address] = self._at.pop(address)
        return address
