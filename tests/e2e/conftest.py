"""Fixtures the black-box identity tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.e2e_identity_harness import Client


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    """A client of the gateway that logs in through the WeChat stand-in and keeps every
    answer it saw (to check no secret is in any of them)."""
    async with aiohttp.ClientSession() as s:
        yield Client(s)
