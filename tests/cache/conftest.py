"""The cache filter's tests compile `cache → upstream` chains against one upstream app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.cache_harness import STATE, Harness, upstream_app


@pytest.fixture
async def env(serve: Any) -> AsyncIterator[tuple[Harness, dict[str, Any]]]:
    """A harness on a fresh upstream, and the upstream's record of the calls it got."""
    app = upstream_app()
    h = Harness(await serve(app))
    yield h, app[STATE]
    await h.aclose()
