"""Sessions in Redis: two gateway processes' worth of apps (as ``serve --workers`` or
replicas behind one address) share sign-ins and sessions on the real Redis; Redis down is a
503, never a session accepted blindly."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from idp.testing import running_idp
from tests.audit.workspace import workspace_http
from tests.conftest import drop_redis_prefix
from tests.harness import running_gateway

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    value = f"regogate-test-ws-{secrets.token_hex(4)}:"
    yield value
    drop_redis_prefix(redis_url, value)


async def test_two_gateways_share_sign_ins_and_sessions(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    config = {"workspace": {"session_store": redis_url, "redis_key_prefix": prefix}}
    async with running_idp(tmp_path / "idp") as idp, \
            running_gateway(tmp_path / "a", idp=idp, config=config) as a, \
            running_gateway(tmp_path / "b", idp=idp, config=config) as b, \
            workspace_http(a.url) as on_a, workspace_http(b.url) as on_b:
        # The sign-in starts on A and comes back to B (its login cookie carried over).
        authorize = await on_a.start()
        login_id = next(c.value for c in on_a.http.cookie_jar if c.key == "regogate_ws_login")
        callback = await on_a.idp_login(authorize, "erin")
        path = urlsplit(callback)
        res = await on_b.get(f"{b.url}{path.path}?{path.query}",
                             cookies={"regogate_ws_login": login_id})
        assert res.status == 303, res.text
        # A second try of the same callback, on A, finds the pending sign-in taken.
        res = await on_a.get(callback)
        assert res.status == 400 and "login_state_missing" in res.text

        state = await on_b.session()
        assert state["signed_in"] and state["user"]["subject"] == "erin"
        sid = on_b.session_cookie()
        headers = {"Cookie": f"regogate_ws={sid}", "X-CSRF-Token": state["csrf_token"]}
        async with on_a.http.get(f"{a.url}/audit/v1/events", headers=headers) as resp:
            assert resp.status == 200  # the session B created, used on A
        async with on_a.http.post(f"{a.url}/audit/logout", headers=headers) as resp:
            assert resp.status == 200
        status, body = await on_b.get_json("/audit/v1/events")
        assert status == 401 and body["error"]["code"] == "session_unknown"


async def test_an_idle_session_in_redis_expires(tmp_path: Path, redis_url: str,
                                                prefix: str) -> None:
    import time

    from pep.workspace.routes import WORKSPACE

    config = {"workspace": {"session_store": redis_url, "redis_key_prefix": prefix}}
    async with running_gateway(tmp_path, config=config) as gw, workspace_http(gw.url) as ws:
        await ws.sign_in("erin")
        assert (await ws.get_json("/audit/v1/verify"))[0] == 200
        sessions = gw.app[WORKSPACE].sessions
        sessions.clock = lambda: time.time() + sessions.idle_s + 1
        status, body = await ws.get_json("/audit/v1/events")
        assert status == 401 and body["error"]["code"] == "session_expired"
        sessions.clock = time.time
        assert (await ws.session())["signed_in"] is False  # deleted, not just refused


async def test_redis_down_refuses_sign_in_and_session_use(tmp_path: Path) -> None:
    config = {"workspace": {"session_store": "redis://127.0.0.1:1/0", "redis_timeout_s": 0.5}}
    async with running_gateway(tmp_path, config=config) as gw, workspace_http(gw.url) as ws:
        res = await ws.get(f"{gw.url}/audit/login")
        assert res.status == 503 and "session store" in res.text
        async with ws.http.get(f"{gw.url}/audit/v1/events",
                               headers={"Cookie": "regogate_ws=abc", "X-CSRF-Token": "x"}) as r:
            assert r.status == 503
            assert (await r.json())["error"]["code"] == "session_store_unavailable"
