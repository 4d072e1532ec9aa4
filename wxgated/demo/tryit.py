"""The "Try it" text of `wxgated demo`: curl commands that work as printed.

Why it is generated: the commands must name the ports this run chose, and the README
shows the same text for the default ports, so one function renders both.
"""

from __future__ import annotations

TOKEN_FROM_JSON = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"data\"][\"token\"])'"


def try_it(gateway: str, admin: str) -> list[str]:
    """Shell lines (comments and commands) for a gateway and admin base URL."""
    auth = '-H "Authorization: Bearer $TOKEN"'
    return [
        "# 1. log in with a test code (in a mini program: the code from wx.login); keep the token",
        f"curl -s -X POST {gateway}/auth/wx/login -d '{{\"code\":\"demo-code-alice\"}}'; echo",
        f"TOKEN=$(curl -s -X POST {gateway}/auth/wx/login -d '{{\"code\":\"demo-code-alice\"}}'"
        f" | {TOKEN_FROM_JSON})",
        "# 2. a proxied call: the users backend answers with the openid the gateway vouched for",
        f"curl -s {auth} {gateway}/api/users/me; echo",
        "# 3. one answer merged from the users and orders backends",
        f"curl -s {auth} {gateway}/api/home; echo",
        "# 4. a burst on a route limited to 5 requests per 10 s: the last ones are 429s",
        f"for i in 1 2 3 4 5 6 7; do curl -s {auth} {gateway}/api/orders; echo; done",
        "# 5. an unknown code is a 401",
        f"curl -s -X POST {gateway}/auth/wx/login -d '{{\"code\":\"no-such-code\"}}'; echo",
        "# 6. what the gateway counted (the status page: " + admin + "/)",
        f"curl -s {admin}/metrics | grep '^wxgated_requests_total'",
    ]
