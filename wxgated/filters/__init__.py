"""Filters: one module each. Importing this package registers all of them."""

from importlib import import_module

from wxgated.filters.base import FILTERS, Filter, register

_MODULES: list[str] = [
    "strip_prefix", "rewrite", "headers",
    "cache", "envelope", "cors", "deprecation",
    "rate_limit", "concurrency_limit", "jwt_auth",
]

for _m in _MODULES:
    import_module(f"wxgated.filters.{_m}")

__all__ = ["FILTERS", "Filter", "register"]
