"""Hostile-token suite (issue 3 "Done when"): each forged or malformed token is refused with
the right status and code, the error carries no token bytes, and a valid token still works."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
import tracemalloc
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from pep.auth import Authenticator
from pep.errors import to_body
from tests.auth.conftest import MakeAuth, bearer, issuer_conf, rejected
from tests.auth.fakeidp import (
    FakeIdp,
    SigningKey,
    b64json,
    b64url,
    serve,
    sign_raw,
)


async def assert_refused(
    auth: Authenticator, idp: FakeIdp, token: str, *, status: int = 401, code: str | None = None
) -> None:
    err = await rejected(auth, token)
    assert err.status == status, (err.status, err.code, err.message)
    if code is not None:
        assert err.code == code, (err.code, err.message)
    rendered = json.dumps(to_body(err)) + json.dumps(err.headers)
    for piece in token.split("."):
        if len(piece) > 8:
            assert piece not in rendered
    # The layer is not wedged or poisoned: a valid token still authenticates.
    principal = await auth.authenticate(bearer(idp.token()))
    assert principal.sub == "alice"


def hmac_token(idp: FakeIdp, secret: bytes, kid: str) -> str:
    # By hand: PyJWT itself refuses to HMAC with a PEM key (good), but attackers do not ask.
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'at+jwt', 'kid': kid})}.{b64json(idp.claims())}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"


# -- algorithm and signature ---------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "NoNe"])
@pytest.mark.parametrize("sig", ["", "AAAA"])
async def test_alg_none_is_rejected_in_every_casing(auth: Authenticator, idp: FakeIdp, alg: str, sig: str) -> None:
    token = f"{b64json({'alg': alg, 'typ': 'at+jwt', 'kid': 'rsa-1'})}.{b64json(idp.claims())}.{sig}"
    await assert_refused(auth, idp, token, code="invalid_token")


async def test_empty_signature_is_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    head, body, _ = idp.token().split(".")
    await assert_refused(auth, idp, f"{head}.{body}.", code="invalid_token")


async def test_truncated_signature_is_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    head, body, sig = idp.token().split(".")
    await assert_refused(auth, idp, f"{head}.{body}.{sig[:-4]}", code="invalid_token")


@pytest.mark.parametrize("form", ["pem", "pem_crlf", "pem_spaces", "jwk_json"])
async def test_hs256_signed_with_the_issuers_public_key_is_rejected(
    auth: Authenticator, idp: FakeIdp, form: str
) -> None:
    key = idp.keys[0]
    pem = key.public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secret = {
        "pem": pem,
        "pem_crlf": pem.replace(b"\n", b"\r\n"),
        "pem_spaces": b"  " + pem.replace(b"\n", b" \n") + b"  ",
        "jwk_json": json.dumps(key.jwk()).encode(),
    }[form]
    await assert_refused(auth, idp, hmac_token(idp, secret, key.kid), code="invalid_token")


async def test_es256_all_zero_signature_is_rejected(
    make_auth: MakeAuth, idp: FakeIdp, ec_signing_key: SigningKey
) -> None:
    idp.keys.append(ec_signing_key)
    auth = await make_auth()
    head, body, _ = idp.token(ec_signing_key).split(".")
    await assert_refused(auth, idp, f"{head}.{body}.{b64url(bytes(64))}", code="invalid_token")


async def test_valid_key_relabelled_to_a_disallowed_algorithm_is_rejected(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    auth = await make_auth(issuer={"algorithms": ["RS256"]})
    # Genuinely signed by the issuer's key, but with RS512 / PS256: outside the pinned list.
    idp.keys[0] = SigningKey("rsa-1", "RS256", idp.keys[0].private)
    for alg in ("RS512", "PS256"):
        await assert_refused(auth, idp, idp.token(alg=alg), code="invalid_token")


async def test_algorithm_that_does_not_match_the_key_type_is_rejected(
    make_auth: MakeAuth, idp: FakeIdp, ec_signing_key: SigningKey
) -> None:
    idp.keys.append(ec_signing_key)
    auth = await make_auth()
    # ES256 header naming the RSA key's kid, signed with the EC key: kid/alg/key disagree.
    token = idp.token(ec_signing_key, header={"kid": "rsa-1"})
    await assert_refused(auth, idp, token, code="invalid_token")


# -- key-selecting headers -----------------------------------------------------------------


async def test_embedded_jwk_is_not_honoured(auth: Authenticator, idp: FakeIdp, rsa_keys: list[SigningKey]) -> None:
    attacker = rsa_keys[2]
    token = idp.token(attacker, header={"jwk": attacker.jwk()})
    await assert_refused(auth, idp, token, code="invalid_token")


async def test_embedded_x5c_is_not_honoured(auth: Authenticator, idp: FakeIdp, rsa_keys: list[SigningKey]) -> None:
    attacker = rsa_keys[2]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(attacker.public).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(attacker.private, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    token = idp.token(attacker, header={"x5c": [base64.b64encode(der).decode()], "kid": "rsa-1"})
    await assert_refused(auth, idp, token, code="invalid_token")


@pytest.mark.parametrize("param", ["jku", "x5u"])
async def test_jku_and_x5u_are_never_fetched(
    auth: Authenticator, idp: FakeIdp, rsa_keys: list[SigningKey], param: str
) -> None:
    hits: list[str] = []
    attacker = rsa_keys[2]

    async def listener(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"keys": [attacker.jwk()]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", listener)
    runner, url = await serve(app)
    try:
        for key in (attacker, idp.keys[0]):
            token = idp.token(key, header={param: f"{url}/keys.json", "kid": "attacker"})
            await assert_refused(auth, idp, token, code="invalid_token")
    finally:
        await runner.cleanup()
    assert hits == []


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../../../dev/null",
        "/etc/passwd",
        "' OR '1'='1",
        "rsa-1' --",
        "rsa-1\u0000",
        "rsa-1/../rsa-1",
        "|cat /etc/passwd",
        "${jndi:ldap://127.0.0.1/a}",
        "RSA-1",
        " rsa-1",
        "x" * 300,
    ],
)
async def test_kid_path_traversal_and_injection_are_refused(
    auth: Authenticator, idp: FakeIdp, rsa_keys: list[SigningKey], kid: str
) -> None:
    await assert_refused(auth, idp, idp.token(rsa_keys[2], header={"kid": kid}), code="invalid_token")
    # Even signed by the real key, an odd kid is only a failed dictionary lookup.
    await assert_refused(auth, idp, idp.token(header={"kid": kid}), code="invalid_token")


@pytest.mark.parametrize("kid", [123, None, ["rsa-1"], {"k": "rsa-1"}, ""])
async def test_kid_of_the_wrong_type_is_rejected(auth: Authenticator, idp: FakeIdp, kid: Any) -> None:
    header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": kid})
    await assert_refused(auth, idp, sign_raw(idp.keys[0], header, json.dumps(idp.claims())))


async def test_unknown_crit_header_is_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    token = idp.token(header={"crit": ["exp-extension"], "exp-extension": True})
    await assert_refused(auth, idp, token, code="invalid_token")


async def test_encrypted_or_unencoded_payload_headers_are_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    for extra in ({"b64": False}, {"zip": "DEF"}, {"enc": "A256GCM"}):
        await assert_refused(auth, idp, idp.token(header=extra), code="invalid_token")


# -- JSON and encoding ---------------------------------------------------------------------


async def test_duplicate_claims_are_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    claims = json.dumps(idp.claims())
    dup_payload = claims[:-1] + ', "sub": "admin"}'
    header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"})
    await assert_refused(auth, idp, sign_raw(idp.keys[0], header, dup_payload), code="invalid_token")


async def test_duplicate_header_parameters_are_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    header = '{"alg":"RS256","typ":"at+jwt","kid":"rsa-1","alg":"none"}'
    await assert_refused(auth, idp, sign_raw(idp.keys[0], header, json.dumps(idp.claims())))


@pytest.mark.parametrize("payload", ['["not", "an", "object"]', '"text"', "{nope", "{\"sub\": NaN}", "\xff"])
async def test_payload_that_is_not_a_json_object_is_rejected(auth: Authenticator, idp: FakeIdp, payload: str) -> None:
    head = b64json({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"})
    body = b64url(payload.encode("latin-1"))
    sig = jwt.get_algorithm_by_name("RS256").sign(f"{head}.{body}".encode(), idp.keys[0].private)
    await assert_refused(auth, idp, f"{head}.{body}.{b64url(sig)}", code="invalid_token")


async def test_lone_surrogate_in_a_claim_is_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    claims = json.dumps(idp.claims(name="x")).replace('"name": "x"', '"name": "\\ud800"')
    header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"})
    await assert_refused(auth, idp, sign_raw(idp.keys[0], header, claims), code="invalid_token")


async def test_deeply_nested_claims_are_rejected_not_crashed(auth: Authenticator, idp: FakeIdp) -> None:
    payload = '{"x":' + "[" * 2000 + "]" * 2000 + "}"
    header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"})
    token = sign_raw(idp.keys[0], header, payload)
    await assert_refused(auth, idp, token, code="invalid_token")


@pytest.mark.parametrize("variant", ["padding", "std_alphabet", "trailing_bits", "bad_length", "inner_space"])
async def test_non_canonical_base64url_is_rejected(auth: Authenticator, idp: FakeIdp, variant: str) -> None:
    head, body, sig = idp.token().split(".")
    if variant == "padding":
        token = f"{head}.{body}.{sig}=="
    elif variant == "std_alphabet":
        token = f"{head}.{body}.{sig.replace('-', '+').replace('_', '/')}"
        if token.endswith(sig):  # no - or _ in this signature: force a '+'
            token = f"{head}.{body}.+{sig[1:]}"
    elif variant == "trailing_bits":
        # Flip the unused low bits of the last character: decodes the same, spelled differently.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        unused = {2: 4, 3: 2}[len(sig) % 4] if len(sig) % 4 else 0
        assert unused, "RS256 signatures are 342 chars: 2 leftover bits"
        last = alphabet.index(sig[-1])
        token = f"{head}.{body}.{sig[:-1]}{alphabet[last | ((1 << unused) - 1)] if last & 1 == 0 else alphabet[last & ~1]}"
    elif variant == "bad_length":
        token = f"{head}.{body}.{sig}A"
    else:
        token = f"{head}.{body} .{sig}"
    err = await rejected(auth, token)
    assert err.status in (400, 401)
    if variant != "inner_space":  # a space is not even a bearer token (400 malformed)
        assert err.status == 401 and err.code == "invalid_token"
    assert (await auth.authenticate(bearer(idp.token()))).sub == "alice"


async def test_json_serialization_is_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    head, body, sig = idp.token().split(".")
    flattened = json.dumps({"protected": head, "payload": body, "signature": sig})
    err = await rejected(auth, flattened)
    assert err.status == 400
    await assert_refused(auth, idp, f"{head}.{body}.{sig}.{sig}", code="invalid_token")


async def test_oversized_token_is_rejected_fast_with_flat_memory(auth: Authenticator, idp: FakeIdp) -> None:
    head, _, sig = idp.token().split(".")
    token = f"{head}.{'A' * (4 * 1024 * 1024)}.{sig}"
    headers = bearer(token)
    tracemalloc.start()
    try:
        err = await rejected(auth, headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (err.status, err.code) == (401, "token_too_large")
    assert peak < 256 * 1024  # the 4 MiB token was never copied, decoded or parsed
    assert (await auth.authenticate(bearer(idp.token()))).sub == "alice"


# -- registered claims ---------------------------------------------------------------------


async def test_expired_token_is_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    now = int(time.time())
    await assert_refused(auth, idp, idp.token(iat=now - 7200, exp=now - 3600), code="token_expired")


async def test_token_expired_within_leeway_is_still_accepted(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer={"leeway_s": 60})
    assert (await auth.authenticate(bearer(idp.token(exp=int(time.time()) - 10)))).sub == "alice"


async def test_token_with_nbf_in_the_future_is_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    await assert_refused(auth, idp, idp.token(nbf=int(time.time()) + 3600), code="token_not_yet_valid")


async def test_token_issued_in_the_future_is_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    await assert_refused(auth, idp, idp.token(iat=int(time.time()) + 3600), code="token_not_yet_valid")


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": ...},
        {"exp": None},
        {"exp": "9999999999"},
        {"exp": True},
        {"exp": [9999999999]},
        {"exp": 1e400},
        {"iat": ...},
        {"iat": "now"},
        {"nbf": "0"},
        {"nbf": True},
        {"iat": False},
        {"sub": ...},
        {"sub": 42},
        {"sub": ""},
        {"sub": ["alice"]},
        {"iss": ...},
        {"iss": 42},
        {"iss": None},
    ],
    ids=lambda c: "-".join(f"{k}={v!r}" for k, v in c.items()),
)
async def test_missing_or_ill_typed_registered_claims_are_rejected(
    auth: Authenticator, idp: FakeIdp, claims: dict[str, Any]
) -> None:
    header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"})
    payload = json.dumps({k: v for k, v in idp.claims(**claims).items()}).replace("Infinity", "1e400")
    await assert_refused(auth, idp, sign_raw(idp.keys[0], header, payload))


@pytest.mark.parametrize("aud", ["someone-else", ["someone-else", "other"], ..., 42, [42], {"aud": "regogate"}, [], None])
async def test_wrong_or_missing_audience_is_rejected(auth: Authenticator, idp: FakeIdp, aud: Any) -> None:
    err = await rejected(auth, idp.token(aud=aud))
    assert err.status == 401 and err.code in ("invalid_audience", "invalid_token")
    assert (await auth.authenticate(bearer(idp.token()))).sub == "alice"


async def test_audience_list_containing_ours_is_accepted(auth: Authenticator, idp: FakeIdp) -> None:
    assert (await auth.authenticate(bearer(idp.token(aud=["other", "regogate"])))).sub == "alice"


# -- issuer --------------------------------------------------------------------------------


@pytest.mark.parametrize("trick", ["prefix", "suffix", "slash", "case", "array", "space", "userinfo"])
async def test_issuer_tricks_are_rejected(auth: Authenticator, idp: FakeIdp, trick: str) -> None:
    iss = idp.issuer
    forged = {
        "prefix": iss[:-1],
        "suffix": iss + "0",
        "slash": iss + "/",
        "case": iss.upper(),
        "array": [iss],
        "space": iss + " ",
        "userinfo": iss.replace("http://", "http://evil@"),
    }[trick]
    header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"})
    token = sign_raw(idp.keys[0], header, json.dumps(idp.claims(iss=forged)))
    err = await rejected(auth, token)
    assert err.status == 401 and err.code in ("untrusted_issuer", "invalid_token")
    assert (await auth.authenticate(bearer(idp.token()))).sub == "alice"


async def test_well_signed_token_from_an_untrusted_issuer_is_rejected(
    auth: Authenticator, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    other = FakeIdp(keys=[rsa_keys[2]])
    runner, url = await serve(other.app())
    other.issuer = url
    try:
        await assert_refused(auth, idp, other.token(), code="untrusted_issuer")
        assert other.hits["jwks"] == 0 and other.hits["discovery"] == 0
    finally:
        await runner.cleanup()


async def test_token_claiming_a_trusted_issuer_but_signed_by_another_key_is_rejected(
    auth: Authenticator, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    forged = SigningKey("rsa-1", "RS256", rsa_keys[2].private)
    await assert_refused(auth, idp, idp.token(forged), code="invalid_token")


# -- token kinds ---------------------------------------------------------------------------


async def test_id_token_with_nonce_is_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    token = idp.token(typ="JWT", aud="regogate", nonce="n-0S6_WzA2Mj", auth_time=int(time.time()), scope=...)
    await assert_refused(auth, idp, token, code="id_token_not_accepted")


async def test_id_token_addressed_to_its_own_client_is_rejected(auth: Authenticator, idp: FakeIdp) -> None:
    token = idp.token(typ="JWT", aud="regogate", azp="regogate", auth_time=int(time.time()), scope=...)
    await assert_refused(auth, idp, token, code="id_token_not_accepted")


async def test_token_without_the_required_typ_is_rejected(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer={"required_typ": "at+jwt"})
    for typ in ("JWT", None, "at+JWT+evil"):
        token = idp.token(typ=typ)
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        assert header.get("typ") == typ  # None: the token really carries no typ at all
        await assert_refused(auth, idp, token, code="invalid_token")
    assert (await auth.authenticate(bearer(idp.token(typ="application/at+jwt")))).sub == "alice"


async def test_issuer_configured_with_a_symmetric_algorithm_is_a_config_error(idp: FakeIdp) -> None:
    from pydantic import ValidationError

    from tests.auth.conftest import identity

    with pytest.raises(ValidationError):
        identity([issuer_conf(idp, algorithms=["RS256", "HS256"])])
