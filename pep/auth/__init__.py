"""Identity: verify the end user's OIDC token and say who is calling (see docs/identity.md)."""

from pep.auth.authenticator import Authenticator

__all__ = ["Authenticator"]
