"""The load-time rules of pep/auth/settings.py (issue 18's mutation gate): pinned algorithms
are asymmetric and named when refused, every URL we fetch is absolute http(s) with https
required off loopback unless the issuer opts out, audiences are non-empty, and an issuer is
configured once. Each refusal is a config error naming the field, before any IdP is called."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pep.auth.settings import ASYMMETRIC_ALGORITHMS, IdentitySettings, IssuerSettings

ISS = "https://idp.example.com"


def issuer(**conf: Any) -> IssuerSettings:
    return IssuerSettings.model_validate({"issuer": ISS, "audiences": ["gw"], **conf})


def refusal(**conf: Any) -> str:
    """The one validation message for an issuer configuration."""
    with pytest.raises(ValidationError) as info:
        issuer(**conf)
    errors = info.value.errors()
    assert len(errors) == 1
    return str(errors[0]["msg"])


SUBSET = ", ".join(ASYMMETRIC_ALGORITHMS)


def test_every_asymmetric_algorithm_may_be_pinned() -> None:
    assert issuer(algorithms=list(ASYMMETRIC_ALGORITHMS)).algorithms == ASYMMETRIC_ALGORITHMS
    assert issuer(algorithms=["EdDSA"]).algorithms == ("EdDSA",)


@pytest.mark.parametrize(("algorithms", "refused"), [
    (["HS256"], "HS256"),
    (["RS256", "none", "HS512"], "none, HS512"),
    (["rs256"], "rs256"),  # names are exact: no case folding into an allowed one
    ([], "(empty)"),
])
def test_symmetric_none_or_no_algorithms_are_refused_by_name(
    algorithms: list[str], refused: str
) -> None:
    assert refusal(algorithms=algorithms) == (
        f"Value error, algorithms must be a non-empty subset of {SUBSET}; refused: {refused}"
    )


@pytest.mark.parametrize("url", [
    "https://idp.example.com/realms/x",
    "http://127.0.0.1:8080",
    "http://localhost/realm",
    "http://[::1]:9000",
])
def test_https_anywhere_and_http_to_loopback_are_accepted(url: str) -> None:
    conf = issuer(issuer=url, jwks_uri=url + "/jwks",
                  introspection={"endpoint": url + "/introspect", "client_id": "gw",
                                 "client_secret": "s"})
    assert (conf.issuer, conf.jwks_uri) == (url, url + "/jwks")


@pytest.mark.parametrize("field", ["issuer", "jwks_uri", "introspection.endpoint"])
@pytest.mark.parametrize("url", ["idp.example.com/realm", "ftp://idp.example.com", "https://",
                                 "/relative/jwks", "file:///etc/jwks.json"])
def test_a_fetched_url_that_is_not_absolute_http_is_refused_naming_its_field(
    field: str, url: str
) -> None:
    assert refusal(**_place(field, url)) == (
        f"Value error, {field} must be an absolute https URL, got {url!r}"
    )


@pytest.mark.parametrize("field", ["issuer", "jwks_uri", "introspection.endpoint"])
def test_plain_http_off_loopback_is_refused_unless_the_issuer_allows_it(field: str) -> None:
    url = "http://idp.internal:8080/x"
    assert refusal(**_place(field, url)) == (
        f"Value error, {field} {url!r} uses plain http to a non-loopback host: use https, or set"
        " allow_insecure_http: true for this issuer (a trusted private network only)"
    )
    allowed = issuer(allow_insecure_http=True, **_place(field, url))
    assert url in (allowed.issuer, allowed.jwks_uri,
                   allowed.introspection.endpoint if allowed.introspection else None)


def _place(field: str, url: str) -> dict[str, Any]:
    if field == "introspection.endpoint":
        return {"introspection": {"endpoint": url, "client_id": "gw", "client_secret": "s"}}
    return {field: url}


def test_without_discovery_the_issuer_is_an_identifier_not_a_url() -> None:
    # Google's ID tokens carry the scheme-less iss "accounts.google.com".
    conf = issuer(issuer="accounts.google.com", discovery=False,
                  jwks_uri="https://www.googleapis.com/oauth2/v3/certs")
    assert conf.issuer == "accounts.google.com"
    # ... but what is still fetched is still checked.
    assert refusal(issuer="accounts.google.com", discovery=False,
                   jwks_uri="http://www.googleapis.com/certs").startswith(
        "Value error, jwks_uri 'http://www.googleapis.com/certs' uses plain http")


def test_an_introspection_endpoint_from_discovery_is_not_checked_at_load() -> None:
    conf = issuer(introspection={"client_id": "gw", "client_secret": "s"})
    assert conf.introspection is not None and conf.introspection.endpoint is None


@pytest.mark.parametrize("audiences", [[""], ["gw", ""]])
def test_an_empty_audience_is_refused(audiences: list[str]) -> None:
    assert refusal(audiences=audiences) == "Value error, audiences must be non-empty strings"


def test_an_issuer_may_be_configured_once_only() -> None:
    one = {"issuer": ISS, "audiences": ["gw"]}
    other = {"issuer": ISS + "/other", "audiences": ["gw"]}
    settings = IdentitySettings.model_validate({"issuers": [one, other]})
    assert [i.issuer for i in settings.issuers] == [ISS, ISS + "/other"]
    with pytest.raises(ValidationError) as info:
        IdentitySettings.model_validate({"issuers": [one, other, {**one, "audiences": ["x"]}]})
    assert [e["msg"] for e in info.value.errors()] == [
        "Value error, each issuer may be configured only once"]
