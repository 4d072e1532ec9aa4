"""The `wechat: api` terminal: one WeChat server API, called with the gateway's access_token.

The access_token is the mini program's, not the caller's, so whatever the client puts in
the body reaches WeChat with the mini program's authority: a client free to set
`openid`/`touser` could check content as, or send subscribe messages to, anyone. The
route's `body` and `query` templates let the gateway set those fields from the verified
token (`{claim.openid}`) or the config (`{app.appid}`); template keys always win over the
client's. Filled values are JSON strings (json.dumps quotes them), so a claim can never
inject JSON. The semantic checks (wxgated/compiler/semantic.py) require a `jwt_auth`
filter on these routes unless the operator says `public: true`.

`path` is fixed per route, so there is no client-chosen WeChat path to allow-list.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from wxgated.aggregate.template import MissingValue, Template, compile_template, render_text
from wxgated.config.errors import SemanticError
from wxgated.http.message import Handler, HTTPError, Request, Response
from wxgated.wechat.auth import unauthorized
from wxgated.wechat.client import WeChatClient, WeChatError
from wxgated.wechat.token_keeper import TOKEN_ERRCODES, TokenKeeper

API_LIMIT = 1024 * 1024
APP_APPID = "{app.appid}"
SOURCES = ("claim", "param", "query", "header")  # no `resp`: there are no earlier steps
_JSON = "application/json"


@dataclass(frozen=True)
class ApiTemplates:
    """The compiled `body` (a JSON value whose strings are Templates) and `query`."""

    body: dict[str, Any] | None
    query: tuple[tuple[str, Template], ...]


def compile_templates(opts: dict[str, Any], appid: str) -> ApiTemplates:
    """Compile the route's `body`/`query` templates; SemanticError names the bad value."""
    body = opts.get("body")
    query = opts.get("query") or {}
    if "access_token" in query:
        raise SemanticError("query: access_token is the gateway's own", ("query", "access_token"))
    return ApiTemplates(
        body=None if body is None else _compile_json(body, appid, ("body",)),
        query=tuple((k, _compile_str(v, appid, ("query", k))) for k, v in query.items()))


def _compile_json(value: Any, appid: str, path: tuple[Any, ...]) -> Any:
    if isinstance(value, str):
        return _compile_str(value, appid, path)
    if isinstance(value, dict):
        return {k: _compile_json(v, appid, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile_json(v, appid, (*path, i)) for i, v in enumerate(value)]
    return value


def _compile_str(text: str, appid: str, path: tuple[Any, ...]) -> Template:
    """`{app.appid}` is a constant, so it becomes literal text; the rest are request
    placeholders, filled verbatim (the JSON encoder or the query encoder escapes)."""
    parts: list[Any] = []
    for n, piece in enumerate(text.split(APP_APPID)):
        if n:
            parts.append(appid)
        try:
            parts.extend(compile_template(piece, encode=False).parts)
        except ValueError as exc:
            raise SemanticError(f"{exc} (or {APP_APPID})", path) from None
    tpl = Template(tuple(parts), encode=False)
    for p in tpl.placeholders:
        if p.source not in SOURCES:
            raise SemanticError(f"placeholder {{{p.text}}}: use claim, param, query, header "
                                f"or {APP_APPID}", path)
    return tpl


def _fill(value: Any, req: Request) -> Any:
    if isinstance(value, Template):
        text = render_text(value, req, {})
        # a header's raw bytes may not be UTF-8: never let them break the JSON encoder
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: _fill(v, req) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, req) for v in value]
    return value


def _client_object(raw: bytes) -> dict[str, Any]:
    """The client's JSON object, merged under a body template ({} when there is none)."""
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise HTTPError(400, "body must be a JSON object")
    return doc


def _missing(exc: MissingValue) -> HTTPError:
    return unauthorized(str(exc), "claim_missing") if exc.status == 401 \
        else HTTPError(exc.status, str(exc))


async def outgoing(req: Request, tpl: ApiTemplates) -> tuple[list[tuple[str, str]], bytes,
                                                              str | None]:
    """The query, body and content type sent to WeChat: the client's, with the
    template's fields laid over them and the client's access_token dropped."""
    try:
        fixed = [(k, _fill(t, req)) for k, t in tpl.query]
        over = None if tpl.body is None else _fill(tpl.body, req)
    except MissingValue as exc:
        raise _missing(exc) from None
    names = {k for k, _ in fixed} | {"access_token"}
    query = [(k, v) for k, v in parse_qsl(req.query, keep_blank_values=True) if k not in names]
    body = await req.body.read(API_LIMIT)
    ctype = req.header_str(b"content-type") or None
    if over is not None:
        doc = {**_client_object(body), **over}
        body, ctype = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode(), _JSON
    return [*query, *fixed], body, ctype


def build_api_handler(client: WeChatClient, tokens: TokenKeeper, path: str,
                      tpl: ApiTemplates, error: Callable[[WeChatError], HTTPError]) -> Handler:
    """The request handler; WeChat's answer is passed through (it carries no token).
    `error` is the terminal's errcode → status map (wxgated/wechat/endpoints.py)."""
    api = path.rstrip("/").rsplit("/", 1)[-1] or "api"

    async def call(req: Request) -> Response:
        query, body, ctype = await outgoing(req, tpl)

        async def once(token: str) -> tuple[int, str, bytes]:
            status, rtype, data, code = await client.raw(
                api, req.method, path, [*query, ("access_token", token)], body, ctype)
            if code in TOKEN_ERRCODES:
                raise WeChatError(code, "access_token rejected", api)
            return status, rtype, data

        try:
            status, rtype, data = await tokens.call_with_token(once)
        except WeChatError as err:
            raise error(err) from None
        return Response(status, [(b"content-type", (rtype or "text/plain").encode("latin-1"))],
                        data)

    return call
