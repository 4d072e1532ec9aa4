"""Response caching: Cache-Control parsing, entries, stores and request coalescing.

The `cache` filter (wxgated/filters/cache.py) is the only user; the pieces live here so
each stays small and testable on its own.
"""
