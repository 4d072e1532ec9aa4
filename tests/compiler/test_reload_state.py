"""A reload that fails to compile leaves the serving upstream state untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from wxgated.compiler.snapshot import load_snapshot
from wxgated.config.errors import ConfigError
from wxgated.registry import Registry


def config(min_requests: int, bad_route: bool = False) -> dict:
    routes = [{"name": "api", "match": {"path": "/api"}, "upstream": "svc"}]
    if bad_route:
        routes.append({"name": "bad", "match": {"path": "/bad"},
                       "filters": [{"rewrite": {"regex": "(", "to": "/x"}}], "upstream": "svc"})
    return {"version": 1, "upstreams": {"svc": {
        "targets": [{"url": "http://127.0.0.1:9"}],
        "circuit_breaker": {"min_requests": min_requests, "open_for": "1s"}}},
        "routes": routes}


async def test_failed_reload_keeps_breakers_and_health(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(config(20)))
    registry = Registry()
    live = load_snapshot(str(path), registry)
    registry.commit()
    target = live.upstreams["svc"].targets[0]
    breaker, health = target.breaker, target.health

    path.write_text(yaml.safe_dump(config(5, bad_route=True)))
    with pytest.raises(ConfigError):
        load_snapshot(str(path), registry)
    assert target.breaker is breaker and target.breaker.min_requests == 20
    assert target.health is health

    path.write_text(yaml.safe_dump(config(5)))
    new = load_snapshot(str(path), registry)
    registry.commit()
    assert new.upstreams["svc"].targets[0].breaker.min_requests == 5
    await registry.aclose_all()
