"""The deny list's file format and reload rules, edge by edge (issue 18: each rule here is one
a mutant of pep/auth/denylist.py broke without any test noticing)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pep.auth.denylist import CHECK_INTERVAL_S, DenyList, DenyListUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_values_keep_their_colons_and_comments_end_at_the_first_hash(tmp_path: Path) -> None:
    path = tmp_path / "deny.txt"
    path.write_text(
        "#offboarded on 2026-11-30\n"
        "sub:auth0|user:42  # first # second\n"
        "jti:urn:uuid:7f2c\n"
        "sub:  padded  \n"
        "urn:x:bare\n"
    )
    deny = DenyList(path, Clock())
    assert deny.status() == {"configured": True, "ready": True, "entries": 4, "error": None}
    assert deny.denied("auth0|user:42", None)
    assert deny.denied("x", "urn:uuid:7f2c") and not deny.denied("urn:uuid:7f2c", None)
    assert deny.denied("padded", None)
    # A line whose prefix is neither sub: nor jti: is a bare value, colons and all.
    assert deny.denied("urn:x:bare", None) and deny.denied("x", "urn:x:bare")
    assert not deny.denied("auth0|user", None) and not deny.denied("#offboarded on 2026-11-30", None)


def test_the_file_is_looked_at_again_exactly_one_interval_later(tmp_path: Path) -> None:
    path = tmp_path / "deny.txt"
    path.write_text("sub:alice\n")
    clock = Clock()
    deny = DenyList(path, clock)
    assert deny.denied("alice", None)
    path.write_text("sub:bob\n")
    clock.now += CHECK_INTERVAL_S
    assert deny.denied("bob", None) and not deny.denied("alice", None)


def test_a_file_moved_away_and_back_unchanged_is_read_again(tmp_path: Path) -> None:
    # Moving the file back restores the same (mtime, size, inode): the stamp alone would say
    # "unchanged", but the list is in error and must recover.
    path, aside = tmp_path / "deny.txt", tmp_path / "deny.aside"
    path.write_text("sub:alice\n")
    clock = Clock()
    deny = DenyList(path, clock)
    assert deny.denied("alice", None)
    os.rename(path, aside)
    clock.now += CHECK_INTERVAL_S
    with pytest.raises(DenyListUnavailable, match="^unreadable: FileNotFoundError$"):
        deny.denied("alice", None)
    os.rename(aside, path)
    clock.now += CHECK_INTERVAL_S
    assert deny.denied("alice", None)
    assert deny.status() == {"configured": True, "ready": True, "entries": 1, "error": None}


def test_an_unreadable_list_is_logged_once_as_an_error_and_its_recovery_as_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "deny.txt"
    clock = Clock()
    deny = DenyList(path, clock)
    with caplog.at_level(logging.INFO, logger="regogate.auth.denylist"):
        for _ in range(3):
            assert deny.status()["ready"] is False
            clock.now += CHECK_INTERVAL_S
        path.write_text("sub:alice\nsub:bob\njti:t-1\nboth\n")
        assert deny.status()["ready"] is True
    got = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "regogate.auth.denylist"]
    assert got == [
        (logging.ERROR, f"deny list {path} unreadable (FileNotFoundError): failing closed"),
        (logging.INFO, "deny list loaded: 3 subjects, 2 token ids"),
    ]
