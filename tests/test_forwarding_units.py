"""Forwarding's pure logic: circuit breaker states, backoff bounds, commit ordering, vendor config checks.
These parts have no I/O; the clock is passed in so time-dependent states are exact."""
from __future__ import annotations

import random

import pytest

from analytics.spool import Position
from gateway.config import ConfigError, parse_config
from gateway.forwarding.breaker import CircuitBreaker
from gateway.forwarding.outbox import CommitTracker
from gateway.forwarding.retry import RetryPolicy, is_retryable
from harness import SECRET


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_lets_one_probe_through():
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_after=10.0, clock=clock)
    for _ in range(2):
        assert breaker.acquire() == 0
        breaker.record_failure()
    breaker.record_success()  # a success in between resets the count
    for _ in range(3):
        assert breaker.acquire() == 0
        breaker.record_failure()
    assert breaker.state == "open" and breaker.acquire() == pytest.approx(10.0)
    clock.now += 4
    assert breaker.acquire() == pytest.approx(6.0)
    clock.now += 6
    assert breaker.acquire() == 0  # the probe
    assert breaker.state == "half_open" and breaker.acquire() > 0  # nobody else meanwhile
    breaker.record_failure()  # the probe failed: open again for a full period
    assert breaker.state == "open" and breaker.acquire() == pytest.approx(10.0)
    clock.now += 10
    assert breaker.acquire() == 0
    breaker.record_success()
    assert breaker.state == "closed" and breaker.acquire() == 0


def test_backoff_doubles_with_jitter_up_to_the_maximum():
    policy = RetryPolicy(initial=1.0, maximum=60.0, give_up_after=3600, rng=random.Random(7))
    for failed in range(1, 12):
        ceiling = min(60.0, 2.0 ** (failed - 1))
        delays = [policy.delay(failed) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 10  # jittered, not lockstep


def test_which_answers_are_retried():
    assert [s for s in (200, 301, 400, 401, 403, 404, 408, 413, 422, 425, 429, 500, 502, 503) if is_retryable(s)] \
        == [408, 425, 429, 500, 502, 503]


def test_commit_tracker_never_passes_an_open_batch():
    tracker = CommitTracker()
    first, second, third = (tracker.add(Position(1, n), 2) for n in (10, 20, 30))
    tracker.close_one(second)
    tracker.close_one(second)
    assert tracker.committable() is None  # the first batch is still open
    tracker.close_one(first)
    assert tracker.committable() is None
    tracker.close_one(first)
    assert tracker.committable() == Position(1, 20)  # first and second; third still open
    tracker.close_one(third)
    tracker.close_one(third)
    assert tracker.committable() == Position(1, 30)
    assert tracker.committable() is None
    assert tracker.committable() is None and tracker.add(Position(2, 0), 0) and tracker.committable() == Position(2, 0)


def config_with_vendor(tmp_path, **vendor):
    raw = {"gateway": {"secret_key": SECRET}, "sites": {"demo": {"origins": ["https://www.example.com"],
                                                                 "vendors": [vendor]}}}
    return parse_config(raw, tmp_path, env={})


def test_vendor_config_problems_name_their_key(tmp_path):
    with pytest.raises(ConfigError) as exc:
        config_with_vendor(tmp_path, name="ga", type="ga4", fields=["url", "email"], retry_initial=0,
                           max_concurrency=0)
    text = "\n".join(exc.value.problems)
    for expected in ("sites.demo.vendors[0].measurement_id: missing", "sites.demo.vendors[0].api_secret: missing",
                     "sites.demo.vendors[0].fields[1]: unknown field 'email'", "vendors[0].retry_initial: must be > 0",
                     "max_concurrency and breaker_failures must be >= 1"):
        assert expected in text, text
    vendor = config_with_vendor(tmp_path, name="m", type="meta_capi", pixel_id="1", access_token="t",
                                retry_max=5, breaker_reset=2.5).sites["demo"].vendors[0]
    assert (vendor.retry_max, vendor.breaker_reset, vendor.retry_hours) == (5.0, 2.5, 72.0)
