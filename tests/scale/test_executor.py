"""The executor seam on its own: results come back in call order whatever order tasks finish in, and a
``window`` bounds how many calls are submitted and unfinished at once (calls that carry data, read lazily)."""

from __future__ import annotations

import time

from bertplat.executor import _gather, run_tasks


def slow_square(x: int, delay: float) -> int:
    time.sleep(delay)
    return x * x


def test_results_are_in_call_order_and_the_window_bounds_what_is_in_flight():
    from concurrent.futures import ThreadPoolExecutor

    read: list[int] = []
    in_flight: list[int] = []

    def calls():
        for i in range(12):
            read.append(i)
            in_flight.append(len(read) - len(done))
            yield (i, 0.02 * ((7 * i) % 5))  # finish out of order

    done: list[int] = []
    with ThreadPoolExecutor(4) as pool:
        results = _gather(pool, slow_square, calls(), lambda i, r: done.append(i), window=3)
    assert results == [i * i for i in range(12)]
    assert sorted(done) == list(range(12))
    assert max(in_flight) <= 3  # never more than the window submitted and unfinished


def test_the_local_pool_takes_a_generator_too():
    assert run_tasks(slow_square, ((i, 0.0) for i in range(5)), workers=2, window=2) == [0, 1, 4, 9, 16]
    assert run_tasks(slow_square, ((i, 0.0) for i in range(3)), workers=1) == [0, 1, 4]
