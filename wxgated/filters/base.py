"""The filter interface and registry.

A filter is one module: a subclass of `Filter` with a `name` (its key in routes.yaml)
and a `schema` (the JSON Schema fragment for its options), decorated with `@register`.
The schema fragments are assembled into schema/wxgated.schema.json, so adding a filter
never means editing a central schema by hand.

Its options arrive in `__init__` as a frozen dataclass, `config_class`, built by
`wxgated.config.options.options(config_class, config, schema)`: the dataclass names and
types the options, the fragment's `default`s fill what the config leaves out, so a
default is written once, where `wxgated check` and editors read it
(tests/config/test_filter_options.py holds every registered filter to that).

A filter defines the phases it needs (wxgated.gateway.engine runs them):

- `request(req)`: None to go on, a Response to answer (the filters before it see that
  answer), raise HTTPError to refuse; `async def` when it may have to wait (the engine
  awaits only when it truly does). Headers for the answer, whatever it turns out to be,
  go through `req.add_response_headers`.
- `response(req, resp)`: edit `resp` in place or return another Response; `async def`
  when it reads the body. Called for every answer once this filter's request phase
  passed, gateway errors included (`resp.error` is set on those).
- `done(req, status)`: after the answer is written; release what `request` took.
"""

from __future__ import annotations

from typing import Any, ClassVar

FILTERS: dict[str, type[Filter]] = {}


class Filter:
    name: ClassVar[str]
    schema: ClassVar[dict[str, Any]]
    config_class: ClassVar[type[Any]]  # the options as a frozen dataclass (see above)
    # methods the filter answers itself, added to its route's `match.methods` (cors: OPTIONS)
    own_methods: ClassVar[tuple[str, ...]] = ()
    # the phases; a subclass defines the ones it needs as methods
    request: Any = None
    response: Any = None
    done: Any = None

    def __init__(self, config: Any, ctx: Any) -> None:
        """`ctx` is the CompileContext (wxgated.config.context): route name, upstreams,
        the shared-state backend, the long-lived registry, the whole config."""
        self.config = config


def register(cls: type[Filter]) -> type[Filter]:
    if cls.name in FILTERS:
        raise RuntimeError(f"filter {cls.name!r} registered twice")
    FILTERS[cls.name] = cls
    return cls
