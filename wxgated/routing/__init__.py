"""Route lookup: the router (its matching contract) and the radix tree under it."""

from wxgated.routing.router import RouteConflict, Router

__all__ = ["RouteConflict", "Router"]
