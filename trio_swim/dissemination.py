"""Pure dissemination rules: the piggyback queue and broadcast de-duplication."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

# Below this many bytes of room, no message can fit: stop looking.
_SMALLEST_MESSAGE = 8
# Entries examined per take, so one packet never costs a scan of everything,
# and misses in a row after which the packet counts as full.
_MAX_SCAN = 256
_MAX_MISSES = 16


def retransmit_limit(retransmit_mult: int, members: int) -> int:
    """How many times each update is sent: ``mult x ceil(log10(n + 1))``."""
    return retransmit_mult * max(1, math.ceil(math.log10(members + 1)))


class _Entry(Generic[T]):
    __slots__ = ("message", "sends", "size")

    def __init__(self, message: T, size: int) -> None:
        self.message = message
        self.size = size
        self.sends = 0


class PiggybackQueue(Generic[T]):
    """Messages waiting to ride on outgoing packets, fewest-sent first.

    Each key holds one message: putting a key again replaces its message and
    restarts its count (news about a member supersedes older news). Bound:
    ``max_items``; when full, the entry sent most often is evicted.
    """

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._entries: dict[Hashable, _Entry[T]] = {}
        # _by_sends[k] holds the keys sent k times, oldest first.
        self._by_sends: list[dict[Hashable, None]] = [{}]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def sends(self, key: Hashable) -> int | None:
        """How often the message under ``key`` has been sent (None: not queued)."""
        entry = self._entries.get(key)
        return None if entry is None else entry.sends

    def put(self, key: Hashable, message: T, size: int, *, sent: int = 0) -> None:
        """Queue ``message`` (of ``size`` encoded bytes) under ``key``, as if
        already sent ``sent`` times (lower priority, fewer sends to come)."""
        self.discard(key)
        if len(self._entries) >= self.max_items:
            self._evict_most_sent()
        entry = self._entries[key] = _Entry(message, size)
        entry.sends = sent
        while len(self._by_sends) <= sent:
            self._by_sends.append({})
        self._by_sends[sent][key] = None

    def discard(self, key: Hashable) -> None:
        """Stop sending the message under ``key``, if any."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            del self._by_sends[entry.sends][key]

    def take(self, budget: int, limit: int) -> list[T]:
        """Messages that fit in ``budget`` bytes, fewest-sent first.

        Each taken message counts one send; one that reaches ``limit`` sends
        is dropped from the queue.
        """
        return self.take_sized(budget, limit)[0]

    def take_sized(self, budget: int, limit: int) -> tuple[list[T], int]:
        """Like :meth:`take`, and also the bytes the taken messages use."""
        room = budget
        entries = self._entries
        taken: list[tuple[Hashable, _Entry[T]]] = []
        scanned = misses = 0
        for sends, keys in enumerate(self._by_sends):
            if (
                sends >= limit
                or budget < _SMALLEST_MESSAGE
                or scanned >= _MAX_SCAN
                or misses >= _MAX_MISSES
            ):
                break
            for key in keys:
                scanned += 1
                entry = entries[key]
                if entry.size <= budget:
                    taken.append((key, entry))
                    budget -= entry.size
                    if budget < _SMALLEST_MESSAGE:
                        break
                else:
                    misses += 1
                    if misses >= _MAX_MISSES:
                        break
                if scanned >= _MAX_SCAN:
                    break
        messages = []
        by_sends = self._by_sends
        for key, entry in taken:
            messages.append(entry.message)
            level = by_sends[entry.sends]
            del level[key]
            if not level:
                # A dict keeps its largest size once emptied: after a crowd
                # joined that is thousands of slots per level, so start afresh.
                by_sends[entry.sends] = {}
            entry.sends += 1
            if entry.sends >= limit:
                del entries[key]
                continue
            if len(by_sends) <= entry.sends:
                by_sends.append({})
            by_sends[entry.sends][key] = None
        self._drop_exhausted(limit)
        return messages, room - budget

    def _drop_exhausted(self, limit: int) -> None:
        # The limit falls when the cluster shrinks.
        while len(self._by_sends) > max(1, limit):
            for key in self._by_sends.pop():
                del self._entries[key]

    def _evict_most_sent(self) -> None:
        for keys in reversed(self._by_sends):
            if keys:
                self.discard(next(iter(keys)))
                return


class SeenSet:
    """Keys seen recently, for delivering each broadcast once.

    Bound: ``max_entries``; when full, the oldest key is forgotten first (a
    broadcast older than that could then be delivered again). Keys expire
    ``ttl`` seconds after they were first seen.
    """

    def __init__(self, max_entries: int, ttl: float) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._expiry: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def first_time(self, key: Hashable, now: float) -> bool:
        """Record ``key``; True if it was not seen within the last ``ttl`` seconds."""
        while self._expiry:
            oldest, expires = next(iter(self._expiry.items()))
            if expires > now:
                break
            del self._expiry[oldest]
        if key in self._expiry:
            return False
        if len(self._expiry) >= self.max_entries:
            self._expiry.popitem(last=False)
        self._expiry[key] = now + self.ttl
        return True
