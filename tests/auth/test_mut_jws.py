"""Canonical base64url in pep/auth/jws.py for segments of every length, for issue 18's
mutation gate: each byte string has exactly one accepted spelling (no padding, zero stray
bits), every other spelling of it is refused naming the segment, and a whole token of
segments of each length class parses back to its bytes."""

from __future__ import annotations

import base64

import pytest

from pep.auth.jws import b64url_decode, parse_compact
from pep.errors import Unauthorized
from tests.auth.fakeidp import b64json, b64url


def refused(segment: str, what: str = "signature") -> str:
    with pytest.raises(Unauthorized) as info:
        b64url_decode(segment, what)
    assert info.value.code == "invalid_token"
    return info.value.message


@pytest.mark.parametrize("size", range(0, 25))
def test_every_length_class_round_trips(size: int) -> None:
    raw = bytes((7 * i + 200) % 256 for i in range(size))
    segment = b64url(raw)
    assert len(segment) % 4 != 1
    assert b64url_decode(segment, "signature") == raw


@pytest.mark.parametrize("size", range(1, 13))
def test_a_whole_token_with_a_signature_of_each_length_parses(size: int) -> None:
    sig = bytes(range(size))
    jws = parse_compact(f"{b64json({'alg': 'ES256'})}.{b64json({'sub': 'a'})}.{b64url(sig)}")
    assert jws.signature == sig


@pytest.mark.parametrize("what", ["header", "payload", "signature"])
def test_stray_bits_after_the_last_byte_are_a_second_spelling_and_refused(what: str) -> None:
    # "AAB" decodes to b"\x00\x00" like "AAA", with a non-zero bit the encoder never writes.
    assert base64.urlsafe_b64decode("AAB=") == base64.urlsafe_b64decode("AAA=")
    assert refused("AAB", what) == f"token {what} is not canonical base64url"
    assert refused("AAAAAB", what) == f"token {what} is not canonical base64url"
    assert b64url_decode("AAA", what) == b"\x00\x00"


@pytest.mark.parametrize("segment", ["AAA=", "AA==", "AAAAAA==", "AAAA===="])
def test_padding_is_a_second_spelling_and_refused(segment: str) -> None:
    assert refused(segment) == "token signature is not canonical base64url"


@pytest.mark.parametrize("segment", ["A", "AAAAA", "AAAAAAAAA"])
def test_a_length_no_encoder_produces_is_refused(segment: str) -> None:
    assert refused(segment, "payload") == "token payload is not canonical base64url"
