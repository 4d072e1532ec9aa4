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

Chains are onions built once at compile time: `wrap(next)` returns the handler that
runs this filter around `next`. Filters that only touch the request may override
`wrap` to return a cheaper closure. A filter that decides from the request alone, without
awaiting, also offers `sync_check`, which lets its routes take the proxy's callback path.
"""

from __future__ import annotations

from typing import Any, ClassVar

from wxgated.http.message import Handler, Request, Response, SyncCheck

FILTERS: dict[str, type[Filter]] = {}


class Filter:
    name: ClassVar[str]
    schema: ClassVar[dict[str, Any]]
    config_class: ClassVar[type[Any]]  # the options as a frozen dataclass (see above)
    # methods the filter answers itself, added to its route's `match.methods` (cors: OPTIONS)
    own_methods: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, ctx: Any) -> None:
        """`ctx` is the CompileContext (wxgated.config.context): route name, upstreams,
        the shared-state backend, the long-lived registry, the whole config."""
        self.config = config

    def wrap(self, next: Handler) -> Handler:
        handle = self.handle

        async def run(req: Request) -> Response:
            return await handle(req, next)

        return run

    async def handle(self, req: Request, next: Handler) -> Response:
        return await next(req)

    def sync_check(self) -> SyncCheck | None:
        """This filter as a synchronous check for the fast path, or None when it needs
        to await or to see the response (then its routes take the coroutine path)."""
        return None


class RequestFilter(Filter):
    """A filter that only edits the request, synchronously: `apply` serves both paths."""

    def apply(self, req: Request) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def wrap(self, next: Handler) -> Handler:
        apply = self.apply

        async def run(req: Request) -> Response:
            apply(req)
            return await next(req)

        return run

    def sync_check(self) -> SyncCheck | None:
        return self.apply


def register(cls: type[Filter]) -> type[Filter]:
    if cls.name in FILTERS:
        raise RuntimeError(f"filter {cls.name!r} registered twice")
    FILTERS[cls.name] = cls
    return cls
