"""Reading a request body so that it cannot hurt the event loop (GUIDE.md 3.9).

aiohttp's own decompression is switched off (``auto_decompress=False`` in ``pep.app``): it
raised a 500 on malformed input and spent unbounded CPU on a gzip body of many empty members.
Here the wire body is read under a deadline and a byte limit, then decoded with a cap on the
*decoded* size and on the number of gzip members, so every hostile body costs at most
``max_body_bytes`` of decompression work and ends in a 400/408/413/415, never a 500.

    Content-Length above the limit        -> 413 before a byte of the body is read
    wire body above the limit              -> 413 as soon as the limit is crossed
    body not complete within the deadline  -> 408 and the connection is closed
    broken framing (chunked, length)       -> 400 malformed_body (connection closed)
    more than MAX_BODY_CHUNKS chunks       -> 400 too_many_chunks (connection closed)
    unknown or stacked Content-Encoding    -> 415 unsupported_content_encoding
    corrupt / truncated compressed data    -> 400 invalid_compressed_body
    decoded size above the limit (a bomb)  -> 413 payload_too_large
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from pep.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedMedia

# A real client compresses a body as one gzip member; concatenated members are legal (RFC 1952
# 2.2) but beyond a handful they only serve to multiply per-member work.
MAX_GZIP_MEMBERS = 16
# A chunked body costs parser work per chunk, whatever its size: 200k one-byte chunks took
# ~300 ms of event-loop time. Beyond this many chunks the body is refused (a 4 MiB body in
# 256-byte chunks still passes) and the connection closed, so the rest is never parsed.
MAX_BODY_CHUNKS = 16_384
# Below this a compressed body is decoded inline: a thread hand-off costs more than the work.
INLINE_DECODE_BYTES = 64 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS


@dataclass(slots=True)
class BodySizes:
    """What the audit record of a refused request says about its body (never the bytes)."""

    declared: int | None = None  # Content-Length, if sent
    wire: int | None = None  # bytes read from the connection (None: not read)
    decoded: int | None = None  # after Content-Encoding was removed


async def read_body(
    request: web.Request, sizes: BodySizes, *, max_bytes: int, timeout_s: float
) -> bytes:
    sizes.declared = request.content_length
    if sizes.declared is not None and sizes.declared > max_bytes:
        raise PayloadTooLarge(f"request body exceeds {max_bytes} bytes")
    encoding = _encoding(request)
    raw = await _read_wire(request, sizes, max_bytes, timeout_s)
    if encoding is None:
        sizes.decoded = len(raw)
        return raw
    if len(raw) <= INLINE_DECODE_BYTES:
        body = decode(raw, encoding, max_bytes)
    else:
        body = await asyncio.to_thread(decode, raw, encoding, max_bytes)
    sizes.decoded = len(body)
    return body


def _encoding(request: web.Request) -> str | None:
    value = request.headers.get("Content-Encoding", "").strip().lower()
    if value in ("", "identity"):
        return None
    if value in ("gzip", "x-gzip", "deflate"):
        return "deflate" if value == "deflate" else "gzip"
    raise UnsupportedMedia(
        "Content-Encoding must be gzip, deflate or identity (one encoding, not a list)",
        code="unsupported_content_encoding",
    )


async def _read_wire(
    request: web.Request, sizes: BodySizes, max_bytes: int, timeout_s: float
) -> bytes:
    parts: list[bytes] = []
    received = sizes.wire = 0
    chunks = 0
    content = request.content
    # Most bodies have fully arrived with their head: no deadline to arm for those.
    deadline = contextlib.nullcontext() if content.is_eof() else asyncio.timeout(timeout_s)
    try:
        async with deadline:
            while True:
                # readchunk() ends at each HTTP chunk boundary (for a Content-Length body it
                # returns what has arrived), so the chunks can be counted as they are read.
                chunk, end_of_chunk = await content.readchunk()
                if end_of_chunk:
                    chunks += 1
                    if chunks > MAX_BODY_CHUNKS:
                        raise BadRequest(f"a chunked request body may have at most "
                                         f"{MAX_BODY_CHUNKS} chunks", code="too_many_chunks")
                if not chunk:
                    # An empty chunk boundary, unless nothing more can come: aiohttp's shared
                    # empty-body reader answers (b"", True) to every read after its first, so
                    # without the at_eof() check a second empty body on a connection would
                    # count chunks forever (and be refused as too_many_chunks).
                    if end_of_chunk and not content.at_eof():
                        continue
                    break
                received += len(chunk)
                sizes.wire = received
                if received > max_bytes:
                    raise PayloadTooLarge(f"request body exceeds {max_bytes} bytes")
                parts.append(chunk)
    except TimeoutError as exc:
        raise RequestTimeout(
            f"the request body was not received within {timeout_s:g} s",
            code="body_timeout",
        ) from exc
    except (RequestPayloadError, HttpProcessingError) as exc:
        # Framing errors (bad chunk sizes, short body); the parser's message may quote the
        # received bytes, so it is not passed on.
        raise BadRequest("the request body is malformed (broken transfer framing)",
                         code="malformed_body") from exc
    return b"".join(parts)


def decode(raw: bytes, encoding: str, max_bytes: int) -> bytes:
    """Remove one Content-Encoding, producing at most ``max_bytes`` (pure; runs on a thread
    for large bodies)."""
    if not raw:
        return raw
    if encoding == "gzip":
        wbits = _GZIP_WBITS
    else:
        # RFC 9110 8.4.1.2: "deflate" is the zlib format; some clients send raw deflate.
        wbits = _ZLIB_WBITS if raw[0] & 0x0F == 8 else _RAW_DEFLATE_WBITS
    out: list[bytes] = []
    produced = 0
    data = raw
    members = 0
    try:
        while data:
            members += 1
            if members > MAX_GZIP_MEMBERS:
                raise BadRequest(f"a compressed body may have at most {MAX_GZIP_MEMBERS} gzip "
                                 "members", code="invalid_compressed_body")
            d = zlib.decompressobj(wbits)
            # One byte more than the room left: getting it means the limit is exceeded.
            chunk = d.decompress(data, max_bytes - produced + 1)
            produced += len(chunk)
            if produced > max_bytes:
                raise PayloadTooLarge(f"the decompressed request body exceeds {max_bytes} bytes")
            if not d.eof:
                raise BadRequest("the compressed request body is truncated",
                                 code="invalid_compressed_body")
            out.append(chunk)
            data = d.unused_data
            if data and encoding != "gzip":
                raise BadRequest("unexpected data after the end of the deflate stream",
                                 code="invalid_compressed_body")
    except zlib.error as exc:
        raise BadRequest(f"the request body is not valid {encoding} data",
                         code="invalid_compressed_body") from exc
    return b"".join(out)
