"""``net.cidr_*`` as Go's ``net`` package computes them (OPA), and ``io.jwt.verify_*`` /
``io.jwt.decode_verify`` on PyJWT.

Go compares an IPv4 address and an IPv4-mapped IPv6 address (``::ffff:10.1.2.3``) as the
same address, and a network written as IPv4-mapped with a /96+ prefix as the IPv4 network;
regorus does not, so ``net.cidr_contains("10.0.0.0/8", "::ffff:10.1.2.3")`` was false.
Go rejects leading zeros (``010.0.0.1``) and zones (``fe80::1%eth0``), as done here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from pep.policy.builtins_text import BuiltinError, text

Net = tuple[bytes, bytes]  # (network number, mask), both 4 or 16 bytes


def _ip(s: str) -> bytes:
    """Go's net.ParseIP, To4() applied (4 bytes for IPv4 and IPv4-mapped)."""
    if "%" in s:
        raise BuiltinError(f"invalid IP address {s!r}")
    try:
        addr = ipaddress.ip_address(s)
    except ValueError as exc:
        raise BuiltinError(f"invalid IP address {s!r}") from exc
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.packed
    return addr.packed


def _cidr(s: str) -> Net:
    """Go's net.ParseCIDR then networkNumberAndMask."""
    ip_text, sep, bits_text = s.partition("/")
    if not sep or not bits_text.isdigit() or (len(bits_text) > 1 and bits_text[0] == "0"):
        raise BuiltinError(f"invalid CIDR address {s!r}")
    bits = int(bits_text)
    if "%" in ip_text:
        raise BuiltinError(f"invalid CIDR address {s!r}")
    try:
        addr = ipaddress.ip_address(ip_text)
    except ValueError as exc:
        raise BuiltinError(f"invalid CIDR address {s!r}") from exc
    width = 32 if addr.version == 4 else 128
    if bits > width:
        raise BuiltinError(f"invalid CIDR address {s!r}")
    mask = ((1 << width) - 1) ^ ((1 << (width - bits)) - 1)
    mask_bytes = mask.to_bytes(width // 8, "big")
    ip = addr.packed
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        ip = addr.ipv4_mapped.packed
        if mask_bytes[:12] != b"\xff" * 12:
            # Go: a v4-mapped network whose mask does not cover the v6 prefix matches nothing
            # in v4 form; keep the 16-byte form.
            ip = addr.packed
        else:
            mask_bytes = mask_bytes[12:]
    network = bytes(a & b for a, b in zip(ip, mask_bytes, strict=True))
    return network, mask_bytes


def _contains(net: Net, ip: bytes) -> bool:
    network, mask = net
    if len(ip) != len(network):
        return False
    return all((a & m) == n for a, m, n in zip(ip, mask, network, strict=True))


def _last(net: Net) -> bytes:
    network, mask = net
    return bytes(n | (~m & 0xFF) for n, m in zip(network, mask, strict=True))


def cidr_contains(cidr: Any, addr: Any) -> bool:
    net = _cidr(text(cidr, "net.cidr_contains"))
    other = text(addr, "net.cidr_contains")
    if "/" in other:
        inner = _cidr(other)
        return _contains(net, inner[0]) and _contains(net, _last(inner))
    return _contains(net, _ip(other))


def cidr_intersects(a: Any, b: Any) -> bool:
    x, y = _cidr(text(a, "net.cidr_intersects")), _cidr(text(b, "net.cidr_intersects"))
    if len(x[0]) != len(y[0]):
        return False
    return _contains(x, y[0]) or _contains(y, x[0])


def cidr_is_valid(s: Any) -> bool:
    if not isinstance(s, str):
        return False
    try:
        _cidr(s)
    except BuiltinError:
        return False
    return True


def _terms(value: Any, fn: str) -> list[tuple[Any, str]]:
    """(key, cidr-or-ip) pairs of a string, array, set or object argument."""
    if isinstance(value, str):
        return [(value, value)]
    if isinstance(value, list):
        items = list(enumerate(value))
    elif isinstance(value, (set, frozenset)):
        items = [(v, v) for v in value]
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        raise BuiltinError(f"{fn}: operand must be a string, array, set or object")
    out: list[tuple[Any, str]] = []
    for key, item in items:
        if isinstance(item, list) and item and isinstance(item[0], str):
            item = item[0]  # OPA accepts [cidr, ...] tuples
        out.append((key, text(item, fn)))
    return out


def cidr_contains_matches(cidrs: Any, addrs: Any) -> set[tuple[Any, Any]] | list[list[Any]]:
    fn = "net.cidr_contains_matches"
    found: list[list[Any]] = []
    for ck, c in _terms(cidrs, fn):
        for ak, a in _terms(addrs, fn):
            if cidr_contains(c, a):
                found.append([ck, ak])
    # A set in OPA: deduplicate, order-free.
    unique: list[list[Any]] = []
    for pair in found:
        if pair not in unique:
            unique.append(pair)
    return {tuple(p) for p in unique} if all(
        isinstance(x, (str, int, float, bool)) for p in unique for x in p
    ) else unique


_CLASS_BITS = ((128, 8), (192, 16), (224, 24))  # Go's IP.DefaultMask (classful)


def cidr_merge(addrs: Any) -> set[str]:
    fn = "net.cidr_merge"
    if not isinstance(addrs, (list, set, frozenset)):
        raise BuiltinError(f"{fn}: operand must be an array or set")
    nets: list[Any] = []
    written: dict[Any, str] = {}  # a bare address keeps its text, as OPA prints it
    for item in addrs:
        s = text(item, fn)
        try:
            if "/" in s:
                net = ipaddress.ip_network(s, strict=False)
            else:
                addr = ipaddress.ip_address(s)
                if addr.version != 4:
                    raise BuiltinError(f"{fn}: {s!r} has no default mask")
                bits = next((b for top, b in _CLASS_BITS if addr.packed[0] < top), None)
                if bits is None:
                    raise BuiltinError(f"{fn}: {s!r} has no default mask")
                net = ipaddress.ip_network(f"{addr}/{bits}", strict=False)
                written[net] = f"{addr}/{bits}"
        except ValueError as exc:
            raise BuiltinError(f"{fn}: invalid address {s!r}") from exc
        nets.append(net)
    v4 = [n for n in nets if n.version == 4]
    v6 = [n for n in nets if n.version == 6]
    merged = [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]
    return {written.get(n, str(n)) for n in merged}


def cidr_expand(cidr: Any) -> set[str]:
    s = text(cidr, "net.cidr_expand")
    try:
        net = ipaddress.ip_network(s, strict=False)
    except ValueError as exc:
        raise BuiltinError(f"net.cidr_expand: invalid CIDR {s!r}") from exc
    if net.num_addresses > 1 << 16:
        raise BuiltinError("net.cidr_expand: network too large")
    return {str(a) for a in net}


NET_EXTENSIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "net.cidr_contains": (2, cidr_contains),
    "net.cidr_intersects": (2, cidr_intersects),
    "net.cidr_is_valid": (1, cidr_is_valid),
    "net.cidr_contains_matches": (2, cidr_contains_matches),
    "net.cidr_merge": (1, cidr_merge),
    "net.cidr_expand": (1, cidr_expand),
}
