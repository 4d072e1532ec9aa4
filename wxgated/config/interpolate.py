"""`${VAR}` and `${VAR:-default}` in string values, from the environment.

Secrets (AppSecret, JWT keys, Redis passwords) stay out of routes.yaml this way. Rules:

- `${NAME}`: the variable's value; unset is an error (never a silent empty string).
- `${NAME:-default}`: the default when NAME is unset *or empty* (as in the shell).
  The default is literal text up to the first `}`; references do not nest.
- `$${` is a literal `${`; any other `$` is kept as is.
- Only string values are interpolated, never keys, and the result stays a string even
  when it looks like a number ("${N:-2}" is "2"): the schema accepts strings where that
  makes sense (e.g. `workers`), so no value changes type behind the operator's back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_BODY = re.compile(rf"^({NAME})(?::-(.*))?$", re.DOTALL)


def interpolate(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with references replaced, and a message for each bad or missing one."""
    if "${" not in text:
        return text, []
    problems: list[str] = []
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        out.append(text[pos:m.start()])
        pos = m.end()
        token = m.group(0)
        if token == "$${":
            out.append("${")
            continue
        body = m.group(1)
        if body is None:
            problems.append('unclosed "${": write ${NAME}, or "$${" for a literal "${"')
            out.append(token)
            continue
        out.append(_resolve(body, env, problems))
    out.append(text[pos:])
    return "".join(out), problems


def _resolve(body: str, env: Mapping[str, str], problems: list[str]) -> str:
    ref = _BODY.match(body)
    if ref is None:
        problems.append(f'invalid reference "${{{body}}}": expected ${{NAME}} or '
                        "${NAME:-default} (NAME: letters, digits, _)")
        return ""
    name, default = ref.group(1), ref.group(2)
    if default is not None and "${" in default:
        problems.append(f'nested reference in the default of "${{{name}:-...}}" is not '
                        "supported")
        return ""
    value = env.get(name)
    if default is not None:
        return value if value else default
    if value is None:
        problems.append(f'environment variable "{name}" is not set (give it a default: '
                        f"${{{name}:-...}})")
        return ""
    return value

