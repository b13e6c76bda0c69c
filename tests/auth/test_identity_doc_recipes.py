"""Every YAML snippet in docs/identity.md is valid for the identity settings schema.

The recipes are copied by operators as they are; a snippet the schema refuses (a renamed key,
a wrong type) would only surface at their start-up. Placeholders like ``<tenant-id>`` are
filled with sample values before validation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pep.auth.settings import IdentitySettings, IssuerSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "identity.md"
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)
_PLACEHOLDER = re.compile(r"<([a-z0-9-]+)>")


def _snippets() -> list[tuple[str, str]]:
    """(heading of the section, YAML text) for every yaml block in the doc."""
    text = DOC.read_text()
    out = []
    for m in _BLOCK.finditer(text):
        heading = re.findall(r"^#+ (.+)$", text[:m.start()], re.M)[-1]
        out.append((heading, _PLACEHOLDER.sub(lambda p: "sample-" + p.group(1), m.group(1))))
    return out


SNIPPETS = _snippets()
RECIPES = [(h, y) for h, y in SNIPPETS if not y.lstrip().startswith("identity:")]


def test_the_doc_has_a_recipe_for_every_documented_idp() -> None:
    headings = {h for h, _ in RECIPES}
    assert {"Keycloak", "Okta", "Microsoft Entra ID", "Auth0", "Google"} <= headings


@pytest.mark.parametrize("heading,snippet", RECIPES, ids=[h for h, _ in RECIPES])
def test_recipe_snippet_is_a_valid_issuer_list(heading: str, snippet: str) -> None:
    issuers: Any = yaml.safe_load(snippet)
    assert isinstance(issuers, list) and issuers
    for raw in issuers:
        IssuerSettings.model_validate(raw)
    IdentitySettings.model_validate({"issuers": issuers})


def test_configuration_reference_snippet_is_valid() -> None:
    full = [y for _, y in SNIPPETS if y.lstrip().startswith("identity:")]
    assert len(full) == 1
    raw = yaml.safe_load(full[0])["identity"]
    settings = IdentitySettings.model_validate(raw)
    assert settings.issuers[0].claims.client == ("azp", "client_id")
