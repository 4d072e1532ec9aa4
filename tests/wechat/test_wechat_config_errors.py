"""Configuration errcodes: what they mean depends on the API; logged once a minute each."""

from __future__ import annotations

import logging

import pytest

from wxgated.wechat import config_errors
from wxgated.wechat.config_errors import config_problem, report


@pytest.fixture(autouse=True)
def fresh() -> None:
    config_errors._last.clear()


def test_meaning_depends_on_the_api() -> None:
    assert "check wechat.secret" in (config_problem("jscode2session", 40125) or "")
    assert "IP whitelist" in (config_problem("getuserphonenumber", 40164) or "")
    assert "check wechat.appid" in (config_problem("token", 41002) or "")
    assert config_problem("stable_token", 40001) is not None
    assert config_problem("token", 40014) is not None
    # elsewhere 40001/40014 are a stale access_token (the keeper refreshes), 40029 a bad code
    assert config_problem("getuserphonenumber", 40001) is None
    assert config_problem("msg_sec_check", 40014) is None
    assert config_problem("jscode2session", 40029) is None


def test_one_line_per_errcode_per_minute(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "wxgated.wechat.config")
    assert report("jscode2session", 40125, now=1000.0)
    assert not report("jscode2session", 40125, now=1059.0)
    assert not report("stable_token", 40125, now=1010.0)  # same errcode, other API
    assert report("jscode2session", 40164, now=1010.0)  # another errcode has its own minute
    assert report("jscode2session", 40125, now=1061.0)
    assert not report("jscode2session", 40029, now=1070.0)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "WeChat rejected the AppSecret (40125): check wechat.secret" in lines[0]
