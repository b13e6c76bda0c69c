"""The output-phase decision memo (pep.policy.output_memo) and the analysis behind it
(pep.policy.projection): the projection holds every path that can change the answer, the
analysis refuses what it cannot prove, and a memoised answer is the fresh evaluation's."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import regorus

from pep.policy.embedded import EmbeddedEngine
from pep.policy.engine import PolicyError
from pep.policy.projection import _DEFINED_ON_DEFINED
from tests.policy.conftest import POLICIES, policy_input, write_bundle

MAIN = """package regogate
import rego.v1

decision := {
	"allow": count(d) == 0,
	"reasons": [r | some r in d],
	"obligations": object.union({"redact": sort(x) | count(x) > 0}, {"audit_content": "digest"}),
} if {
	input.output
	d := data.regogate.output.deny
	x := data.regogate.output.redact
} else := {"allow": true, "reasons": [], "obligations": {"audit_content": "full"}}
"""

OUTPUT_TYPES = """package regogate.output
import rego.v1

deny contains {"code": "secret", "message": t} if {
	some t in input.output.types
	t in data.gateway.deny
}

redact contains t if {
	some t in input.output.types
	t in data.gateway.redact
}
"""

DATA = {"gateway": {"deny": ["api_key"], "redact": ["email", "phone"]}}

# Output modules whose answer depends on more than input.output.types: each names the
# paths the projection must hold.
MUST_INCLUDE: dict[str, tuple[str, set[tuple[str, ...]], set[tuple[str, ...]]]] = {
    "text": ("""package regogate.output
import rego.v1
deny contains {"code": "word", "message": "x"} if contains(input.output.text, "secret")
redact contains "email" if { some t in input.output.types; t == "email" }
""", {("output", "text"), ("output", "types")}, set()),
    "identity through an import and a function": ("""package regogate.output
import rego.v1
import data.regogate.lib as lib
deny contains {"code": "contractor", "message": "x"} if {
	lib.is_contractor(input.user)
	some t in input.output.types
}
redact contains t if { some t in input.output.types }
""", {("user",), ("output", "types")}, set()),
    "a bit": ("""package regogate.output
import rego.v1
deny contains {"code": "partial", "message": "x"} if { not input.output.final }
redact contains t if { some t in input.output.types }
""", {("output", "types")}, {("output", "final")}),
    "a dynamic index": ("""package regogate.output
import rego.v1
deny contains {"code": "long", "message": "x"} if {
	some i
	input.output.findings[i].end > 20
}
redact contains t if { some t in input.output.types }
""", {("output", "findings"), ("output", "types")}, set()),
    "a rule of another package": ("""package regogate.output
import rego.v1
deny contains {"code": "model", "message": "x"} if data.regogate.lib.big_model
redact contains t if { some t in input.output.types }
""", {("request", "model"), ("output", "types")}, set()),
}

LIB = """package regogate.lib
import rego.v1
is_contractor(u) if "contractors" in u.groups
big_model if input.request.model == "mock-gpt-admin"
"""


async def started(root: Path) -> EmbeddedEngine:
    engine = EmbeddedEngine(root, hot_reload=False)
    await engine.start()
    return engine


async def bundle(tmp_path: Path, output: str, main: str = MAIN,
                 data: dict[str, Any] | None = None) -> EmbeddedEngine:
    root = write_bundle(tmp_path / "b", {"main.rego": main, "output/output.rego": output,
                                         "lib/lib.rego": LIB}, DATA if data is None else data)
    return await started(root)


def with_output(doc: dict[str, Any], types: list[str], text: str = "", final: bool = True,
                findings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {**doc, "usage": {}, "output": {"text": text, "findings": findings or [],
                                           "types": types, "final": final,
                                           "truncated": False}}


def projection_of(engine: EmbeddedEngine) -> Any:
    assert engine._policy is not None
    memo = engine._policy.output_memo
    return None if memo is None else memo.projection


async def test_the_shipped_output_phase_is_keyed_on_whether_output_is_set_and_its_types() -> None:
    engine = await started(POLICIES)
    found = projection_of(engine)
    assert found is not None
    assert found.values == (("output", "types"),)
    assert found.bits == (("output",),)
    assert found.guards == (("output",),)
    await engine.close()


@pytest.mark.parametrize("case", sorted(MUST_INCLUDE))
async def test_the_projection_holds_every_path_the_output_phase_reads(
    tmp_path: Path, case: str
) -> None:
    source, values, bits = MUST_INCLUDE[case]
    engine = await bundle(tmp_path, source)
    found = projection_of(engine)
    assert found is not None
    assert values <= set(found.values)
    assert bits <= set(found.bits) | set(found.values)
    await engine.close()


async def test_answers_differing_only_in_text_miss_when_the_policy_reads_the_text(
    tmp_path: Path,
) -> None:
    engine = await bundle(tmp_path, MUST_INCLUDE["text"][0])
    base = policy_input()
    clean = await engine.evaluate(with_output(base, ["email"], text="hello"))
    secret = await engine.evaluate(with_output(base, ["email"], text="a secret"))
    assert clean.allow and not secret.allow
    assert engine._policy is not None and engine._policy.output_memo is not None
    assert engine._policy.output_memo.hits == 0
    await engine.close()


async def test_a_repeated_projection_is_answered_from_the_memo_with_this_requests_ids() -> None:
    engine = await started(POLICIES)
    first = await engine.evaluate(with_output(policy_input(request_id="r1"), ["email"], "a@b.c"))
    second = await engine.evaluate(with_output(policy_input("bob", ("contractors",),
                                                            request_id="r2"), ["email"], "x@y.z"))
    assert engine._policy is not None and engine._policy.output_memo is not None
    assert engine._policy.output_memo.hits == 1
    assert (first.decision_id, second.decision_id) == ("r1", "r2")
    assert second.policy_revision == engine.revision
    assert second.obligations.redact == ["email"] and second.allow
    await engine.close()


async def test_the_request_phase_never_uses_the_memo() -> None:
    engine = await started(POLICIES)
    for _ in range(3):
        decision = await engine.evaluate(policy_input())
        assert decision.allow
    assert engine._policy is not None and engine._policy.output_memo is not None
    assert (engine._policy.output_memo.hits, len(engine._policy.output_memo)) == (0, 0)
    await engine.close()


REFUSED: dict[str, tuple[str, str]] = {
    "a first body that can fail": (MAIN.replace("\tinput.output\n", "\tinput.output\n"
                                                "\tcount(input.output.types) > 0\n"),
                                   "may fail"),
    "a rule that can be undefined": (MAIN.replace("data.regogate.output.redact",
                                                  "data.regogate.output.maybe"), "may fail"),
    "data the bundle lacks": (MAIN.replace('"digest"})', 'object.get(data.gateway.x, "a", "digest")})'),
                              "may be undefined"),
    "no guard": (MAIN.replace("\tinput.output\n", ""), "tests no input path"),
    "a default": (MAIN + "default decision := {}\n", "not one complete rule"),
}

REFUSED_OUTPUT: dict[str, tuple[str, str]] = {
    "input whole": ('deny contains {"code": "x", "message": "m"} if { x := input; x.output.final }',
                    "`input` used whole"),
    "input indexed dynamically": ('deny contains {"code": k, "message": "m"} if { input[k] == 1 }',
                                  "`input` used whole or indexed dynamically"),
    "walk": ('deny contains {"code": "x", "message": "m"} if { walk(input.output, [p, v]) }',
             "walk"),
    "with": ('deny contains {"code": "x", "message": "m"} if { data.regogate.lib.big_model '
             'with input.request.model as "mock-gpt-admin" }', "`with`"),
    "a dynamic rule lookup": ('deny contains {"code": "x", "message": "m"} if { some t in '
                              'input.output.types; data.regogate.lib[t] }', "dynamic lookup"),
    "a whole package": ('deny contains {"code": "x", "message": "m"} if { '
                        'count(data.regogate.lib) > 9 }', "whole of data.regogate.lib"),
    "time": ('deny contains {"code": "x", "message": "m"} if time.now_ns() > 0', "time.now_ns"),
    "print": ('deny contains {"code": "x", "message": "m"} if print("x")', "print"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_the_analysis_refuses_an_entry_it_cannot_prove(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    main, reason = REFUSED[case]
    maybe = OUTPUT_TYPES + 'maybe := 1 if input.output.final\n'
    engine = await bundle(tmp_path, maybe, main=main)
    assert projection_of(engine) is None
    assert any("output decision memo off" in r.message and reason in r.message
               for r in caplog.records), [r.message for r in caplog.records]
    await engine.close()


@pytest.mark.parametrize("case", sorted(REFUSED_OUTPUT))
async def test_the_analysis_refuses_a_reachable_rule_it_cannot_follow(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    rule, reason = REFUSED_OUTPUT[case]
    engine = await bundle(tmp_path, OUTPUT_TYPES + rule + "\n")
    assert projection_of(engine) is None
    assert any(reason in r.message for r in caplog.records), [r.message for r in caplog.records]
    await engine.close()


async def test_import_input_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = OUTPUT_TYPES.replace("import rego.v1\n", "import rego.v1\nimport input.output\n")
    engine = await bundle(tmp_path, source)
    assert projection_of(engine) is None
    assert any("import input" in r.message for r in caplog.records)
    await engine.close()


async def test_an_invalid_output_document_is_refused_every_time_and_never_stored(
    tmp_path: Path,
) -> None:
    main = MAIN.replace('{"audit_content": "digest"}', '{"launch": "now"}')
    engine = await bundle(tmp_path, OUTPUT_TYPES, main=main)
    assert projection_of(engine) is not None
    for _ in range(2):
        with pytest.raises(PolicyError) as err:
            await engine.evaluate(with_output(policy_input(), ["email"]))
        assert err.value.code == "unknown_obligation"
    assert engine._policy is not None and engine._policy.output_memo is not None
    assert len(engine._policy.output_memo) == 0
    await engine.close()


async def test_an_answer_of_the_non_strict_fallback_is_never_stored(tmp_path: Path) -> None:
    # to_number("email") is a builtin error: strict regorus fails, OPA's semantics (the
    # fallback) make that expression undefined.
    source = OUTPUT_TYPES + ('deny contains {"code": "n", "message": "m"} if { some t in '
                             'input.output.types; to_number(t) > 1 }\n')
    engine = await bundle(tmp_path, source)
    assert projection_of(engine) is not None
    for _ in range(2):
        decision = await engine.evaluate(with_output(policy_input(), ["email"]))
        assert decision.allow and decision.obligations.redact == ["email"]
    assert engine._policy is not None and engine._policy.output_memo is not None
    assert engine._policy.program.fallbacks == 2
    assert len(engine._policy.output_memo) == 0
    await engine.close()


TYPES = ["email", "phone", "api_key", "private_key", "iban", "payment_card"]
WORDS = ["hello", "secret", "a", "key", ""]


def random_input(rng: random.Random, i: int) -> dict[str, Any]:
    doc = policy_input(rng.choice(["alice", "bob", "carol"]),
                       tuple(rng.sample(["ml-team", "contractors", "admins"], rng.randint(0, 2))),
                       model=rng.choice(["mock-gpt", "mock-gpt-admin", "mock-gpt-eu"]),
                       request_id=f"req-{i}")
    findings = [{"type": t, "message_index": 0, "start": 0, "end": rng.randint(1, 40),
                 "detector": "builtin"} for t in rng.sample(TYPES, rng.randint(0, 2))]
    out = with_output(doc, sorted(rng.sample(TYPES, rng.randint(0, 3))),
                      text=" ".join(rng.sample(WORDS, rng.randint(0, 3))),
                      final=rng.random() < 0.5, findings=findings)
    if rng.random() < 0.1:
        del out["output"]["final"]
    return out


def fresh_copy(root: Path, into: Path) -> Path:
    shutil.copytree(root, into)
    return into


@pytest.mark.parametrize("case", ["shipped", *sorted(MUST_INCLUDE)])
async def test_memoised_answers_equal_fresh_evaluations_on_random_outputs(
    tmp_path: Path, case: str
) -> None:
    if case == "shipped":
        memoised = await started(POLICIES)
        fresh = await started(fresh_copy(POLICIES, tmp_path / "copy"))
    else:
        memoised = await bundle(tmp_path / "m", MUST_INCLUDE[case][0])
        fresh = await bundle(tmp_path / "f", MUST_INCLUDE[case][0])
    assert fresh._policy is not None
    fresh._policy.output_memo = None  # the oracle: every answer evaluated
    rng = random.Random(f"output-memo {case}")
    for i in range(300):
        doc = random_input(rng, i)
        assert (await memoised.evaluate(doc)) == (await fresh.evaluate(doc)), doc
    assert memoised._policy is not None and memoised._policy.output_memo is not None
    assert memoised._policy.output_memo.hits > 0
    await memoised.close()
    await fresh.close()


@pytest.mark.parametrize("name", sorted(_DEFINED_ON_DEFINED))
def test_builtins_trusted_to_be_defined_answer_or_raise_on_ill_typed_arguments(name: str) -> None:
    args = {"count": 1, "sort": 1, "object.union": 2, "object.get": 3, "concat": 2,
            "sprintf": 2, "type_name": 1}.get(name, 1)
    engine = regorus.Engine()
    values = ["1", '"s"', "null", "true", "[1]", "{1}", '{"a": 1}']
    for combo in [[v] * args for v in values] + [values[:args], values[-args:]]:
        query = f"x := {name}({', '.join(combo)})"
        try:
            out = engine.eval_query(query)
        except Exception:  # noqa: BLE001 - an error, never "undefined"
            continue
        assert out.get("result"), query


def test_a_key_is_exact_json_and_refuses_what_it_cannot_encode_faithfully() -> None:
    from dataclasses import dataclass

    from pep.policy.output_memo import OutputMemo
    from pep.policy.projection import Projection

    @dataclass
    class Box:
        types: list[str]

    memo = OutputMemo(Projection(values=(("output", "types"),), bits=(("output", "final"),),
                                 guards=(("output",),)))
    one = memo.key({"output": {"types": [1], "final": True}})
    assert one is not None
    assert memo.key({"output": {"types": [1.0], "final": True}}) != one  # 1 vs 1.0: exact
    assert memo.key({"output": {"types": [1], "final": 0}}) == one  # 0 is truthy in Rego
    assert memo.key({"output": {"types": [1], "final": False}}) != one
    assert memo.key({"output": {"final": True}}) != one  # undefined is not a value
    assert memo.key({"output": False}) is None  # a guard that fails: not this phase
    assert memo.key({}) is None
    assert memo.key({"output": "text"}) is not None  # output.types undefined on a string
    assert memo.key({"output": Box(["email"])}) is None  # orjson would encode an object
    assert memo.key({"output": {"types": {1, 2}, "final": True}}) is None  # not JSON


async def test_a_reloaded_bundle_starts_with_an_empty_memo(tmp_path: Path) -> None:
    engine = await bundle(tmp_path, OUTPUT_TYPES)
    answer = with_output(policy_input(), ["email"])
    assert (await engine.evaluate(answer)).allow
    assert (await engine.evaluate(answer)).allow
    stricter = OUTPUT_TYPES.replace('t in data.gateway.deny', 't in {"email", "api_key"}')
    (tmp_path / "b" / "output" / "output.rego").write_text(stricter)
    assert await engine.reload_if_changed()
    assert engine._policy is not None and engine._policy.output_memo is not None
    assert len(engine._policy.output_memo) == 0
    decision = await engine.evaluate(answer)
    assert not decision.allow and decision.reasons[0].code == "secret"
    await engine.close()
