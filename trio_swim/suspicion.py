"""Pure failure-detector rules: Lifeguard's local health and dynamic suspicion
timeouts, and the adaptive probe timeout."""

from __future__ import annotations

import math
from collections import deque


def min_suspicion_timeout(members: int, period: float, suspicion_mult: int) -> float:
    """``suspicion_mult x max(1, log10 n) x period``: the shortest suspicion."""
    return suspicion_mult * max(1.0, math.log10(max(1, members))) * period


def suspicion_timeout(
    confirmations: int, *, minimum: float, maximum: float, expected: int
) -> float:
    """Lifeguard's decaying timeout.

    ``max - (log(c + 1) / log(k + 1)) * (max - min)``, never below ``minimum``,
    where ``c`` counts independent confirmations and ``k`` is ``expected``.
    """
    if confirmations >= expected:
        return minimum
    fraction = math.log(confirmations + 1) / math.log(expected + 1)
    return max(minimum, maximum - fraction * (maximum - minimum))


def expected_confirmations(suspicion_mult: int, members: int) -> int:
    """``k = suspicion_mult - 2``, or 0 when too few members could confirm."""
    k = suspicion_mult - 2
    return k if members - 2 >= k else 0


class Suspicion:
    """One suspicion of one member at one incarnation.

    ``confirmers`` holds the members that reported it, ``origin`` (the first)
    included; it is bounded by ``expected + 1`` since further ones cannot
    shorten the timeout.

    When the deadline comes with fewer than ``expected`` confirmations, the
    suspect is probed once more before the verdict (:meth:`needs_recheck`):
    such a suspicion rests on few accusers, and the usual reason one outlives
    its timeout is that this member missed the refutation, not that the
    suspect is dead.
    """

    __slots__ = (
        "confirmers",
        "expected",
        "incarnation",
        "maximum",
        "minimum",
        "origin",
        "rechecking",
        "start",
    )

    def __init__(
        self,
        incarnation: int,
        first_source: str,
        start: float,
        *,
        minimum: float,
        maximum: float,
        expected: int,
    ) -> None:
        self.incarnation = incarnation
        self.start = start
        self.minimum = minimum
        self.maximum = maximum
        self.expected = expected
        self.origin = first_source
        self.confirmers = {first_source}
        self.rechecking = False
        """The deadline passed and the suspect is being probed once more."""

    @property
    def confirmations(self) -> int:
        """Independent confirmations after the first report."""
        return len(self.confirmers) - 1

    @property
    def deadline(self) -> float:
        """When the member is declared dead unless it refutes."""
        return self.start + suspicion_timeout(
            self.confirmations,
            minimum=self.minimum,
            maximum=self.maximum,
            expected=self.expected,
        )

    def needs_recheck(self) -> bool:
        """At the deadline: probe the suspect once more before declaring it dead?"""
        return not self.rechecking and self.confirmations < self.expected

    def restart(self, now: float) -> None:
        """The suspect answered the re-check: wait a whole timeout again for
        its refutation (the confirmations so far still count)."""
        self.start = now
        self.rechecking = False

    def confirm(self, source: str) -> bool:
        """Count a report from ``source``; True if it moved the deadline."""
        if source in self.confirmers or self.confirmations >= self.expected:
            return False
        self.confirmers.add(source)
        return True


class LocalHealth:
    """Lifeguard's local health score, 0 .. ``max_multiplier - 1``.

    It rises when this member shows signs of being the slow one (failed
    probes, missed nacks, having to refute) and falls on each successful
    probe; period and timeouts are scaled by ``score + 1``.
    """

    def __init__(self, max_multiplier: int) -> None:
        self.max_score = max_multiplier - 1
        self.score = 0

    def apply(self, delta: int) -> None:
        """Move the score by ``delta``, clamped to its range."""
        self.score = min(self.max_score, max(0, self.score + delta))

    @property
    def multiplier(self) -> int:
        """Factor applied to the probe period and timeouts."""
        return self.score + 1


class RttEstimator:
    """Probe timeout from recent round trips: mean + 3 standard deviations.

    Keeps the last ``window`` samples; with fewer than ``min_samples`` it
    answers ``ceiling``. The answer is clamped to ``floor .. ceiling``.
    """

    def __init__(
        self, floor: float, ceiling: float, *, window: int = 32, min_samples: int = 4
    ) -> None:
        self.floor = floor
        self.ceiling = ceiling
        self.min_samples = min_samples
        self._samples: deque[float] = deque(maxlen=window)

    def observe(self, rtt: float) -> None:
        """Record one measured round trip (seconds)."""
        self._samples.append(max(0.0, rtt))

    def timeout(self) -> float:
        """The ack timeout to use now."""
        if len(self._samples) < self.min_samples:
            return self.ceiling
        count = len(self._samples)
        mean = math.fsum(self._samples) / count
        spread = math.sqrt(math.fsum((s - mean) ** 2 for s in self._samples) / count)
        return min(self.ceiling, max(self.floor, mean + 3 * spread))


def probe_health_delta(acked: bool, helpers: int, nacks: int) -> int:
    """How one probe moves the local health score.

    An ack, direct or relayed, is a successful probe: -1. A failed probe
    with ``helpers`` asked to relay scores one per helper that did not even
    send a nack: a helper that nacked was heard, so the silence is the
    target's, not a sign that this member is the slow one. A failed probe
    with no one to ask scores +1.
    """
    if acked:
        return -1
    if helpers <= 0:
        return 1
    return max(0, helpers - nacks)


def nack_timeout(probe_timeout: float, period: float, probe_timeout_ceiling: float) -> float:
    """How long a member relaying a ping-req waits for the target before it nacks.

    Its own (unscaled) probe timeout, but no more than half of the window the
    requester keeps listening after its ping-reqs went out: at least
    ``period - probe_timeout_ceiling``. The other half is for the ping-req and
    the nack to travel. A nack sent early costs nothing: a later ack is still
    relayed.
    """
    return min(probe_timeout, max(0.0, period - probe_timeout_ceiling) / 2)
