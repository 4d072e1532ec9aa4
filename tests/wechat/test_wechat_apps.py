"""`wechat.apps` settings: what an app inherits from the `wechat:` level and what it
never does, and how a request's Host is matched against `app_by_host`."""

from __future__ import annotations

from wxgated.wechat.apps import host_of
from wxgated.wechat.settings import DEFAULT_APP, app_settings


def test_single_app_form_is_one_app_named_default() -> None:
    apps = app_settings({"appid": "wxa", "secret": "s", "session_ttl": "30m"})
    assert list(apps) == [DEFAULT_APP] == ["default"]
    assert apps["default"].appid == "wxa" and apps["default"].session_ttl == 1800


def test_apps_inherit_shared_keys_but_never_credentials() -> None:
    apps = app_settings({
        "timeout": "3s", "session_ttl": "1h", "push_token": "level-token",
        "apps": {"prod": {"appid": "wxp", "secret": "sp", "push_token": "tp"},
                 "game": {"appid": "wxg", "secret": "sg", "session_ttl": "10m",
                          "timeout": "1s"}},
    })
    prod, game = apps["prod"], apps["game"]
    assert (prod.name, prod.timeout, prod.session_ttl, prod.push_token) == ("prod", 3, 3600, "tp")
    assert (game.timeout, game.session_ttl) == (1, 600)
    assert game.push_token == ""  # not the wechat-level token: that is another app's secret


def test_host_of_drops_the_port_and_case() -> None:
    assert host_of(b"Staging.Example.COM:8443") == "staging.example.com"
    assert host_of(b"api.example.com") == "api.example.com"
    assert host_of(b"[::1]:8080") == "[::1]"
    assert host_of(None) == ""
