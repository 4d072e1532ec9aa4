"""Limiter algorithms and their stores: GCRA decisions kept in process or in Redis,
and in-flight counters for concurrency limits."""

from wxgated.limits.gcra import Decision, Rate, gcra
from wxgated.limits.keys import bound_key
from wxgated.limits.local import LocalStore

__all__ = ["Decision", "Rate", "gcra", "bound_key", "LocalStore"]
