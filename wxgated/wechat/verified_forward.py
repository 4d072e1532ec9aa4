"""Verified data for backends: what `phone` and `decrypt` established, sent on by the
gateway itself, so a backend never has to trust a number or profile the client relays.

With `upstream:` + `path:` the action POSTs its verified result (WeChat's phone_info, or
the decrypted data) as JSON with the identity headers jwt_auth sets on proxied routes,
and the client gets the backend's status and JSON (all of it, or the `respond:` fields).
`store_phone: true` keeps the number in the session, from where jwt_auth sends it as
`X-WX-Phone` on later requests.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from wxgated.gateway.envelope import JSON_TYPE
from wxgated.http.message import HTTPError, Request, Response
from wxgated.wechat.backend_call import (
    BackendCall,
    BadAnswer,
    compile_call,
    identity_headers,
    parse_json,
)

# what X-WX-Phone carries: E.164, "+" country code and national number, digits only
_E164 = re.compile(r"\+[0-9]{1,4}[0-9]{4,16}")


@dataclass(frozen=True)
class VerifiedForward:
    call: BackendCall
    respond: tuple[str, ...] | None  # None: the backend's whole answer

    async def send(self, req: Request, result: dict[str, Any], openid: str,
                   unionid: str | None, phone: str | None) -> Response:
        """The backend's answer to `result`, as the client gets it (or HTTPError 502/503)."""
        status, body = await self.call.post(req, result,
                                            identity_headers(req, openid, unionid, phone))
        try:
            answer = parse_json(body)
        except BadAnswer as exc:
            raise self.call.bad(req.trace_id, str(exc)) from None
        if self.respond is not None:
            if not isinstance(answer, dict):
                raise self.call.bad(req.trace_id, "not a JSON object")
            picked = {k: answer[k] for k in self.respond if k in answer}
            body = json.dumps(picked, ensure_ascii=False, separators=(",", ":")).encode()
        elif not body:
            return Response(status, [], b"")
        return Response(status, [(b"content-type", JSON_TYPE)], body)


def compile_forward(opts: dict[str, Any], ctx: Any) -> VerifiedForward | None:
    """The forward of a phone/decrypt action, or None without `upstream:`."""
    if "upstream" not in opts:
        return None
    respond = opts.get("respond")
    return VerifiedForward(compile_call(opts, ctx, "backend"),
                           None if respond is None else tuple(respond))


def e164(info: dict[str, Any]) -> str:
    """The number to keep from WeChat's phone_info; 502 when WeChat's fields do not make
    one (it would become a header value on every later request)."""
    number = f"+{info.get('countryCode', '')}{info.get('purePhoneNumber', '')}"
    if _E164.fullmatch(number) is None:
        raise HTTPError(502, "WeChat answered a phone number that cannot be stored")
    return number
