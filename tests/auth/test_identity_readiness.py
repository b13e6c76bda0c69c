"""What the identity layer reports to /readyz, the deny list's document and refusals, and key
lookup without a kid: the state an operator sees must be the state the gateway is in."""

from __future__ import annotations

from pathlib import Path

from pep.auth.denylist import DenyList
from tests.auth.conftest import MakeAuth, bearer, rejected
from tests.auth.fakeidp import FakeIdp


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_ready_reports_each_issuer_the_deny_list_and_the_cache(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    auth = await make_auth()
    ok, detail = auth.ready()
    assert ok is True
    status = detail["issuers"][idp.issuer]
    assert (status["ready"], status["keys"], status["stale"], status["last_error"]) == (
        True, 1, False, None)
    assert isinstance(status["age_s"], float) and status["age_s"] >= 0
    assert detail["deny_list"] == {"configured": False, "ready": True, "entries": 0, "error": None}
    assert detail["token_cache"] == 0
    await auth.authenticate(bearer(idp.token()))
    assert auth.ready()[1]["token_cache"] == 1


async def test_an_issuer_whose_keys_never_loaded_is_not_ready(make_auth: MakeAuth, idp: FakeIdp) -> None:
    idp.down = True
    auth = await make_auth()
    ok, detail = auth.ready()
    status = detail["issuers"][idp.issuer]
    assert ok is False
    assert (status["ready"], status["keys"], status["age_s"], status["stale"]) == (False, 0, None, False)
    assert isinstance(status["last_error"], str) and status["last_error"]


async def test_an_unreadable_deny_list_makes_identity_not_ready_and_fails_closed(
    make_auth: MakeAuth, idp: FakeIdp, tmp_path: Path
) -> None:
    path = tmp_path / "deny.txt"
    auth = await make_auth(deny_list=str(path))
    ok, detail = auth.ready()
    assert ok is False
    assert detail["deny_list"] == {"configured": True, "ready": False, "entries": 0,
                                   "error": "unreadable: FileNotFoundError"}
    err = await rejected(auth, idp.token())
    assert (err.status, err.code, err.message) == (503, "deny_list_unavailable",
                                                   "deny list unavailable")


async def test_a_denied_subject_is_told_the_token_was_revoked(
    make_auth: MakeAuth, idp: FakeIdp, tmp_path: Path
) -> None:
    path = tmp_path / "deny.txt"
    path.write_text("sub:alice\n")
    auth = await make_auth(deny_list=str(path))
    err = await rejected(auth, idp.token())
    assert (err.status, err.code, err.message) == (401, "token_revoked", "token has been revoked")
    assert auth.ready()[1]["deny_list"]["entries"] == 1
    assert (await auth.authenticate(bearer(idp.token(sub="bob")))).sub == "bob"


def test_the_deny_list_document_counts_distinct_entries(tmp_path: Path) -> None:
    path = tmp_path / "deny.txt"
    path.write_text("sub:alice\njti:t-1\nboth  # a bare value denies a subject or a token id\n\n")
    clock = Clock()
    deny = DenyList(path, clock)
    assert deny.status() == {"configured": True, "ready": True, "entries": 3, "error": None}
    assert deny.denied("alice", None) and deny.denied("x", "t-1") and deny.denied("both", None)
    assert deny.denied("x", "both") and not deny.denied("t-1", None) and not deny.denied("x", None)
    path.write_bytes(b"\xff\xfe")
    clock.now += 0.5  # within the check interval: the old list still applies
    assert deny.denied("alice", None)
    clock.now += 1.0
    assert deny.status()["error"] == "unreadable: UnicodeDecodeError"
    path.write_text("sub:carol\n")
    clock.now += 1.0
    assert deny.status() == {"configured": True, "ready": True, "entries": 1, "error": None}
    assert not deny.denied("alice", None) and deny.denied("carol", None)


def test_no_deny_list_denies_nobody() -> None:
    deny = DenyList(None)
    assert not deny.denied("alice", "t-1")
    assert deny.status() == {"configured": False, "ready": True, "entries": 0, "error": None}
