"""The issuer's lifetime bound (pep/auth/claims.py ``check_lifetime``) at its exact edges, for
issue 18's mutation gate: both readings (as issued, exp - iat, with no leeway; as remaining,
exp - now, with the leeway for clock skew), each inclusive of the bound itself, and what the
client is told."""

from __future__ import annotations

import pytest

from pep.auth.claims import check_lifetime, check_times
from pep.errors import Unauthorized

NOW = 1_700_000_000.0
MAX = 3600.0
LEEWAY = 30.0


def exceeded(exp: float, iat: float | None, now: float = NOW) -> tuple[int, str, str]:
    with pytest.raises(Unauthorized) as info:
        check_lifetime(exp, iat, now, MAX, LEEWAY)
    return info.value.status, info.value.code, info.value.message


def accepted(exp: float, iat: float | None, maximum: float | None = MAX) -> bool:
    check_lifetime(exp, iat, NOW, maximum, LEEWAY)  # raises when refused
    return True


TOLD = (401, "token_lifetime_exceeded", "token lifetime exceeds this issuer's maximum")


def test_a_token_issued_for_exactly_the_maximum_is_accepted_and_one_second_more_is_not() -> None:
    assert accepted(NOW + MAX - 10, NOW - 10)
    assert exceeded(NOW + MAX - 10 + 1, NOW - 10) == TOLD


def test_the_remaining_lifetime_may_reach_the_maximum_plus_leeway_but_not_pass_it() -> None:
    # No iat (introspection may not say): only exp - now is bounded, with the skew leeway.
    assert accepted(NOW + MAX + LEEWAY, None)
    assert exceeded(NOW + MAX + LEEWAY + 0.001, None) == TOLD
    # With an iat in the (skewed) future, exp - iat is within bounds while exp - now is not.
    assert accepted(NOW + MAX + LEEWAY, NOW + LEEWAY)
    assert exceeded(NOW + MAX + LEEWAY + 1, NOW + LEEWAY + 1) == TOLD


def test_no_maximum_means_no_bound() -> None:
    assert accepted(NOW * 10, NOW - 1e9, maximum=None)


def test_check_times_applies_the_bound_with_its_leeway() -> None:
    claims = {"iat": NOW, "exp": NOW + MAX}
    assert check_times(claims, LEEWAY, NOW, MAX) == NOW + MAX
    with pytest.raises(Unauthorized) as info:
        check_times({"iat": NOW, "exp": NOW + MAX + 1}, LEEWAY, NOW, MAX)
    assert (info.value.code, info.value.message) == TOLD[1:]
