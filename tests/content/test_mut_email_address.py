"""``pep.content.email_address.EmailDetector`` at its edges: the 64-character local-part
window, the 66-character window of the spelled-out form, addresses at the very start of the
text, a one-character first label, "@" next to "@", the upper-case spelling (mutation testing:
scripts/mutate.py content --only pep/content/email_address.py)."""

from __future__ import annotations

from pep.content.detectors import Span
from pep.content.email_address import EmailDetector


def spans(text: str) -> list[tuple[str, str]]:
    found = list(EmailDetector().find(text, 0))
    assert all(s.type == "email" for s in found)
    return [(text[s.start:s.end], s.detector) for s in found]


def test_a_plain_address_is_one_span_from_its_local_part_to_its_domain() -> None:
    assert list(EmailDetector().find("to bob@example.org now", 0)) == [
        Span(3, 18, "email", "email")]
    assert EmailDetector.type == "email"


def test_the_local_part_is_at_most_64_characters() -> None:
    local = "a" * 64
    assert spans(f"x {local}@example.org") == [(f"{local}@example.org", "email")]
    # A longer run before the "@" is not an address at all (not its last 64 characters).
    assert spans(f"x a{local}@example.org") == []


def test_addresses_at_the_very_start_of_the_text() -> None:
    assert spans("a@example.org") == [("a@example.org", "email")]
    assert spans("a [at] example [dot] org") == [("a [at] example [dot] org", "email_obfuscated")]


def test_a_one_character_first_label() -> None:
    assert spans("mail bob@x.io") == [("bob@x.io", "email")]


def test_an_at_sign_at_the_start_does_not_stop_the_search() -> None:
    assert spans("@x then ann@example.org") == [("ann@example.org", "email")]


def test_an_at_sign_right_after_a_domain_starts_the_next_candidate() -> None:
    # The domain ends before the second "@", which is tried from there.
    assert spans("a@b.co@c.de") == [("a@b.co", "email"), ("b.co@c.de", "email")]
    assert spans("a@b.co, c@d.de") == [("a@b.co", "email"), ("c@d.de", "email")]


def test_an_at_sign_without_a_domain_is_skipped() -> None:
    assert spans("x@@y@@ z@b.co") == [("z@b.co", "email")]
    assert spans("a@b c@d.de") == [("c@d.de", "email")]


def test_the_spelled_out_form_in_any_case() -> None:
    assert spans("mail ann [AT] example [DOT] org") == [
        ("ann [AT] example [DOT] org", "email_obfuscated")]
    assert spans("mail ann (At) example.org") == [("ann (At) example.org", "email_obfuscated")]


def test_the_spelled_out_local_part_is_found_within_66_characters_of_the_at() -> None:
    # The local part ends one space before "[at]"; 65 characters start 66 before it.
    local = "b" * 65
    assert spans(f"x {local} [at] example [dot] org") == [
        (f"{local} [at] example [dot] org", "email_obfuscated")]
    assert spans(f"x b{local} [at] example [dot] org") == []


def test_every_address_of_several_is_found_in_order() -> None:
    # After a found address, and after an "@" that is not one, the search goes on from there
    # to the next "@", not to the last one.
    assert spans("a@b.co, c@d.de, e@f.gh") == [
        ("a@b.co", "email"), ("c@d.de", "email"), ("e@f.gh", "email")]
    assert spans("x @ a@b.co c@d.de") == [("a@b.co", "email"), ("c@d.de", "email")]
