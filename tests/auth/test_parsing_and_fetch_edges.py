"""Edges of the identity layer's input handling: the compact-JWS parser, credential
extraction from headers, and the IdP fetcher (size limits, redirects, non-JSON answers), each
against real inputs and a loopback HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pep.auth.credentials import extract_token
from pep.auth.fetch import FetchError, FetchPolicy, fetch_json, is_loopback_host
from pep.auth.jws import MAX_KID_LENGTH, parse_compact
from pep.errors import BadRequest, GatewayError, Unauthorized
from tests.auth.fakeidp import raw_token, serve

# -- compact JWS ------------------------------------------------------------------------------

GOOD_HEADER = {"alg": "RS256", "kid": "k1", "typ": "at+jwt"}
PAYLOAD = {"iss": "https://idp", "sub": "alice"}


def jws_error(token: str) -> str:
    with pytest.raises(Unauthorized) as info:
        parse_compact(token)
    assert info.value.code == "invalid_token"
    return info.value.message


def test_a_well_formed_token_parses_into_its_parts() -> None:
    token = raw_token(GOOD_HEADER, PAYLOAD, b"sig")
    jws = parse_compact(token)
    assert (jws.alg, jws.kid, jws.header, jws.payload) == ("RS256", "k1", GOOD_HEADER, PAYLOAD)
    assert jws.signing_input == token.rsplit(".", 1)[0].encode()
    assert jws.signature == b"sig"


@pytest.mark.parametrize("token", ["a.b", "a.b.c.d", "abc"])
def test_a_token_must_have_three_segments(token: str) -> None:
    assert jws_error(token) == "token is not a compact JWS"


@pytest.mark.parametrize("which", [0, 1, 2])
def test_no_segment_may_be_empty(which: int) -> None:
    parts = raw_token(GOOD_HEADER, PAYLOAD, b"sig").split(".")
    parts[which] = ""
    assert jws_error(".".join(parts)) == "token has an empty segment"


def test_a_segment_of_impossible_length_is_not_canonical() -> None:
    good = raw_token(GOOD_HEADER, PAYLOAD, b"sig")
    head, body, _ = good.split(".")
    assert jws_error(f"{head}.{body}.AAAAA") == "token signature is not canonical base64url"


@pytest.mark.parametrize("alg", [None, "", 3])
def test_the_header_must_name_an_algorithm(alg: Any) -> None:
    header = {k: v for k, v in GOOD_HEADER.items() if k != "alg"}
    if alg is not None:
        header["alg"] = alg
    assert jws_error(raw_token(header, PAYLOAD, b"sig")) == "token header has no algorithm"


@pytest.mark.parametrize("kid", ["", "k" * (MAX_KID_LENGTH + 1), 7, None])
def test_a_malformed_kid_is_refused(kid: Any) -> None:
    token = raw_token({**GOOD_HEADER, "kid": kid}, PAYLOAD, b"sig")
    assert jws_error(token) == "token key id is malformed"


def test_a_kid_at_the_length_limit_and_a_missing_kid_are_fine() -> None:
    assert parse_compact(raw_token({**GOOD_HEADER, "kid": "k" * MAX_KID_LENGTH}, PAYLOAD, b"s")).kid
    no_kid = {k: v for k, v in GOOD_HEADER.items() if k != "kid"}
    assert parse_compact(raw_token(no_kid, PAYLOAD, b"s")).kid is None


@pytest.mark.parametrize("typ", [3, ["at+jwt"], {"t": 1}])
def test_a_typ_that_is_not_a_string_is_refused(typ: Any) -> None:
    token = raw_token({**GOOD_HEADER, "typ": typ}, PAYLOAD, b"sig")
    assert jws_error(token) == "token type header is malformed"


# -- credentials ------------------------------------------------------------------------------


def credential_error(headers: dict[str, str], max_bytes: int = 64) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        extract_token(headers, max_bytes)
    return info.value


def test_the_same_token_in_both_headers_is_accepted() -> None:
    assert extract_token({"Authorization": "Bearer abc", "x-api-key": "abc"}, 64) == "abc"
    assert extract_token({"x-api-key": " abc "}, 64) == "abc"


def test_an_oversized_x_api_key_is_refused_before_parsing() -> None:
    err = credential_error({"x-api-key": "a" * 100})
    assert (err.status, err.code, err.message) == (401, "token_too_large",
                                                   "token is larger than 64 bytes")


def test_an_x_api_key_just_over_the_limit_is_too_large() -> None:
    err = credential_error({"x-api-key": "a" * 65})
    assert (err.status, err.code) == (401, "token_too_large")


@pytest.mark.parametrize("key", ["a b", "tok\u00e9n", "a,b", "=abc"])
def test_a_malformed_x_api_key_is_a_400(key: str) -> None:
    err = credential_error({"x-api-key": key})
    assert isinstance(err, BadRequest)
    assert (err.code, err.param, err.message) == ("invalid_request", "x-api-key",
                                                  "malformed x-api-key header")


def test_two_different_credentials_are_a_400() -> None:
    err = credential_error({"Authorization": "Bearer abc", "x-api-key": "xyz"})
    assert (err.status, err.param) == (400, "authorization")
    assert err.message == "two different credentials (Authorization and x-api-key); send one"


def test_no_credential_is_a_401_missing_token() -> None:
    err = credential_error({})
    assert (err.status, err.code) == (401, "missing_token")
    assert err.message == "no bearer token (Authorization: Bearer or x-api-key)"


# -- fetching from the IdP ----------------------------------------------------------------------

POLICY = FetchPolicy(allow_insecure_http=True, timeout_s=5.0, max_bytes=1024)


@pytest.fixture
async def idp_http() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async def route(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "ok":
            return web.json_response({"ok": True})
        if name == "big-declared":
            return web.Response(body=b"{" + b" " * 2000 + b"}", content_type="application/json")
        if name == "big-streamed":
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(b"[" + b"1," * 1000 + b"1]")
            return resp
        if name == "no-location":
            return web.Response(status=302)
        if name == "elsewhere":
            raise web.HTTPFound("http://127.0.0.2:9/x")
        if name == "same-origin":
            raise web.HTTPFound("/ok")
        if name == "loop":
            raise web.HTTPFound("/loop")
        if name == "text":
            return web.Response(text="<html>", content_type="text/html")
        if name == "array":
            return web.json_response([1, 2])
        return web.Response(status=500)

    app = web.Application()
    app.router.add_get("/{name}", route)
    runner, url = await serve(app)
    async with aiohttp.ClientSession() as session:
        try:
            yield url, session
        finally:
            await runner.cleanup()


async def fetch_error(idp_http: tuple[str, aiohttp.ClientSession], path: str) -> str:
    url, session = idp_http
    with pytest.raises(FetchError) as info:
        await fetch_json(session, f"{url}/{path}", POLICY)
    return str(info.value)


async def test_a_json_object_is_fetched(idp_http: tuple[str, aiohttp.ClientSession]) -> None:
    url, session = idp_http
    doc, headers = await fetch_json(session, f"{url}/ok", POLICY)
    assert doc == {"ok": True} and headers["Content-Type"].startswith("application/json")


async def test_a_same_origin_redirect_is_followed(idp_http: tuple[str, aiohttp.ClientSession]) -> None:
    url, session = idp_http
    doc, _ = await fetch_json(session, f"{url}/same-origin", POLICY)
    assert doc == {"ok": True}


@pytest.mark.parametrize(("path", "message"), [
    ("big-declared", "response larger than 1024 bytes"),
    ("big-streamed", "response larger than 1024 bytes"),
    ("no-location", "redirect without Location from 127.0.0.1"),
    ("elsewhere", "redirect from 127.0.0.1 to another origin refused"),
    ("loop", "too many redirects from 127.0.0.1"),
    ("text", "127.0.0.1 returned a body that is not JSON"),
    ("array", "127.0.0.1 returned JSON that is not an object"),
    ("broken", "127.0.0.1 answered HTTP 500"),
])
async def test_an_unusable_idp_answer_is_a_fetch_error(
    idp_http: tuple[str, aiohttp.ClientSession], path: str, message: str
) -> None:
    assert await fetch_error(idp_http, path) == message


async def test_an_unreachable_idp_is_a_fetch_error() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(FetchError) as info:
            await fetch_json(session, "http://127.0.0.1:1/jwks", POLICY)
    assert str(info.value).startswith("cannot reach 127.0.0.1: ")


@pytest.mark.parametrize(("host", "loopback"), [
    (None, False), ("", False), ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True),
    ("::1", True), ("127.9.9.9", True), ("10.0.0.1", False), ("idp.example.com", False),
])
def test_loopback_hosts(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_a_one_character_kid_is_fine() -> None:
    assert parse_compact(raw_token({**GOOD_HEADER, "kid": "a"}, PAYLOAD, b"s")).kid == "a"


def test_a_segment_ending_in_x_is_canonical() -> None:
    token = raw_token(GOOD_HEADER, PAYLOAD, b"\x00\x00\x17")
    assert token.endswith(".AAAX")
    assert parse_compact(token).signature == b"\x00\x00\x17"


@pytest.mark.parametrize("which", ["header", "payload", "signature"])
def test_non_canonical_base64url_names_the_segment(which: str) -> None:
    parts = dict(zip(("header", "payload", "signature"),
                     raw_token(GOOD_HEADER, PAYLOAD, b"sig").split(".")))
    parts[which] = parts[which][:-1] + "+"  # not in the base64url alphabet
    assert jws_error(".".join(parts.values())) == f"token {which} is not canonical base64url"


@pytest.mark.parametrize("which", ["header", "payload"])
@pytest.mark.parametrize(("text", "problem"), [
    ('{"a": NaN}', "is not a valid JSON object"), ('{"a": Infinity}', "is not a valid JSON object"),
    ('{"a": 1, "a": 2}', "is not a valid JSON object"), ("{", "is not a valid JSON object"),
    ("[1]", "is not a JSON object"), ('"x"', "is not a JSON object"),
])
def test_json_problems_name_the_segment(which: str, text: str, problem: str) -> None:
    import base64

    encoded = base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
    header: Any = GOOD_HEADER
    payload: Any = PAYLOAD
    if which == "header":
        header = encoded
    else:
        payload = encoded
    assert jws_error(raw_token(header, payload, b"sig")) == f"token {which} {problem}"


@pytest.mark.parametrize("name", ["jku", "x5u", "jwk", "x5c", "crit", "b64", "enc", "zip"])
def test_forbidden_header_parameters_are_named(name: str) -> None:
    token = raw_token({**GOOD_HEADER, name: "x"}, PAYLOAD, b"sig")
    assert jws_error(token) == f"token header parameter {name!r} is not accepted"
