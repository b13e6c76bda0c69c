"""Base class for every settings model (immutable, unknown keys are errors), and ``Dsn``:
a store URL whose password never prints."""

from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def masked(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: for banners, errors, logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "***" if "@" in url else url
    if password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class _DsnStr(str):
    """The URL itself for every library that connects with it; its repr (settings dumps,
    ``%r`` in logs, pydantic errors and ``print(settings)``) masks the password. Code that
    formats a store URL into text uses ``masked`` (tests/test_dsn_masking.py)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(masked(str.__str__(self)))


def as_dsn(value: str) -> str:
    return _DsnStr(value)


# A store URL setting (audit, usage, cache, responses): postgresql://user:pw@host/db, redis://...
Dsn = Annotated[str, AfterValidator(as_dsn)]  # after any pattern constraint
