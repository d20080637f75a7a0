"""Timers as data: one heap of (deadline, item), popped by one task.

Items are plain values; whoever handles a popped item checks that it still
applies (a stale timer does nothing), so nothing is ever cancelled.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

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

    def pop_due(self, now: float) -> list[T]:
        """Remove and return every item whose deadline is at or before ``now``."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due
