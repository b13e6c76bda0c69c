"""regogate's development OpenID Connect provider. NOT FOR PRODUCTION.

A small, standards-shaped issuer so the gateway can be run and tested end to end without an
external IdP. The gateway never imports this package: it verifies these tokens exactly like
any other issuer's, through discovery and JWKS.

    python -m idp serve     discovery, JWKS, token and introspection endpoints (loopback only)
    python -m idp token     mint a user or client-credentials token from the key file
    python -m idp rotate    add a new signing key, keep the previous one for a grace period

Modules: ``directory`` (users/clients YAML), ``keys`` (persisted signing keys), ``state``
(data directory and the running server's issuer), ``tokens`` (claims and signing),
``server`` (HTTP endpoints), ``cli``, ``testing`` (helpers for other test suites).
"""
