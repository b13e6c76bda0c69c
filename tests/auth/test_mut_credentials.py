"""Where the token is read from (pep/auth/credentials.py) at its edges, for issue 18's
mutation gate: what each refusal tells the client (status, code, param, message), the size
check that runs before any parsing, and which whitespace is trimmed."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from pep.auth.credentials import extract_token
from pep.errors import GatewayError, InvalidAuthRequest, Unauthorized

LIMIT = 40


def refused(headers: Mapping[str, str], max_bytes: int = LIMIT) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        extract_token(headers, max_bytes)
    return info.value


def told(err: GatewayError) -> tuple[int, str, str | None, str]:
    return err.status, err.code, err.param, err.message


def multi(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


ONCE = (400, "invalid_request", "authorization", "send one credential header, once")


@pytest.mark.parametrize("pairs", [
    (("Authorization", "Bearer t1"), ("authorization", "Bearer t1")),
    (("x-api-key", "t1"), ("X-Api-Key", "t1")),
    (("x-api-key", "t1"), ("x-api-key", "t2"), ("Authorization", "Bearer t1")),
])
def test_a_repeated_credential_header_is_one_400_whichever_it_is(
    pairs: tuple[tuple[str, str], ...]
) -> None:
    err = refused(multi(*pairs))
    assert isinstance(err, InvalidAuthRequest)
    assert told(err) == ONCE


def test_headers_are_matched_by_name_case_insensitively_in_a_plain_mapping() -> None:
    assert extract_token({"X-API-KEY": "k1"}, LIMIT) == "k1"
    assert extract_token({"authorization": "BEARER k2", "Other": "x"}, LIMIT) == "k2"
    assert told(refused({"Authorization": "Bearer a", "AUTHORIZATION": "Bearer a"})) == ONCE


def test_a_multidict_without_either_header_has_no_credential() -> None:
    err = refused(multi(("Cookie", "token=abc")))
    assert isinstance(err, Unauthorized)
    assert told(err) == (401, "missing_token", None,
                         "no bearer token (Authorization: Bearer or x-api-key)")


TOO_LARGE = (401, "token_too_large", None, f"token is larger than {LIMIT} bytes")


def test_a_huge_authorization_value_is_too_large_before_it_is_parsed() -> None:
    # Malformed (a space inside) and over the size bound: the size is what is reported.
    huge = "Bearer " + "a " * ((LIMIT + 17 - 7) // 2)
    assert len(huge) == LIMIT + 17
    assert told(refused({"Authorization": huge})) == TOO_LARGE
    # At the bound exactly, the value is parsed (and found malformed).
    at_bound = huge[:-1]
    assert told(refused({"Authorization": at_bound})) == (
        400, "invalid_request", "authorization", "malformed Authorization header")


def test_a_huge_x_api_key_is_too_large_before_it_is_parsed() -> None:
    huge = "a," * ((LIMIT + 17) // 2) + "a"
    assert len(huge) == LIMIT + 17
    assert told(refused({"x-api-key": huge})) == TOO_LARGE
    assert told(refused({"x-api-key": huge[:-1]})) == (
        400, "invalid_request", "x-api-key", "malformed x-api-key header")


def test_a_well_formed_token_over_the_limit_is_too_large_and_at_the_limit_is_fine() -> None:
    assert extract_token({"Authorization": "Bearer " + "t" * LIMIT}, LIMIT) == "t" * LIMIT
    assert told(refused({"Authorization": "Bearer " + "t" * (LIMIT + 1)})) == TOO_LARGE
    assert extract_token({"x-api-key": "k" * LIMIT}, LIMIT) == "k" * LIMIT
    assert told(refused({"x-api-key": "k" * (LIMIT + 1)})) == TOO_LARGE


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearerx abc", "abc"])
def test_another_scheme_is_no_credential_and_says_so(value: str) -> None:
    err = refused({"Authorization": value})
    assert isinstance(err, Unauthorized)
    assert told(err) == (401, "missing_token", None, "only Bearer tokens are accepted")


def test_only_spaces_around_the_token_are_trimmed() -> None:
    assert extract_token({"Authorization": "  Bearer   tok  "}, LIMIT) == "tok"
    assert extract_token({"x-api-key": "  key  "}, LIMIT) == "key"
    # Only spaces: the token's own first and last characters are never trimmed.
    assert extract_token({"Authorization": "Bearer  XtokX "}, LIMIT) == "XtokX"
    assert extract_token({"x-api-key": " XkeyX  "}, LIMIT) == "XkeyX"
    # A tab between scheme and token is not a separator a b64token may start with.
    assert told(refused({"Authorization": "Bearer \ttok"})) == (
        400, "invalid_request", "authorization", "malformed Authorization header")
    assert told(refused({"x-api-key": "\tkey"})) == (
        400, "invalid_request", "x-api-key", "malformed x-api-key header")


def test_a_bearer_token_wins_only_when_it_agrees_with_the_api_key() -> None:
    assert extract_token(multi(("x-api-key", "same"), ("Authorization", "Bearer same")),
                         LIMIT) == "same"
    assert told(refused(multi(("x-api-key", "one"), ("Authorization", "Bearer two")))) == (
        400, "invalid_request", "authorization",
        "two different credentials (Authorization and x-api-key); send one")
