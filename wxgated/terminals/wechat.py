"""The `wechat` terminal: the gateway's own WeChat endpoints (docs/CONFIG.md, `wechat`).

    wechat: login                 # POST {"code"} → session + JWT
    wechat: decrypt               # POST {"encryptedData", "iv"[, "rawData", "signature"]}
    wechat: phone                 # POST {"code"} → phone_info (central access_token)
    wechat: logout                # revokes the session: the token dies at once
    wechat: refresh               # a new token for a live session (extends it)
    wechat: jwks                  # the public JWT keys (for /.well-known/jwks.json)
    wechat: push                  # message-push URL verification; signed POSTs → "success"
                                  # (safe mode with wechat.push_aes_key: decrypted to JSON)
    wechat: {action: push, upstream: msg-service}   # ... or forwarded to an upstream
    wechat: {action: api, path: /wxa/msg_sec_check} # proxy to WeChat with the access_token
    wechat: {action: api, path: /wxa/msg_sec_check,  # ... the gateway sets the identity:
             body: {version: 2, openid: "{claim.openid}"}, query: {lang: zh_CN}}
    wechat: {action: login, hook: {upstream: users, path: /wx/login, claims: [user_id]}}
                                  # a user service adds claims before the token is issued
    wechat: {action: phone, upstream: users, path: /wx/phone, store_phone: true}
                                  # the verified number goes to a backend, which answers
    wechat: {action: login, app: staging}   # one of several wechat.apps

`api` routes need a `jwt_auth` filter (compiler/semantic.py) unless `public: true`.

decrypt/phone/logout/refresh need `Authorization: Bearer` (or a `jwt_auth` filter on the
route). WeChat errors answer with `code` = WeChat's errcode: 40029/40163 → 401 on login,
45011 → 429, 40226 → 403, -1 or no answer → 503, anything else → 502.
"""

from __future__ import annotations

from typing import Any

from wxgated.config.errors import SemanticError
from wxgated.observe.tracing import in_trace
from wxgated.terminals.base import TERMINALS, Terminal, register_terminal
from wxgated.wechat.apps import apps_of, by_host
from wxgated.wechat.backend_call import DURATION
from wxgated.wechat.endpoints import ACTIONS, BUILDERS, Deps
from wxgated.wechat.login_hook import SCHEMA as HOOK_SCHEMA

# key -> the actions that take it
ONLY = {
    "upstream": ("push", "phone", "decrypt"), "path": ("api", "phone", "decrypt"),
    "public": ("api",), "body": ("api",), "query": ("api",), "hook": ("login",),
    "respond": ("phone", "decrypt"), "timeout": ("phone", "decrypt"),
    "store_phone": ("phone",),
    "app": tuple(a for a in ACTIONS if a != "jwks"),
}

SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"enum": list(ACTIONS), "description": "the action"},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["action"],
            "properties": {
                "action": {"enum": list(ACTIONS)},
                "app": {"type": "string", "minLength": 1,
                        "description": "the wechat.apps name this route acts for (needed "
                                       "when several apps are configured, unless "
                                       "wechat.app_by_host picks by Host)"},
                "upstream": {"type": "string", "minLength": 1,
                             "description": "push: forward signed POSTs to this upstream; "
                                            "phone/decrypt: POST the verified result there"},
                "path": {"type": "string", "pattern": r"^/[^?#]*$",
                         "description": "api: the WeChat API path, e.g. /wxa/msg_sec_check; "
                                        "phone/decrypt: the upstream's path"},
                "hook": HOOK_SCHEMA,
                "respond": {"type": "array", "items": {"type": "string", "minLength": 1},
                            "uniqueItems": True,
                            "description": "phone/decrypt: the backend answer's fields the "
                                           "client gets (default: the whole answer)"},
                "store_phone": {"type": "boolean", "default": False,
                                "description": "phone: keep the number in the session; "
                                               "jwt_auth then sends it as X-WX-Phone"},
                "timeout": {**DURATION, "description": "phone/decrypt: the whole backend "
                                                       "call (default: the upstream's read "
                                                       "timeout)"},
                "public": {"type": "boolean", "default": False,
                           "description": "api: allow the route without a jwt_auth filter"},
                "body": {"type": "object", "additionalProperties": True,  # any JSON
                         "description": "api: JSON fields laid over the client's body; "
                                        "strings may use {claim.x}, {app.appid}"},
                "query": {"type": "object", "additionalProperties": {"type": "string"},
                          "description": "api: query parameters replacing the client's"},
            },
        },
    ],
}


def build(value: Any, route: dict[str, Any], ctx: Any) -> Any:
    opts: dict[str, Any] = {"action": value} if isinstance(value, str) else dict(value)
    action = opts["action"]
    for key, actions in ONLY.items():
        if key in opts and action not in actions:
            raise SemanticError(f"{key} is only for action: {' or '.join(actions)}", (key,))
    if action == "api" and not opts.get("path"):
        raise SemanticError("action: api needs a path (the WeChat API path)", ())
    if action in ("phone", "decrypt"):
        _check_forward(opts)
    if opts.get("upstream") is not None and action == "push":
        opts["forward"] = _upstream(opts["upstream"], route, ctx)
    return in_trace(_for_app(action, opts, route, ctx))  # its WeChat calls' spans


def _for_app(action: str, opts: dict[str, Any], route: dict[str, Any], ctx: Any) -> Any:
    """The handler acting for the route's app: the named one, the only one, or the one
    the request's Host picks (one handler per app, chosen per request)."""
    apps = apps_of(ctx.services)
    if action == "jwks" or apps is None:  # jwks: the gateway's keys, the same for every app
        return BUILDERS[action](Deps.from_services(ctx.services, action), opts, route, ctx)
    app = apps.for_route(opts.get("app"), route["name"])
    if app is not None:
        return BUILDERS[action](Deps.from_services(ctx.services, action, app), opts, route, ctx)
    handlers = {name: BUILDERS[action](Deps.from_services(ctx.services, action,
                                                          apps.by_name[name]),
                                       opts, route, ctx)
                for name in dict.fromkeys(apps.by_host.values())}
    return by_host({h: handlers[n] for h, n in apps.by_host.items()})


def _check_forward(opts: dict[str, Any]) -> None:
    """`upstream` and `path` come together; `respond`/`timeout` only with them."""
    if "upstream" in opts and "path" not in opts:
        raise SemanticError("upstream needs a path (where the verified result is POSTed)",
                            ("upstream",))
    for key in ("path", "respond", "timeout"):
        if key in opts and "upstream" not in opts:
            raise SemanticError(f"{key} needs an upstream (the backend to send the verified "
                                "result to)", (key,))


def _upstream(name: str, route: dict[str, Any], ctx: Any) -> Any:
    """Signed pushes go through the ordinary `upstream` terminal (pools, retries,
    breakers); built here so wechat/ needs nothing from handlers/."""
    if name not in ctx.upstreams:
        raise SemanticError(f"unknown upstream {name!r}", ("upstream",))
    return TERMINALS["upstream"].build(name, route, ctx)


register_terminal(Terminal("wechat", SCHEMA, build))
