"""Fan-out of a member's events to any number of bounded subscribers (trio)."""

from __future__ import annotations

import weakref
from collections import deque
from types import TracebackType

import msgspec
import trio

from .events import Event, EventsMissed


class EventStream:
    """One subscriber's view of the events: an async iterator.

    It holds at most ``buffer`` events; the protocol never waits for it. When
    it is full, further events are counted and replaced by one
    :class:`EventsMissed` in their place. Iteration ends once the member has
    closed and the buffer is drained. Use ``async with`` (or :meth:`aclose`)
    to stop receiving early.
    """

    def __init__(self, hub: EventHub, buffer: int) -> None:
        self._hub = hub
        self._limit = buffer
        self._buffer: deque[Event] = deque()
        self._missed = 0
        self._closed = False
        self._waiters = trio.lowlevel.ParkingLot()

    def _push(self, event: Event) -> None:
        room = self._limit - len(self._buffer)
        if self._missed:
            if room < 2:
                self._missed += 1
                self._hub._events_dropped += 1
                return
            self._buffer.append(EventsMissed(self._missed))
            self._missed = 0
        elif room < 1:
            self._missed += 1
            self._hub._events_dropped += 1
            return
        self._buffer.append(event)
        self._waiters.unpark_all()

    def _close(self) -> None:
        self._closed = True
        self._waiters.unpark_all()

    def _lagging(self) -> bool:
        """True while this subscriber is behind: its buffer is full, or events
        were dropped that it has not yet been told about."""
        return self._missed > 0 or len(self._buffer) >= self._limit

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._buffer:
                await trio.lowlevel.checkpoint()
                if self._buffer:
                    return self._buffer.popleft()
                continue
            if self._missed:
                await trio.lowlevel.checkpoint()
                missed, self._missed = self._missed, 0
                return EventsMissed(missed)
            if self._closed:
                raise StopAsyncIteration
            await self._waiters.park()

    async def aclose(self) -> None:
        """Unsubscribe; iteration then ends after the buffered events."""
        self._hub._subscribers.discard(self)
        self._close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class HubStatistics(msgspec.Struct, frozen=True):
    """How the subscribers of one member keep up (see ``EventHub.statistics()``)."""

    subscribers: int
    """Streams subscribed now."""
    lagging: int
    """Subscribers behind now: a full buffer, or dropped events not yet reported."""
    events_dropped: int
    """Events dropped for a full subscriber since the member started (all subscribers)."""


class EventHub:
    """Fans events out to subscribers without ever blocking the publisher.

    Subscribers are held weakly: a stream the user dropped costs nothing.
    """

    def __init__(self) -> None:
        self._subscribers: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._closed = False
        self._events_dropped = 0

    def subscribe(self, buffer: int) -> EventStream:
        """A new stream that sees every event from now on."""
        stream = EventStream(self, buffer)
        if self._closed:
            stream._close()
        else:
            self._subscribers.add(stream)
        return stream

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber (never blocks)."""
        for stream in list(self._subscribers):
            stream._push(event)

    def statistics(self) -> HubStatistics:
        """How many subscribers there are, how many are behind, and what they missed."""
        streams = list(self._subscribers)
        return HubStatistics(
            subscribers=len(streams),
            lagging=sum(1 for stream in streams if stream._lagging()),
            events_dropped=self._events_dropped,
        )

    def close(self) -> None:
        """End every stream once it is drained."""
        self._closed = True
        for stream in list(self._subscribers):
            stream._close()
        self._subscribers.clear()
