"""The auditor workspace's sign-in: OIDC code flow + PKCE, server-side sessions, CSRF.

    settings.py   the ``workspace:`` slice (client registration, session lifetimes)
    cookie.py     the cookie's name and the one check the model API makes (cookie + bearer: 400)
    sessions.py   in-memory sessions and pending sign-ins (opaque ids, stored by hash)
    oidc.py       the relying party: discovery, authorization URL, code exchange (authlib)
    routes.py     /audit/login, /audit/callback, /audit/session, /audit/logout, and the
                  session -> credential step the auditor API uses

Authorisation stays in Rego: a session only carries the user's access token, which is
verified on every use by ``pep.auth`` and then asked about with ``request.api = audit.read``.
"""
