"""Fetching IdP documents: the rules mutants of pep/auth/fetch.py showed untested (issue 18),
against real loopback servers: bodies that arrive in pieces, the exact size bound, every
redirect status and the redirect budget, origins that differ by scheme or port, what is sent,
the messages an operator reads, and Cache-Control parsing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from pep.auth.fetch import FetchError, FetchPolicy, check_url, fetch_json, is_loopback_host, max_age
from tests.auth.fakeidp import serve

LIMIT = 64
POLICY = FetchPolicy(allow_insecure_http=False, timeout_s=5.0, max_bytes=LIMIT)
ROOMY = FetchPolicy(allow_insecure_http=False, timeout_s=5.0, max_bytes=10_000)
Server = tuple[str, aiohttp.ClientSession, list[web.Request]]


HOLD_S = 5.0  # how long /slow holds its answer: far past every client timeout below


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    seen: list[web.Request] = []
    released = asyncio.Event()  # set at teardown, so a held answer does not delay cleanup

    async def route(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        name = request.match_info["name"]
        if name == "pieces":
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(b'{"keys": [')
            await asyncio.sleep(0.05)  # lets the first piece reach the client alone
            await resp.write(b"1]}")
            await resp.write_eof()
            return resp
        if name == "exact":  # a JSON object of exactly LIMIT bytes, length declared
            return web.Response(body=b'{"a": "' + b"x" * (LIMIT - 9) + b'"}',
                                content_type="application/json")
        if name == "exact-streamed":
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(b'{"a": "' + b"x" * (LIMIT - 9) + b'"}')
            await resp.write_eof()
            return resp
        if name == "over-streamed":
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(b'{"a": "' + b"x" * (LIMIT - 8) + b'"}')
            await resp.write_eof()
            return resp
        if name.startswith("hop-"):  # hop-3 -> hop-2 -> hop-1 -> hop-0 (an answer)
            left = int(name.removeprefix("hop-"))
            if left == 0:
                return web.json_response({"hops": "done"})
            raise web.HTTPFound(f"/hop-{left - 1}")
        if name == "echo":
            return web.json_response({"accept": request.headers.get("Accept"),
                                      "authorization": request.headers.get("Authorization"),
                                      "method": request.method})
        if name == "other-port":
            port = int(request.url.port or 0)
            raise web.HTTPFound(f"http://127.0.0.1:{port + 1}/echo")
        if name == "other-scheme":
            raise web.HTTPFound(f"https://127.0.0.1:{request.url.port}/echo")
        if name == "slow":  # answers, but only after HOLD_S (or at teardown)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), HOLD_S)
            return web.json_response({"late": True})
        if name == "deep":
            return web.Response(body=b"[" * 5000 + b"]" * 5000)
        return web.Response(status=404)

    async def redirect(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        return web.Response(status=int(request.match_info["code"]), headers={"Location": "/echo"})

    app = web.Application()
    app.router.add_route("*", "/redirect/{code}", redirect)
    app.router.add_route("*", "/{name}", route)
    runner, url = await serve(app)
    async with aiohttp.ClientSession() as session:
        try:
            yield url, session, seen
        finally:
            released.set()
            await runner.cleanup()


async def fetch_error(server: Server, path: str, policy: FetchPolicy = POLICY,
                      method: str = "GET") -> str:
    url, session, _ = server
    with pytest.raises(FetchError) as info:
        await fetch_json(session, f"{url}/{path}", policy, method=method)
    return str(info.value)


async def test_a_body_that_arrives_in_pieces_is_read_to_the_end(server: Server) -> None:
    url, session, _ = server
    doc, _ = await fetch_json(session, f"{url}/pieces", POLICY)
    assert doc == {"keys": [1]}


@pytest.mark.parametrize("path", ["exact", "exact-streamed"])
async def test_a_body_of_exactly_the_limit_is_read(server: Server, path: str) -> None:
    url, session, _ = server
    doc, _ = await fetch_json(session, f"{url}/{path}", POLICY)
    assert doc == {"a": "x" * (LIMIT - 9)}


async def test_one_byte_over_the_limit_is_refused(server: Server) -> None:
    assert await fetch_error(server, "over-streamed") == f"response larger than {LIMIT} bytes"


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_every_redirect_status_is_followed_for_a_get(server: Server, code: int) -> None:
    url, session, _ = server
    doc, _ = await fetch_json(session, f"{url}/redirect/{code}", ROOMY)
    assert doc["method"] == "GET"


async def test_a_post_is_never_redirected(server: Server) -> None:
    # Re-sending a client secret to wherever a Location header points is not ours to do.
    assert await fetch_error(server, "redirect/307", method="POST") == "127.0.0.1 answered HTTP 307"


async def test_three_redirects_are_followed_and_a_fourth_is_refused(server: Server) -> None:
    url, session, _ = server
    doc, _ = await fetch_json(session, f"{url}/hop-3", POLICY)
    assert doc == {"hops": "done"}
    assert await fetch_error(server, "hop-4") == "too many redirects from 127.0.0.1"


@pytest.mark.parametrize("path", ["other-port", "other-scheme"])
async def test_a_redirect_to_another_port_or_scheme_is_another_origin(server: Server, path: str) -> None:
    assert await fetch_error(server, path) == "redirect from 127.0.0.1 to another origin refused"


async def test_json_is_asked_for_and_the_authorization_sent_only_when_given(server: Server) -> None:
    url, session, _ = server
    doc, _ = await fetch_json(session, f"{url}/echo", ROOMY)
    assert doc == {"accept": "application/json", "authorization": None, "method": "GET"}
    doc, _ = await fetch_json(session, f"{url}/echo", ROOMY, method="POST",
                              form={"token": "t"}, authorization="Basic Z3c6cw==")
    assert doc == {"accept": "application/json", "authorization": "Basic Z3c6cw==", "method": "POST"}


async def test_json_nested_past_the_parsers_depth_is_not_json(server: Server) -> None:
    policy = FetchPolicy(allow_insecure_http=False, timeout_s=5.0, max_bytes=20_000)
    assert await fetch_error(server, "deep", policy) == "127.0.0.1 returned a body that is not JSON"


async def test_an_answer_slower_than_the_policys_timeout_is_a_timeout(server: Server) -> None:
    # The bound is the policy's, not aiohttp's default: /slow answers after HOLD_S.
    policy = FetchPolicy(allow_insecure_http=False, timeout_s=0.1, max_bytes=10_000)
    assert await fetch_error(server, "slow", policy) == "cannot reach 127.0.0.1: TimeoutError"


async def test_an_unreachable_host_is_named_with_the_error_type() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(FetchError) as info:
            await fetch_json(session, "http://127.0.0.1:1/jwks", POLICY)
    assert str(info.value) == "cannot reach 127.0.0.1: ClientConnectorError"


@pytest.mark.parametrize(("url", "message"), [
    ("/relative/jwks", "not an absolute http(s) URL: /relative/jwks"),
    ("ftp://idp.example.com/jwks", "not an absolute http(s) URL: ftp://idp.example.com/jwks"),
    ("https://user@idp.example.com/jwks", "URLs with credentials are not accepted"),
    ("https://:pw@idp.example.com/jwks", "URLs with credentials are not accepted"),
    ("http://idp.example.com/jwks", "plain http is refused for non-loopback host idp.example.com"),
])
def test_a_refused_url_is_told_why(url: str, message: str) -> None:
    with pytest.raises(FetchError) as info:
        check_url(url, POLICY)
    assert str(info.value) == message


def test_a_refused_url_is_quoted_at_most_200_characters() -> None:
    url = "ftp://idp.example.com/" + "a" * 300
    with pytest.raises(FetchError) as info:
        check_url(url, POLICY)
    assert str(info.value) == "not an absolute http(s) URL: " + url[:200]


def test_plain_http_to_a_named_host_passes_only_when_allowed() -> None:
    allowed = FetchPolicy(allow_insecure_http=True, timeout_s=1.0, max_bytes=10)
    assert str(check_url("http://idp.internal/jwks", allowed)) == "http://idp.internal/jwks"


def test_a_bracketed_ipv6_loopback_is_loopback() -> None:
    assert is_loopback_host("[::1]") and not is_loopback_host("[2001:db8::1]")


@pytest.mark.parametrize("host", ["X127.0.0.1", "[::1]X", "X[::1]"])
def test_a_name_that_only_contains_a_loopback_literal_is_not_loopback(host: str) -> None:
    # Only the brackets of an IPv6 literal are taken off, nothing else around it.
    assert not is_loopback_host(host)


@pytest.mark.parametrize(("header", "expected"), [
    ('Max-Age="600"', 600),
    ("s-maxage=700", 700),
    ("max-age=100, s-maxage=900", 900),
    ("max-age=900, s-maxage=100", 900),
    ("max-age=garbage, s-maxage=600", 600),
    ("No-Cache, max-age=600", 60),
    ("NO-STORE", 60),
    ("no-store, max-age=600", 60),
    ("max-age=X600", 60),  # a malformed value is ignored, not repaired
    ('no-cache="a=b", max-age=600', 60),  # a directive's name ends at its first "="
    ("max-age=3600", 3600),
    ("max-age=3601", 3600),
    ("max-age=60", 60),
    ("max-age=0", 60),
])
def test_cache_control_directives(header: str, expected: float) -> None:
    assert max_age(CIMultiDictProxy(CIMultiDict({"Cache-Control": header})), 60, 3600) == expected
