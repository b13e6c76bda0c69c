"""``route_fails(ErrorClass)``: the router raised RouteFailed carrying that client error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Generic, TypeVar

import pytest

from pep.errors import GatewayError
from pep.routing.outcome import RouteFailed

E = TypeVar("E", bound=GatewayError)


class Caught(Generic[E]):
    """After the block: ``value`` is the client-facing error, ``failure`` the RouteFailed."""

    value: E
    failure: RouteFailed


@contextlib.contextmanager
def route_fails(cls: type[E]) -> Iterator[Caught[E]]:
    caught: Caught[E] = Caught()
    with pytest.raises(RouteFailed) as info:
        yield caught
    error = info.value.error
    assert isinstance(error, cls), f"expected {cls.__name__}, the router raised {error!r}"
    caught.value, caught.failure = error, info.value
