"""The clock offset a worker keeps from the server readings its heartbeats bring back."""

from __future__ import annotations

from pgqueue.worker.lease import Identity


class _Clock:
    """A clock that reads ``now`` and then moves on by ``step`` per reading (a round trip)."""

    def __init__(self, now: float, step: float) -> None:
        self.now, self.step = now, step

    def time(self) -> float:
        t = self.now
        self.now += self.step
        return t

    def monotonic(self) -> float:
        return self.now


def test_clocks_that_agree_within_the_round_trip_keep_offset_zero() -> None:
    clock, ident = _Clock(1000.0, 0.002), Identity()
    before = clock.time()  # 1000.000; the next reading, "after", is 1000.002
    ident.measure(before, 1000.0015, clock)
    assert ident.clock_offset == 0.0


def test_a_worker_ahead_gets_a_negative_offset_within_half_a_round_trip() -> None:
    clock, ident = _Clock(1300.0, 0.002), Identity()  # 300 s ahead of a server at 1000
    before = clock.time()
    ident.measure(before, 1000.001, clock)
    assert abs(ident.clock_offset - (-300.0)) <= 0.001


def test_a_worker_behind_gets_a_positive_offset() -> None:
    clock, ident = _Clock(700.0, 0.002), Identity()
    before = clock.time()
    ident.measure(before, 1000.001, clock)
    assert abs(ident.clock_offset - 300.0) <= 0.001
