"""The OpenAI Responses API endpoints (``/v1/responses`` and its stored responses) and the
other SDK calls that ride on the same pipeline: legacy ``/v1/completions`` and Anthropic's
``/v1/messages/count_tokens``.

``POST /v1/responses`` runs the model-calling path of ``pep.pipeline`` unchanged: the
Responses request (plus the conversation of ``previous_response_id``) becomes a canonical
chat request with ``request.api = "responses"``, so identity, content inspection of every
input item and instruction, the policy, obligations (cap -> ``max_output_tokens``, system
prompt before ``instructions``, redaction of input items, reroute), the output decision,
usage and the audit intent/completion are exactly those of a chat completion.

Stored responses belong to the verified user (issuer + sub) who created them: fetching,
deleting or continuing someone else's id is a 404, the same answer as for an id that never
existed. What is kept follows the decision's ``audit_content`` obligation: with ``none``
only the response's metadata is kept, and it cannot be continued.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from pep import appkeys
from pep.access import authorize
from pep.auditing import content_mode, event
from pep.conversations import ConversationUnavailable, owner_key
from pep.errors import BadRequest, NotFound, Unavailable
from pep.exchange import Exchange
from pep.inbound.anthropic import to_canonical as anthropic_to_canonical
from pep.inbound.responses import (
    ResponseContext,
    ResponsesDialect,
    assistant_message,
    items_of_messages,
    to_canonical,
)
from pep.pipeline import admit, forward, forward_normalized
from pep.principal import Principal
from pep.request import normalize_chat
from pep.steps import audit, authenticate, exchange_for
from pep.validation import read_json, reject_forbidden

log = logging.getLogger("regogate.responses")


def _same(text: str) -> str:
    return text


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"No response found with id '{response_id}'.", code="response_not_found",
                    param="response_id")


def _store_unavailable(exc: Exception) -> Unavailable:
    return Unavailable("the conversation store is unavailable", code="conversation_unavailable")


async def _load(request: web.Request, response_id: str, owner: str) -> dict[str, Any]:
    try:
        doc = await request.app[appkeys.CONVERSATIONS].get(response_id, owner)
    except ConversationUnavailable as exc:
        raise _store_unavailable(exc) from exc
    if doc is None:
        raise _not_found(response_id)
    return doc


async def create_response(request: web.Request) -> web.StreamResponse:
    x = exchange_for(request)
    principal = await authenticate(request, x)
    # The validation step (pep.validation), split around loading the stored conversation.
    body = await read_json(request, x)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    reject_forbidden(body)
    owner = owner_key(principal.issuer, principal.sub)
    prev_id = body.get("previous_response_id")
    history: list[dict[str, Any]] = []
    previous = None
    if isinstance(prev_id, str) and prev_id:
        doc = await _load(request, prev_id, owner)
        if not doc.get("content_kept"):
            raise BadRequest(f"response '{prev_id}' cannot be continued: by policy its "
                             "conversation was not kept", param="previous_response_id",
                             code="previous_response_not_kept")
        history = doc["history"]
        previous = {"id": prev_id, "owner": principal.sub,
                    "chain_length": int(doc.get("chain_length", 1))}
    ctx = ResponseContext(body)
    dialect = ResponsesDialect(ctx)
    canonical = to_canonical(body, history)
    req = normalize_chat(canonical, normalise_text=_same, api="responses")
    req.previous_response = previous
    x.req = req
    request.app[appkeys.CATALOG].check(req.model, embeddings=False)
    x.response_id = ctx.response_id
    keep = body.get("store", True) is not False
    start = 1 if body.get("instructions") is not None else 0
    if keep:
        dialect.on_complete = lambda: _save(request, x, dialect, owner, start, len(history),
                                            previous)
    response = await forward_normalized(request, dialect, "responses", principal, req)
    if keep and not req.stream:
        await _save(request, x, dialect, owner, start, len(history), previous)
    return response


async def _save(request: web.Request, x: Exchange, dialect: ResponsesDialect, owner: str,
                start: int, history_len: int, previous: dict[str, Any] | None) -> None:
    """Keep the finished response under its owner. The answer is already paid for and is
    delivered even when this fails (logged and counted: the id then resolves to nothing)."""
    final = dialect.rendered if dialect.encoder is None else dialect.encoder.final
    if final is None or final.get("status") == "failed":
        return
    sent = (x.forwarded or {}).get("messages") or []
    decision = x.decision
    if decision is not None and decision.obligations.system_prompt:
        start += 1  # the policy's system prompt is re-applied each turn, never stored
    conversation = sent[start:]
    kept = content_mode(x) != "none"
    doc = {
        "response": final if kept else {**final, "output": []},
        "history": [*conversation, assistant_message(final["output"])] if kept else [],
        "input_items": items_of_messages(conversation[history_len:]) if kept else [],
        "content_kept": kept,
        "chain_length": (previous or {}).get("chain_length", 0) + 1,
        "request_id": x.request_id,
    }
    try:
        await request.app[appkeys.CONVERSATIONS].put(dialect.ctx.response_id, owner, doc)
    except ConversationUnavailable as exc:
        request.app[appkeys.METRICS].inc("conversation_store_failures_total")
        log.error("could not store response %s of %s: %s", dialect.ctx.response_id,
                  x.request_id, exc)


async def _read_access(request: web.Request, api: str) -> tuple[Principal, str, Exchange]:
    response_id = request.match_info["response_id"]
    principal = await authorize(request, api=api, params={"response_id": response_id})
    x = exchange_for(request)
    x.response_id = response_id
    return principal, response_id, x


async def _done(request: web.Request, x: Exchange, status: int, doc: Any) -> web.Response:
    await audit(request, event("request.completion", x, status=status), required=True)
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


async def _owned(request: web.Request, api: str) -> tuple[dict[str, Any], Exchange, str]:
    principal, response_id, x = await _read_access(request, api)
    try:
        doc = await _load(request, response_id, owner_key(principal.issuer, principal.sub))
    except NotFound:
        await audit(request, event("request.completion", x, status=404), required=False)
        raise
    return doc, x, response_id


async def get_response(request: web.Request) -> web.Response:
    doc, x, _ = await _owned(request, "responses.read")
    return await _done(request, x, 200, doc["response"])


async def list_input_items(request: web.Request) -> web.Response:
    doc, x, _ = await _owned(request, "responses.read")
    items: list[dict[str, Any]] = list(doc.get("input_items") or [])
    order = request.query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc", param="order")
    if order == "desc":
        items.reverse()
    after = request.query.get("after")
    if after:
        ids = [it.get("id") for it in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError as exc:
        raise BadRequest("limit must be an integer", param="limit") from exc
    if not 1 <= limit <= 100:
        raise BadRequest("limit must be between 1 and 100", param="limit")
    page = items[:limit]
    return await _done(request, x, 200, {
        "object": "list", "data": page, "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit})


async def delete_response(request: web.Request) -> web.Response:
    principal, response_id, x = await _read_access(request, "responses.delete")
    try:
        deleted = await request.app[appkeys.CONVERSATIONS].delete(
            response_id, owner_key(principal.issuer, principal.sub))
    except ConversationUnavailable as exc:
        raise _store_unavailable(exc) from exc
    if not deleted:
        await audit(request, event("request.completion", x, status=404), required=False)
        raise _not_found(response_id)
    return await _done(request, x, 200, {"id": response_id, "object": "response",
                                         "deleted": True})


async def completions(request: web.Request) -> web.StreamResponse:
    return await forward(request, request.app[appkeys.DIALECTS]["completions"], "completions")


async def count_tokens(request: web.Request) -> web.Response:
    """Anthropic's token counting, answered by the gateway: the same ~4 characters per token
    estimate its quotas use, after the same authentication, inspection and policy decision as
    a message (``request.api = "messages.count_tokens"``); nothing is forwarded, one
    completion record is audited."""
    x = exchange_for(request)
    principal = await authenticate(request, x)
    body = await read_json(request, x)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    reject_forbidden(body)
    canonical = anthropic_to_canonical({**body, "max_tokens": 1} if "max_tokens" not in body
                                       else body)
    req = normalize_chat(canonical, normalise_text=_same, inbound_format="anthropic",
                         api="messages.count_tokens")
    req.max_tokens = None
    x.req = req
    request.app[appkeys.CATALOG].check(req.model, embeddings=False)
    await admit(request, x, req, principal)
    return await _done(request, x, 200, {"input_tokens": req.estimated_tokens})


def setup_responses_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/responses", create_response)
    r.add_get("/v1/responses/{response_id}", get_response)
    r.add_delete("/v1/responses/{response_id}", delete_response)
    r.add_get("/v1/responses/{response_id}/input_items", list_input_items)
    r.add_post("/v1/completions", completions)
    r.add_post("/v1/messages/count_tokens", count_tokens)
