"""Each detector: true positives with the exact span, near-misses rejected."""

from __future__ import annotations

import pytest

from pep.content import ContentInspector
from tests.content.conftest import found, plain_id

# Well-known documentation/test values (not real people's data).
VISA = "4111 1111 1111 1111"
AMEX = "378282246310005"
DE_IBAN = "DE89 3704 0044 0532 0130 00"
GB_IBAN = "GB82WEST12345698765432"
OPENAI = "sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z"
ANTHROPIC = "sk-ant-api03-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zAb3dE5fG7h"
AWS = "AKIAIOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"
GITHUB_PAT = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ"
SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
GOOGLE = "AIzaSyD-1234567890abcdefghijklmnopqrstu"
STRIPE = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail alice@example.com now", [("email", "alice@example.com")]),
        ("x first.last+tag@sub.example.co.uk.", [("email", "first.last+tag@sub.example.co.uk")]),
        ("write to bob [at] corp [dot] org", [("email", "bob [at] corp [dot] org")]),
        ("jürgen@exämple.de", [("email", "jürgen@exämple.de")]),
        ("call (415) 555-2671 today", [("phone", "(415) 555-2671")]),
        ("call 555-123-4567", [("phone", "555-123-4567")]),
        ("dial 1-800-555-0199", [("phone", "1-800-555-0199")]),
        ("ring +44 20 7946 0958.", [("phone", "+44 20 7946 0958")]),
        ("ring 0044 20 7946 0958", [("phone", "0044 20 7946 0958")]),
        ("E.164 +14155552671", [("phone", "+14155552671")]),
        ("London 020 7946 0958", [("phone", "020 7946 0958")]),
        ("Paris 01 23 45 67 89", [("phone", "01 23 45 67 89")]),
        (f"card {VISA} exp 12/29", [("payment_card", VISA)]),
        (f"card {VISA} 123", [("payment_card", VISA)]),
        (f"amex {AMEX}", [("payment_card", AMEX)]),
        ("amex 3782 822463 10005", [("payment_card", "3782 822463 10005")]),
        ("mc 5555-5555-5555-4444", [("payment_card", "5555-5555-5555-4444")]),
        ("ssn 123-45-6789.", [("us_ssn", "123-45-6789")]),
        ("ssn 123 45 6789", [("us_ssn", "123 45 6789")]),
        ("my SSN is 234567890", [("us_ssn", "234567890")]),
        ("Social Security number: 234567890", [("us_ssn", "234567890")]),
        (f"iban {DE_IBAN} thanks", [("iban", DE_IBAN)]),
        (f"iban {GB_IBAN}", [("iban", GB_IBAN)]),
        ("iban de89370400440532013000", [("iban", "de89370400440532013000")]),
        ("host 192.168.1.10:8080", [("ip_address", "192.168.1.10")]),
        ("dns 8.8.8.8.", [("ip_address", "8.8.8.8")]),
        ("v6 2001:db8::1 here", [("ip_address", "2001:db8::1")]),
        ("link fe80::1ff:fe23:4567:890a%eth0", [("ip_address", "fe80::1ff:fe23:4567:890a%eth0")]),
        ("url http://[2001:db8:0:0:0:0:2:1]:80/", [("ip_address", "2001:db8:0:0:0:0:2:1")]),
        ("mapped ::ffff:192.0.2.128", [("ip_address", "::ffff:192.0.2.128")]),
    ],
    ids=plain_id,
)
def test_detector_finds_true_positive_with_exact_span(
    inspector: ContentInspector, text: str, expected: list[tuple[str, str]]
) -> None:
    assert found(inspector, text) == expected


@pytest.mark.parametrize(
    ("text", "detector"),
    [
        (f"key {OPENAI}", "openai"),
        (f"key {ANTHROPIC}", "anthropic"),
        (f"key={AWS}", "aws_access_key"),
        (f"token {GITHUB}", "github"),
        (f"token {GITHUB_PAT}", "github"),
        (f"slack {SLACK}", "slack"),
        (f"maps {GOOGLE}", "google"),
        (f"stripe {STRIPE}", "stripe"),
        (f"jwt {JWT}", "jwt"),
        ("Authorization: Bearer 0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d", "bearer"),
    ],
    ids=plain_id,
)
def test_api_key_formats_are_found_and_named(
    inspector: ContentInspector, text: str, detector: str
) -> None:
    findings = inspector.inspect([text])
    assert [(f.type, f.detector) for f in findings] == [("api_key", f"builtin:{detector}")]
    assert text[findings[0].end :] == ""  # each sample ends with the key: span reaches it
    assert text[findings[0].start - 1] in " =:"


def test_pem_private_key_block_is_found_whole(inspector: ContentInspector) -> None:
    block = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7\n"
        "bm9uZQ==\n-----END RSA PRIVATE KEY-----"
    )
    assert found(inspector, f"here:\n{block}\nthanks") == [("private_key", block)]


def test_openssh_private_key_block_is_found(inspector: ContentInspector) -> None:
    block = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
        "-----END OPENSSH PRIVATE KEY-----"
    )
    assert found(inspector, block) == [("private_key", block)]


def test_truncated_private_key_without_end_line_is_covered_to_the_end_of_its_body(
    inspector: ContentInspector,
) -> None:
    body = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7"
    assert found(inspector, f"{body}\n\nwhat is this?") == [("private_key", body)]


def test_public_key_and_certificate_blocks_are_not_private_keys(
    inspector: ContentInspector,
) -> None:
    text = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----"
    assert found(inspector, text) == []


@pytest.mark.parametrize(
    ("text", "near_miss_of"),
    [
        ("card 4111 1111 1111 1112", "payment_card"),  # bad Luhn
        ("order 1234567812345670", "payment_card"),  # Luhn-valid, no network starts with 1
        ("id 4111111111111111111111", "payment_card"),  # too long to be a card
        ("zeros 0000 0000 0000 0000", "payment_card"),
        ("ssn 666-12-3456", "us_ssn"),  # area 666 never issued
        ("ssn 000-12-3456", "us_ssn"),  # area 000
        ("ssn 912-34-5678", "us_ssn"),  # area 9xx
        ("ssn 123-00-4567", "us_ssn"),  # group 00
        ("ssn 123-45-0000", "us_ssn"),  # serial 0000
        ("ssn 078-05-1120", "us_ssn"),  # voided after the Woolworth wallet card
        ("nine digits 234567890 alone", "us_ssn"),  # bare digits without an SSN keyword
        ("acct 12-123-45-6789", "us_ssn"),  # tail of a longer number
        ("iban DE89 3704 0044 0532 0130 01", "iban"),  # bad mod-97 checksum
        ("iban DE8937040044053201300", "iban"),  # wrong length for DE
        ("iban ZZ89370400440532013000", "iban"),  # no such country
        ("iban XDE89370400440532013000", "iban"),  # part of a longer token
        ("v1.2.3.4 and version 10.0.0.1 and build: 1.2.3.4", "ip_address"),  # versions
        ("dotted 1.2.3.4.5 and 256.1.1.1 and 01.02.03.04", "ip_address"),
        ("pi 3.14159 and 2024-01-15", "ip_address"),
        ("time 12:30:45 and std::vector and x[1::2] and ::1", "ip_address"),
        ("mac 00:1A:2B:3C:4D:5E", "ip_address"),
        ("date 01-02-2024 and 2024-01-15 10:30", "phone"),
        ("room 1234, 56 chairs, 7 tables, 123456789012", "phone"),
        ("sk-learn-is-a-library-for-machine-learning-in-python", "api_key"),  # no digit
        ("the task_sk_live is done", "api_key"),
        ("bearer of bad news and bearer abcdefghijklmnopqrstuvwxyz", "api_key"),  # no digit
        ("@decorator and x@y and user@localhost", "email"),
    ],
    ids=plain_id,
)
def test_near_miss_is_not_a_finding(
    inspector: ContentInspector, text: str, near_miss_of: str
) -> None:
    assert [f for f in found(inspector, text) if f[0] == near_miss_of] == []


def test_bad_iban_is_not_reported_as_a_card_either(inspector: ContentInspector) -> None:
    assert found(inspector, "iban DE89 3704 0044 0532 0130 01") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("al\u200bice@exam\u200dple.com", ("email", "alice@example.com")),
        ("ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", ("email", "alice@example.com")),
        ("４１１１ １１１１ １１１１ １１１１", ("payment_card", VISA)),
        ("4111\u200b1111\u200b1111\u200b1111", ("payment_card", "4111111111111111")),
        ("\u0661\u0662\u0663-\u0664\u0665-\u0666\u0667\u0668\u0669", ("us_ssn", "123-45-6789")),
        ("123\u201145\u20116789", ("us_ssn", "123-45-6789")),
        ("\u202eDE89 3704 0044 0532 0130 00\u202c", ("iban", DE_IBAN)),
        ("sk-\u200bproj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z", ("api_key", OPENAI)),
        ("a\u0332k\u0332AKIAIOSFODNN7EXAMPLE", None),
        ("１９２．１６８．１．１０", ("ip_address", "192.168.1.10")),
    ],
    ids=plain_id,
)
def test_obfuscated_content_is_still_found(
    inspector: ContentInspector, text: str, expected: tuple[str, str] | None
) -> None:
    assert found(inspector, text) == ([expected] if expected else [])


def test_findings_carry_message_index_and_offsets_into_each_normalised_text(
    inspector: ContentInspector,
) -> None:
    texts = ["nothing here", "x\u200b bob@example.org and alice@example.com"]
    findings = inspector.inspect(texts)
    assert [(f.message_index, f.start, f.end) for f in findings] == [(1, 2, 17), (1, 22, 39)]
    normalised = inspector.normalise(texts[1])
    assert [normalised[f.start : f.end] for f in findings] == [
        "bob@example.org",
        "alice@example.com",
    ]


def test_overlapping_findings_keep_the_more_specific_type(inspector: ContentInspector) -> None:
    # The AWS key id inside a PEM body must not produce a second, overlapping finding.
    block = "-----BEGIN PRIVATE KEY-----\nAKIAIOSFODNN7EXAMPLE0123456789abcdef\n-----END PRIVATE KEY-----"
    assert [t for t, _ in found(inspector, block)] == ["private_key"]


def test_several_findings_in_one_text_come_back_in_text_order(inspector: ContentInspector) -> None:
    text = f"call 555-123-4567, mail a@b.io, card {VISA}, host 10.0.0.1, ssn 123-45-6789"
    assert [t for t, _ in found(inspector, text)] == [
        "phone", "email", "payment_card", "ip_address", "us_ssn",
    ]  # fmt: skip
