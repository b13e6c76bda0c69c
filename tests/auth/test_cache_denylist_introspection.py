"""Verified-token cache, the hot-reloaded deny list, and RFC 7662 introspection."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest

from pep.auth import Authenticator
from pep.auth.cache import CacheEntry, TokenCache
from pep.principal import Principal
from tests.auth.conftest import MakeAuth, bearer, rejected
from tests.auth.fakeidp import FakeIdp
from tests.auth.test_keys import eventually

# -- verified-token cache ------------------------------------------------------------------


async def test_cached_token_is_served_without_verifying_again(auth: Authenticator, idp: FakeIdp) -> None:
    token = idp.token()
    first = await auth.authenticate(bearer(token))
    assert await auth.authenticate({"x-api-key": token}) is first


def test_cache_entries_expire_at_exp_and_the_cache_is_bounded() -> None:
    cache = TokenCache(max_entries=2)
    p = Principal(sub="a", issuer="i")
    cache.put(b"1", CacheEntry(p, valid_until=100.0))
    assert cache.get(b"1", now=99.0) is not None
    assert cache.get(b"1", now=100.0) is None
    for d in (b"a", b"b", b"c"):
        cache.put(d, CacheEntry(p, valid_until=1e12))
    assert len(cache) == 2 and cache.get(b"a", now=0) is None and cache.get(b"c", now=0) is not None


async def test_tokens_differing_only_after_a_prefix_are_cached_separately(auth: Authenticator, idp: FakeIdp) -> None:
    token = idp.token()
    await auth.authenticate(bearer(token))
    head, body, sig = token.split(".")
    tampered = f"{head}.{body}.{sig[:-2]}{'A' if sig[-2] != 'A' else 'B'}{sig[-1]}"
    assert (await rejected(auth, tampered)).status == 401


# -- deny list -----------------------------------------------------------------------------


async def test_denied_subject_is_refused_at_once_even_when_cached(
    make_auth: MakeAuth, idp: FakeIdp, tmp_path: Path
) -> None:
    deny = tmp_path / "deny.txt"
    deny.write_text("# offboarded\n")
    auth = await make_auth(deny_list=str(deny))
    token = idp.token()
    await auth.authenticate(bearer(token))  # cached
    deny.write_text("# offboarded\nsub:alice\n")

    async def refused() -> bool:
        try:
            await auth.authenticate(bearer(token))
            return False
        except Exception as exc:  # noqa: BLE001
            return getattr(exc, "code", None) == "token_revoked"

    assert await eventually(refused)
    assert (await rejected(auth, idp.token())).code == "token_revoked"
    assert (await auth.authenticate(bearer(idp.token(sub="bob")))).sub == "bob"


async def test_denied_token_id_is_refused(make_auth: MakeAuth, idp: FakeIdp, tmp_path: Path) -> None:
    deny = tmp_path / "deny.txt"
    deny.write_text("jti:leaked-1\n")
    auth = await make_auth(deny_list=str(deny))
    assert (await rejected(auth, idp.token(jti="leaked-1"))).code == "token_revoked"
    assert (await auth.authenticate(bearer(idp.token(jti="fine-2")))).sub == "alice"


async def test_unreadable_deny_list_fails_closed(make_auth: MakeAuth, idp: FakeIdp, tmp_path: Path) -> None:
    auth = await make_auth(deny_list=str(tmp_path / "missing.txt"))
    err = await rejected(auth, idp.token())
    assert (err.status, err.code) == (503, "deny_list_unavailable")
    assert auth.ready()[0] is False


# -- introspection -------------------------------------------------------------------------


def introspection_conf(**extra: object) -> dict[str, object]:
    return {"introspection": {"client_id": "gateway", "client_secret": "s3cret", **extra}}


def opaque(idp: FakeIdp, **claims: object) -> str:
    token = secrets.token_urlsafe(32).replace(".", "")
    now = int(time.time())
    idp.active_tokens[token] = {"iss": idp.issuer, "sub": "carol", "aud": "regogate",
                                "client_id": "cli", "exp": now + 600, "iat": now, **claims}
    return token


async def test_opaque_token_is_introspected_mapped_and_cached(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer=introspection_conf())
    token = opaque(idp, groups=["ml"])
    p = await auth.authenticate(bearer(token))
    assert (p.sub, p.client_id, p.groups, p.issuer) == ("carol", "cli", ("ml",), idp.issuer)
    assert await auth.authenticate(bearer(token)) is p
    assert idp.hits["introspect"] == 1


async def test_inactive_opaque_token_is_rejected(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer=introspection_conf())
    err = await rejected(auth, "not-a-known-token")
    assert (err.status, err.code) == (401, "invalid_token")


@pytest.mark.parametrize(
    "claims",
    [{"aud": "someone-else"}, {"aud": ...}, {"iss": "https://evil"}, {"exp": 10}, {"exp": "soon"},
     {"sub": 5}, {"token_type": "refresh_token"}],
)
async def test_active_but_unacceptable_introspection_answers_are_rejected(
    make_auth: MakeAuth, idp: FakeIdp, claims: dict[str, object]
) -> None:
    auth = await make_auth(issuer=introspection_conf())
    token = opaque(idp, **claims)
    idp.active_tokens[token] = {k: v for k, v in idp.active_tokens[token].items() if v is not ...}
    assert (await rejected(auth, token)).status == 401


async def test_introspection_outage_is_unavailable_not_unauthorized(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer=introspection_conf())
    token = opaque(idp)
    idp.down = True
    err = await rejected(auth, token)
    assert (err.status, err.code) == (503, "idp_unavailable")


async def test_wrong_introspection_client_secret_is_unavailable(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer={"introspection": {"client_id": "gateway", "client_secret": "wrong"}})
    err = await rejected(auth, opaque(idp))
    assert err.status == 503 and "wrong" not in err.message and "s3cret" not in err.message


async def test_opaque_token_without_introspection_configured_is_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    err = await rejected(auth, opaque(idp))
    assert (err.status, err.code) == (401, "invalid_token")
    assert idp.hits["introspect"] == 0


async def test_concurrent_requests_with_one_opaque_token_introspect_once(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer=introspection_conf())
    token = opaque(idp)
    results = await asyncio.gather(*(auth.authenticate(bearer(token)) for _ in range(10)))
    assert {p.sub for p in results} == {"carol"}
    assert idp.hits["introspect"] == 1
