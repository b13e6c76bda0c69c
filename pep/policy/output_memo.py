"""The output decision memoised on the projection of the input it provably depends on.

``pep.policy.projection`` proves, once per compiled bundle, which ``input`` paths the output
phase can read (for the shipped library: whether ``input.output`` is set, and
``input.output.types``). The validated decision of an output-phase evaluation is then stored
under the projection of its input onto those paths, and an input with the same projection is
answered from the memo without serialising the input or running regorus.

What is stored, and when (the rest is evaluated every time, exactly as without the memo):

* only decisions the *strict* engine produced without error: an error is never stored, and
  neither is an answer of the non-strict fallback (a builtin error that became "undefined"
  there could have reached the ``else`` the analysis proved unreachable otherwise);
* only documents that validated (``DecisionMemo.base``): an ill-typed or unknown-obligation
  document raises on every request, as before; a denial is a valid document and is stored;
* per compiled bundle (so per revision and data): a reload starts an empty memo;
* bounded, oldest entry out.

The key is exact: a value path contributes its ``orjson`` bytes (``b""`` when undefined, which
no JSON value encodes to), a bit path whether it is defined and not ``false``. Equal keys mean
equal JSON at every path the output phase can read.
"""

from __future__ import annotations

from typing import Any

import orjson

from pep.policy.contract import Decision
from pep.policy.projection import Path, Projection

MEMO_SIZE = 1024
_UNDEFINED = object()
# What a field lookup is undefined on, in JSON: anything but an object.
_NOT_OBJECTS = (str, int, float, list, tuple, type(None))


class _Unkeyable(Exception):
    """A value orjson may encode as an object that is not a dict (e.g. a dataclass)."""


def _at(doc: Any, path: Path) -> Any:
    for seg in path:
        if not isinstance(doc, dict):
            if isinstance(doc, _NOT_OBJECTS):  # bool is an int
                return _UNDEFINED
            raise _Unkeyable
        doc = doc.get(seg, _UNDEFINED)
        if doc is _UNDEFINED:
            return _UNDEFINED
    return doc


class OutputMemo:
    __slots__ = ("_bits", "_entries", "_guards", "_values", "hits", "misses", "projection",
                 "size")

    def __init__(self, projection: Projection, size: int = MEMO_SIZE) -> None:
        self.projection = projection
        self._values = projection.values
        self._bits = projection.bits
        self._guards = projection.guards
        self._entries: dict[tuple[bytes, ...], Decision] = {}
        self.size = size
        self.hits = 0
        self.misses = 0

    def key(self, policy_input: dict[str, Any]) -> tuple[bytes, ...] | None:
        """The projection of ``policy_input``; None when the memo does not apply (a guard
        is not truthy: another phase) or a value cannot be encoded."""
        parts: list[bytes] = []
        try:
            for path in self._guards:
                value = _at(policy_input, path)
                if value is _UNDEFINED or value is False:
                    return None
            for path in self._values:
                value = _at(policy_input, path)
                parts.append(b"" if value is _UNDEFINED else orjson.dumps(value))
            for path in self._bits:
                value = _at(policy_input, path)
                parts.append(b"0" if value is _UNDEFINED or value is False else b"1")
        except (_Unkeyable, TypeError, orjson.JSONEncodeError):
            return None
        return tuple(parts)

    def get(self, key: tuple[bytes, ...]) -> Decision | None:
        base = self._entries.get(key)
        if base is None:
            self.misses += 1
        else:
            self.hits += 1
        return base

    def put(self, key: tuple[bytes, ...], base: Decision) -> None:
        if len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = base

    def __len__(self) -> int:
        return len(self._entries)
