"""Timers as data: one heap of (deadline, timer), and the timer kinds of the core.

Each kind is a small frozen struct that names what is due and carries the
token (a probe's seq, a record's incarnation, a retry's attempt) by which its
handler recognises a stale timer: one whose moment has passed for another
reason (the probe was answered, the member refuted, died again or left). A
stale timer does nothing, so nothing is ever cancelled.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

import msgspec

T = TypeVar("T")


class TimerHeap(Generic[T]):
    """Deadlines in order; ties pop in the order they were pushed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, deadline: float, item: T) -> None:
        """Fire ``item`` at ``deadline``."""
        heapq.heappush(self._heap, (deadline, next(self._counter), item))

    def next_deadline(self) -> float | None:
        """The earliest deadline, if any."""
        return self._heap[0][0] if self._heap else None

    def peek(self) -> T | None:
        """The earliest item, left in place."""
        return self._heap[0][2] if self._heap else None

    def pop(self) -> None:
        """Drop the earliest item."""
        heapq.heappop(self._heap)

    def pop_due(self, now: float) -> T | None:
        """Remove and return the earliest item due at or before ``now``, if any."""
        if self._heap and self._heap[0][0] <= now:
            return heapq.heappop(self._heap)[2]
        return None


class ProbePeriodEnd(msgspec.Struct, frozen=True):
    """The protocol period is over: conclude its probe, start the next period.

    Never stale: exactly one is pending while the member runs.
    """


class ProbeTimeout(msgspec.Struct, frozen=True):
    """The direct ping ``seq`` had its time: ask helpers to ping the target.

    Stale once that probe was answered (it is no longer the current probe).
    """

    seq: int


class SuspicionDue(msgspec.Struct, frozen=True):
    """The suspicion of ``address`` at ``incarnation`` may have run out.

    Stale if the member refuted, died or left meanwhile, or if a restarted
    suspicion moved the deadline (a later timer stands for it).
    """

    address: str
    incarnation: int


class RetryDead(msgspec.Struct, frozen=True):
    """Ping the DEAD member ``address`` again (retry ``attempt`` of ``schedule``).

    ``attempt`` None is a one-off early retry outside the backoff schedule.
    Stale if the member is no longer DEAD, or died again since (each verdict
    starts a schedule with a new number).
    """

    address: str
    attempt: int | None
    schedule: int = 0


class RemoveLeft(msgspec.Struct, frozen=True):
    """Forget ``address``, which left at ``incarnation``. Stale if it came back."""

    address: str
    incarnation: int


class RelayNack(msgspec.Struct, frozen=True):
    """The ping relayed as ``seq`` got no ack yet: nack the requester.

    Stale once the ack was relayed.
    """

    seq: int


class RelayEnd(msgspec.Struct, frozen=True):
    """Stop waiting for a late ack to the relayed ping ``seq``."""

    seq: int


class GossipDue(msgspec.Struct, frozen=True):
    """Send pending news to a few random members. Repeats while there is
    news; at most one is pending, so it is never stale."""


class SyncDue(msgspec.Struct, frozen=True):
    """Exchange full state with one random member. Repeats; never stale."""


class SeedAttempt(msgspec.Struct, frozen=True):
    """Send a join to every seed (attempt number ``attempt``).

    Stale if a seed answered meanwhile or a newer attempt was scheduled.
    """

    attempt: int


class SeedWaitOver(msgspec.Struct, frozen=True):
    """No seed answered join attempt ``attempt`` in time: back off and retry.

    Stale if a seed answered meanwhile.
    """

    attempt: int


class FollowUpSync(msgspec.Struct, frozen=True):
    """After joining: one more exchange, for news that passed this member by."""


class SeedRecheck(msgspec.Struct, frozen=True):
    """Send a join to every seed no longer held live. Repeats; never stale."""


Timer = (
    ProbePeriodEnd
    | ProbeTimeout
    | SuspicionDue
    | RetryDead
    | RemoveLeft
    | RelayNack
    | RelayEnd
    | GossipDue
    | SyncDue
    | SeedAttempt
    | SeedWaitOver
    | FollowUpSync
    | SeedRecheck
)
"""Every kind of timer the protocol core sets."""
