"""What the embedded engine runs exactly as OPA does, and what it refuses at load.

One source of truth for three consumers: bundle load (``Program`` refuses), ``regogate
policy check`` (reports), and ``docs/policies.md`` (``scripts/gen_policy_docs.py`` renders
``REFUSED_BUILTINS`` and ``REFUSED_CONSTRUCTS``; a test keeps the page current).

The checker walks regorus' own AST (``Engine.get_ast_as_json``), so a refusal names the
construct, the file and the line. Anything not refused must agree with OPA v1.9.0 on the
conformance corpus (tests/policy/conformance).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import regorus

from pep.policy import builtins
from pep.policy.rego_ast import ref_name

# Builtins refused wherever they appear, with the reason shown to the policy author.
REFUSED_BUILTINS: dict[str, str] = {
    **builtins.REFUSED,
}

# Constructs refused wherever they appear (key -> what and why), checked on the AST.
REFUSED_CONSTRUCTS: dict[str, str] = {
    "walk_assignment": (
        "`[path, value] := walk(x)` (assignment form) yields nothing on the embedded engine; "
        "write the relation form `walk(x, [path, value])`"
    ),
    "with_extension": (
        "`with f as ...` where f is implemented in Python by regogate cannot be replaced on "
        "the embedded engine; use a policy function and replace that"
    ),
    "with_builtin_by_builtin": (
        "`with f as g` where g is a builtin does not resolve on the embedded engine; wrap g "
        "in a policy function"
    ),
    "with_count_string": (
        "`count` of an input value or of a string beyond the Basic Multilingual Plane in a "
        "bundle that replaces `count` with `with`: the embedded engine counts such a string "
        "in UTF-16 units (an emoji is 2), OPA in code points, and the exact count cannot be "
        "replaced by `with`"
    ),
    "import_keyword": (
        "an import path ending in a Rego keyword (e.g. `import data.lib.contains`) is an "
        "error in OPA"
    ),
    "import_unknown": (
        "an import of a Rego dialect other than `rego.v1` (e.g. `import rego.v2`) or of an "
        "unknown future keyword (`import future.keywords.bogus`) is a parse error in OPA; "
        "the embedded engine ignores it"
    ),
    "float_trailing_zero": (
        "a number literal with trailing zeros after the point (`1.0`, `2.50`): OPA keeps "
        "the literal's text (`json.marshal`, `sprintf`, set membership), the embedded "
        "engine only its value; write `1` or `2.5`"
    ),
    "number_range": (
        "a number literal of magnitude 2^64 or more, or an integer literal below -2^63: the "
        "embedded engine cannot compute with it exactly"
    ),
    "ill_typed_call": (
        "a builtin called with constant arguments of the wrong type: OPA's type checker "
        "rejects the policy"
    ),
    "time_format_zone_name": (
        "`time.format` with a layout naming the zone (`MST`): the embedded engine prints "
        "the offset, OPA the abbreviation"
    ),
    "missing_builtin": "a function that is neither a policy function nor an available builtin",
}

KEYWORDS = frozenset({"as", "contains", "default", "else", "every", "false", "if", "import",
                      "in", "not", "null", "package", "some", "true", "with"})


@dataclass
class Analysis:
    refusals: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    rule_paths: frozenset[str] = frozenset()


_ARITY: dict[str, int | None] = {}


def native_arity(name: str) -> int | None:
    """Arity of a regorus builtin (None if regorus lacks it), asked once per process."""
    if name not in _ARITY:
        from pep.policy.program import no_rust_backtraces

        no_rust_backtraces()  # this probe's error is the first regorus error of a start-up
        engine = regorus.Engine()
        try:
            engine.add_policy("probe.rego", f"package regogate_probe\nx := {name}(null)\n")
            engine.eval_rule("data.regogate_probe.x")
            arity: int | None = 1
        except Exception as exc:  # noqa: BLE001 - the message is the answer
            text = str(exc)
            arity = 1
            if "could not find function" in text:
                arity = None
            else:
                marker = "expects "
                at = text.find(marker)
                if at >= 0:
                    words = text[at + len(marker):].split()
                    if words and words[0].isdigit() and "argument" in text:
                        arity = int(words[0])
        except BaseException as exc:
            if type(exc).__name__ != "PanicException":
                raise
            arity = 1
        _ARITY[name] = arity
    return _ARITY[name]


def builtin_arity(name: str) -> int | None:
    ext = builtins.EXTENSIONS.get(name)
    return ext[0] if ext is not None else native_arity(name)


def _span(node: Any) -> tuple[int, int, int]:
    body = next(iter(node.values()))
    span = body["span"]
    return int(span["start"]), int(span["end"]), int(span["line"])


def _walk(node: Any, parent: Any = None) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(kind, body, parent body) for every spanned AST node, pre-order (iterative)."""
    stack: list[tuple[Any, Any]] = [(node, parent)]
    while stack:
        cur, up = stack.pop()
        if isinstance(cur, dict):
            here = up
            if len(cur) == 1:
                kind, body = next(iter(cur.items()))
                if isinstance(body, dict) and "span" in body:
                    yield kind, body, up
                    here = body
            stack.extend((v, here) for v in reversed(cur.values()))
        elif isinstance(cur, list):
            stack.extend((v, up) for v in reversed(cur))


def _dicts(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            yield cur
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)


_CONSTANT = frozenset({"Number", "String", "RawString", "Bool", "Null", "Array", "Set",
                       "Object"})


def _constant(node: Any) -> bool:
    """A literal made only of literals (no variables, refs or calls)."""
    if not isinstance(node, dict) or len(node) != 1:
        return False
    kind, body = next(iter(node.items()))
    if kind not in _CONSTANT:
        return False
    if kind in ("Array", "Set"):
        return all(_constant(i) for i in body.get("items", []))
    if kind == "Object":
        return all(
            _constant(f[1]) and _constant(f[2]) if isinstance(f, list) and len(f) == 3
            else False
            for f in body.get("fields", [])
        )
    return True


_TYPE_ERROR = ("expects string argument", "expects object argument", "expects number",
               "expects array", "expects set", "expects string collection",
               "requires array/object/set/string", "expects boolean", "operand must be",
               "argument must be", "invalid argument")


def _type_error(call_text: str) -> str | None:
    """Evaluate a constant call once: a type error is what OPA's checker refuses."""
    from pep.policy.program import clean_error, new_engine

    engine = new_engine()
    try:
        engine.add_policy("t.rego", f"package regogate_typecheck\nx := {call_text}\n")
        engine.eval_rule("data.regogate_typecheck.x")
    except Exception as exc:  # noqa: BLE001 - only the message matters
        msg = clean_error(exc).splitlines()[-1]
        return msg if any(t in msg for t in _TYPE_ERROR) else None
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
    return None


# Python builtins that answer a non-string operand (as OPA does at run time) where OPA's
# type checker rejects a constant one: the checker's refusal is kept.
_STRING_OPERAND = frozenset({"json.is_valid"})


def _string_or_input(node: Any) -> bool:
    """A string literal or a reference into ``input`` (JSON: never a set)."""
    if not isinstance(node, dict) or len(node) != 1:
        return False
    kind, body = next(iter(node.items()))
    if kind in ("String", "RawString"):
        return True
    while kind in ("RefDot", "RefBrack"):
        kind, body = next(iter(body["refr"].items()))
    return kind == "Var" and bool(body.get("value") == "input")


def _static_head(refr: Any) -> str | None:
    """``limits.team[t]`` -> ``limits.team``: the static prefix of a rule head."""
    name = ref_name(refr)
    if name is not None:
        return name
    if isinstance(refr, dict) and len(refr) == 1:
        kind, body = next(iter(refr.items()))
        if kind == "RefBrack":
            return _static_head(body["refr"])
    return None


class _Module:
    def __init__(self, file: str, source: str, ast: dict[str, Any]) -> None:
        self.file = file
        self.source = source
        self.raw = source.encode()
        self.ast = ast
        self.package = ref_name(ast["package"]["refr"]) or ""
        self.imports: dict[str, str] = {}
        for imp in ast.get("imports", []):
            target = ref_name(imp.get("refr"))
            if target is None or not target.startswith("data."):
                continue
            alias = imp.get("as")
            alias_name = None
            if isinstance(alias, dict) and "start" in alias and "end" in alias:
                alias_name = self.raw[alias["start"]:alias["end"]].decode(errors="replace")
            self.imports[alias_name or target.rsplit(".", 1)[-1]] = target
        self.rules: list[tuple[str, str]] = []  # (full path, kind)
        for rule in ast.get("rules", []):
            spec = rule.get("Spec")
            if not isinstance(spec, dict):
                continue
            head_kind, head = next(iter(spec["head"].items()))
            name = _static_head(head.get("refr"))
            if name is not None:
                self.rules.append((f"data.{self.package}.{name}", head_kind))

    def text(self, node: Any) -> str:
        start, end, _ = _span(node)
        return self.raw[start:end].decode()

    def outer(self, node: Any) -> tuple[int, int]:
        """Byte span of ``node`` as written: regorus' span of a string literal leaves out
        its quotes (``"b"`` spans ``b``), so a rewrite that copies source text by spans
        would cut them off."""
        start, end, _ = _span(node)
        kind = next(iter(node))
        if kind in ("String", "RawString") and start > 0 and end < len(self.raw):
            quote = self.raw[start - 1:start]
            if quote in (b'"', b"`") and self.raw[end:end + 1] == quote:
                return start - 1, end + 1
        return start, end

    def source_of(self, node: Any) -> str:
        start, end = self.outer(node)
        return self.raw[start:end].decode()

    def resolve(self, name: str) -> list[str]:
        head, _, rest = name.partition(".")
        out = [f"data.{self.package}.{name}"]
        if name.startswith("data."):
            out.append(name)
        if head in self.imports and rest:
            out.append(f"{self.imports[head]}.{rest}")
        return out


def _modules(sources: dict[str, str], asts: dict[str, dict[str, Any]]) -> list[_Module]:
    return [_Module(f, sources[f], asts[f]) for f in sources if f in asts]


def builtin_predicate(
    sources: dict[str, str], asts: dict[str, dict[str, Any]]
) -> Callable[[str], int | None]:
    """Arity of a call name if it is a builtin (not a policy function), else None."""
    mods = _modules(sources, asts)
    functions = {path for m in mods for path, kind in m.rules if kind == "Func"}
    with_targets = {
        name for m in mods for kind, body, _ in _walk(m.ast.get("rules", []))
        if kind != "Call" for mod in body.get("with_mods", []) or []
        if (name := ref_name(mod.get("refr"))) is not None
    }
    # Resolution needs the calling module; a name that is a policy function anywhere in the
    # bundle under any of its spellings is treated as one (conservative: not wrapped).
    short = {p.rsplit(".", 1)[-1] for p in functions}

    def is_builtin(name: str) -> int | None:
        if name in with_targets or name.split(".")[-1] in short:
            return None
        return builtin_arity(name)

    return is_builtin


# What OPA 1.x accepts after `import future.keywords.` (its parser rejects anything else).
FUTURE_KEYWORDS = frozenset({"and", "contains", "every", "if", "in", "not", "or"})


def _unknown_import(target: str) -> bool:
    """An import OPA's parser rejects: a `rego.` dialect but `rego.v1`, or an unknown
    future keyword."""
    if target.startswith("rego."):
        return target != "rego.v1"
    if target.startswith("future.keywords."):
        return target.removeprefix("future.keywords.") not in FUTURE_KEYWORDS
    return False


def analyse(sources: dict[str, str], asts: dict[str, dict[str, Any]]) -> Analysis:
    mods = _modules(sources, asts)
    functions = {path for m in mods for path, kind in m.rules if kind == "Func"}
    out = Analysis(rule_paths=frozenset(p for m in mods for p, _ in m.rules))

    # `with count as ...` replaces `count`, not the `__exact.count` it would be routed to.
    replaced = {
        name for m in mods for stmt in _dicts(m.ast.get("rules", []))
        for mod in stmt.get("with_mods", []) or []
        if (name := ref_name(mod.get("refr"))) is not None
    }

    def refuse(m: _Module, line: int, key: str, detail: str = "") -> None:
        what = REFUSED_CONSTRUCTS.get(key, key)
        out.refusals.append(f"{m.file}:{line}: {detail + ': ' if detail else ''}{what}")

    for m in mods:
        for imp in m.ast.get("imports", []):
            target = ref_name(imp.get("refr"))
            if target and target.rsplit(".", 1)[-1] in KEYWORDS and target.startswith("data."):
                refuse(m, _span(imp["refr"])[2], "import_keyword", f"import {target}")
            elif target and _unknown_import(target):
                refuse(m, _span(imp["refr"])[2], "import_unknown", f"import {target}")
        edits: list[tuple[int, int, str]] = []
        for stmt in _dicts(m.ast.get("rules", [])):
            for mod in stmt.get("with_mods", []) or []:
                target = ref_name(mod.get("refr"))
                if target is None or target.split(".")[0] in ("input", "data"):
                    continue
                if any(c in functions for c in m.resolve(target)):
                    continue
                line = _span(mod["refr"])[2]
                if target in builtins.EXTENSIONS:
                    refuse(m, line, "with_extension", f"with {target}")
                value = ref_name(mod.get("as"))
                if value and builtin_arity(value) is not None and not any(
                    c in functions for c in m.resolve(value)
                ):
                    refuse(m, line, "with_builtin_by_builtin", f"with {target} as {value}")
        for kind, body, parent in _walk(m.ast.get("rules", [])):
            if kind == "Number":
                literal = m.text({kind: body})
                value = body.get("value")
                mantissa = literal.lower().split("e")[0]
                if "." in mantissa and mantissa.endswith("0"):
                    refuse(m, int(body["span"]["line"]), "float_trailing_zero", literal)
                elif isinstance(value, (int, float)) and abs(value) >= 2**64 or (
                    literal.lstrip("-").isdigit() and int(literal) < -2**63
                ):
                    refuse(m, int(body["span"]["line"]), "number_range", literal)
            if kind == "AssignExpr" or (kind == "BoolExpr" and body.get("op") == "Eq"):
                rhs, lhs = body.get("rhs"), body.get("lhs")
                for a, b in ((lhs, rhs), (rhs, lhs)):
                    if (isinstance(b, dict) and "Call" in b
                            and ref_name(b["Call"]["fcn"]) == "walk"
                            and isinstance(a, dict) and "Var" not in a):
                        refuse(m, body["span"]["line"], "walk_assignment")
            if kind != "Call":
                continue
            name = ref_name(body["fcn"])
            if name is None:
                continue
            line = int(body["span"]["line"])
            if any(c in functions for c in m.resolve(name)):
                continue
            if name in REFUSED_BUILTINS:
                out.refusals.append(f"{m.file}:{line}: {name} is refused: {REFUSED_BUILTINS[name]}")
                continue
            arity = builtin_arity(name)
            if arity is None:
                refuse(m, line, "missing_builtin", name)
                continue
            params = body.get("params", [])
            if name == "time.format" and params and "Array" in params[0]:
                items = params[0]["Array"].get("items", [])
                if len(items) == 3 and "MST" in m.text(items[2]):
                    refuse(m, line, "time_format_zone_name")
            if len(params) == arity and params and all(_constant(p) for p in params):
                problem = _type_error(m.text({kind: body}))
                if name in _STRING_OPERAND and not _string_or_input(params[0]):
                    problem = f"`{name}` expects string argument"
                if problem:
                    refuse(m, line, "ill_typed_call", f"{name}: {problem}")
                    continue
            if name == "count" and len(params) == 1 and _string_or_input(params[0]):
                if "count" not in replaced:
                    f_start, f_end, _ = _span(body["fcn"])
                    edits.append((f_start, f_end, "__exact.count"))
                elif "String" not in params[0] and "RawString" not in params[0] or any(
                    ord(c) > 0xFFFF for c in m.text(params[0])
                ):
                    refuse(m, line, "with_count_string", m.text({kind: body}))
            statement = isinstance(parent, dict) and "expr" in parent and parent["expr"].get(
                "Call"
            ) is body
            # regorus supports the relation form of its native builtins (and only its
            # assignment form of walk is broken); our Python extensions need the rewrite.
            if len(params) == arity + 1 and statement and name in builtins.EXTENSIONS:
                start, end = int(body["span"]["start"]), int(body["span"]["end"])
                head = m.raw[_span(body["fcn"])[0]:m.outer(params[-2])[1]].decode() + ")" \
                    if arity else m.text(body["fcn"]) + "()"
                edits.append((start, end, f"{m.source_of(params[-1])} = {head}"))
        src = m.raw
        for start, end, text in sorted(edits, reverse=True):
            src = src[:start] + text.encode() + src[end:]
        out.sources[m.file] = src.decode()
    for f, s in sources.items():
        out.sources.setdefault(f, s)
    return out


# Every builtin OPA v1.9 exposes to policies by name (operators and internal.* aside).
OPA_BUILTINS = (
    "abs array.concat array.reverse array.slice base64.decode base64.encode base64.is_valid "
    "base64url.decode base64url.encode base64url.encode_no_pad bits.and bits.lsh bits.negate "
    "bits.or bits.rsh bits.xor ceil concat contains count crypto.hmac.equal crypto.hmac.md5 "
    "crypto.hmac.sha1 crypto.hmac.sha256 crypto.hmac.sha512 crypto.md5 "
    "crypto.parse_private_keys crypto.sha1 crypto.sha256 "
    "crypto.x509.parse_and_verify_certificates "
    "crypto.x509.parse_and_verify_certificates_with_options "
    "crypto.x509.parse_certificate_request crypto.x509.parse_certificates "
    "crypto.x509.parse_keypair crypto.x509.parse_rsa_private_key endswith floor format_int "
    "glob.match glob.quote_meta graph.reachable graph.reachable_paths graphql.is_valid "
    "graphql.parse graphql.parse_and_verify graphql.parse_query graphql.parse_schema "
    "graphql.schema_is_valid hex.decode hex.encode http.send indexof indexof_n intersection "
    "io.jwt.decode io.jwt.decode_verify io.jwt.encode_sign io.jwt.encode_sign_raw "
    "io.jwt.verify_eddsa io.jwt.verify_es256 io.jwt.verify_es384 io.jwt.verify_es512 "
    "io.jwt.verify_hs256 io.jwt.verify_hs384 io.jwt.verify_hs512 io.jwt.verify_ps256 "
    "io.jwt.verify_ps384 io.jwt.verify_ps512 io.jwt.verify_rs256 io.jwt.verify_rs384 "
    "io.jwt.verify_rs512 is_array is_boolean is_null is_number is_object is_set is_string "
    "json.filter json.is_valid json.marshal json.marshal_with_options json.match_schema "
    "json.patch json.remove json.unmarshal json.verify_schema lower max min "
    "net.cidr_contains net.cidr_contains_matches net.cidr_expand net.cidr_intersects "
    "net.cidr_is_valid net.cidr_merge net.lookup_ip_addr numbers.range numbers.range_step "
    "object.filter object.get object.keys object.remove object.subset object.union "
    "object.union_n opa.runtime print product providers.aws.sign_req rand.intn "
    "regex.find_all_string_submatch_n regex.find_n regex.globs_match regex.is_valid "
    "regex.match regex.replace regex.split regex.template_match rego.metadata.chain "
    "rego.metadata.rule rego.parse_module replace round semver.compare semver.is_valid sort "
    "split sprintf startswith strings.any_prefix_match strings.any_suffix_match "
    "strings.count strings.render_template strings.replace_n strings.reverse substring sum "
    "time.add_date time.clock time.date time.diff time.format time.now_ns "
    "time.parse_duration_ns time.parse_ns time.parse_rfc3339_ns time.weekday to_number trace "
    "trim trim_left trim_prefix trim_right trim_space trim_suffix type_name union units.parse "
    "units.parse_bytes upper urlquery.decode urlquery.decode_object urlquery.encode "
    "urlquery.encode_object uuid.parse uuid.rfc4122 walk yaml.is_valid yaml.marshal "
    "yaml.unmarshal"
).split()


def support_table() -> list[tuple[str, str, str]]:
    """(builtin, status, note) for every OPA builtin: how the embedded engine runs it."""
    rows: list[tuple[str, str, str]] = []
    for name in sorted(OPA_BUILTINS):
        if name in REFUSED_BUILTINS:
            rows.append((name, "refused", REFUSED_BUILTINS[name]))
        elif name in builtins.EXTENSIONS:
            rows.append((name, "Python", "regogate's implementation of OPA's semantics"))
        elif name == "print":
            rows.append((name, "native", "output discarded on the request path"))
        elif native_arity(name) is not None:
            rows.append((name, "native", "regorus"))
        else:
            rows.append((name, "refused", "not available on the embedded engine"))
    return rows


def render_markdown() -> str:
    """The generated section of docs/policies.md (scripts/gen_policy_docs.py)."""
    lines = [
        "Refused at bundle load and by `regogate policy check` (file and line named):",
        "",
    ]
    lines += [f"- **{key}**: {text}" for key, text in REFUSED_CONSTRUCTS.items()]
    lines += [
        "",
        "Builtins, by how the embedded engine runs them (`native`: regorus; `Python`: an",
        "extension in `pep/policy/builtins*.py` that replaces or adds the builtin; `refused`:",
        "the bundle is refused). Builtin errors are OPA's non-strict ones everywhere: the",
        "expression is undefined and evaluation goes on.",
        "",
        "| builtin | runs as | note |",
        "|---|---|---|",
    ]
    lines += [f"| `{name}` | {status} | {note} |" for name, status, note in support_table()]
    return "\n".join(lines) + "\n"
