"""Trackers on both stores with a controllable clock; Redis keys under a unique prefix."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from pep.usage.counters import CounterTracker
from pep.usage.settings import UsageSettings
from pep.usage.tracker import open_tracker
from tests.conftest import drop_redis_prefix

# 2025-03-14T15:09:26.5Z: mid-minute, mid-month.
T0 = 1741964966.5

PRICES: dict[str, Any] = {
    "prices": {"mock-gpt": {"input_per_1m": 3.0, "output_per_1m": 15.0}},
}


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"regogate-test:{uuid.uuid4().hex}:"
    yield prefix
    drop_redis_prefix(redis_url, prefix)


TrackerFactory = Callable[..., Any]


@pytest.fixture
async def make_redis_tracker(
    redis_url: str, redis_prefix: str, clock: Clock
) -> AsyncIterator[TrackerFactory]:
    """Several trackers on one Redis: several gateway replicas."""
    made: list[CounterTracker] = []

    async def make(**overrides: Any) -> CounterTracker:
        # These tests are about atomicity and sharing, not latency: a generous timeout keeps
        # them deterministic on a loaded 2-core CI machine (production default is 0.25 s).
        settings = UsageSettings(store=redis_url, key_prefix=redis_prefix,
                                 **{"timeout_s": 5.0, **PRICES, **overrides})
        tracker = open_tracker(settings, clock=clock)
        assert isinstance(tracker, CounterTracker)
        await tracker.start()
        made.append(tracker)
        return tracker

    yield make
    for t in made:
        await t.close()


@pytest.fixture(params=["memory", "redis"])
async def tracker(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[CounterTracker]:
    """The same behaviour, checked on both stores."""
    if request.param == "redis":
        # As make_redis_tracker: behaviour, not latency, so a generous timeout keeps the
        # concurrent-admission tests deterministic on a loaded machine (seen failing at 0.25 s
        # with "Timeout connecting to server" at a load average of 15).
        settings = UsageSettings(store=request.getfixturevalue("redis_url"),
                                 key_prefix=request.getfixturevalue("redis_prefix"),
                                 timeout_s=5.0, **PRICES)
    else:
        settings = UsageSettings(**PRICES)
    t = open_tracker(settings, clock=clock)
    assert isinstance(t, CounterTracker)
    await t.start()
    yield t
    await t.close()
