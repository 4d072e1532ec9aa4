"""`--config-source` URLs: what is accepted, and that a bad one is refused with a reason
before anything starts (credentials in the URL above all)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wxgated.process.nacosref import SourceURLError, parse_source

ENV = {"WXGATED_NACOS_USERNAME": "gw", "WXGATED_NACOS_PASSWORD": "pw"}


def test_a_full_url() -> None:
    ref = parse_source("nacos://nacos.internal:8849?dataId=gw.yaml&group=G1&namespace=ns-1",
                       ENV)
    assert (ref.server, ref.data_id, ref.group, ref.namespace) == \
        ("http://nacos.internal:8849", "gw.yaml", "G1", "ns-1")
    assert (ref.username, ref.password) == ("gw", "pw")
    assert ref.label == "nacos://nacos.internal:8849/gw.yaml?group=G1&namespace=ns-1"
    assert ref.default_cache({"STATE_DIRECTORY": "/var/lib/wxgated"}) == \
        "/var/lib/wxgated/nacos-config/ns-1/G1/gw.yaml"


def test_defaults() -> None:
    ref = parse_source("nacos+https://10.0.0.5?dataId=gw.yaml", {})
    assert (ref.server, ref.group, ref.namespace, ref.username) == \
        ("https://10.0.0.5:8848", "DEFAULT_GROUP", "", None)
    assert ref.label == "nacos+https://10.0.0.5:8848/gw.yaml?group=DEFAULT_GROUP"
    assert ref.default_cache({"STATE_DIRECTORY": "/s"}) == \
        "/s/nacos-config/public/DEFAULT_GROUP/gw.yaml"


@pytest.mark.parametrize(("url", "env", "says"), [
    ("nacos://gw:secretpw@h:8848?dataId=a", {}, "no credentials in the URL"),
    ("http://h:8848?dataId=a", {}, "nacos://HOST:PORT"),
    ("nacos://h:8848", {}, "dataId must be"),
    ("nacos://h:8848?dataId=a&grup=b", {}, "unknown parameter 'grup'"),
    ("nacos://h:8848/a.yaml", {}, "not a path"),
    ("nacos://h:99999?dataId=a", {}, "port"),
    ("nacos://h?dataId=a%20b", {}, "dataId must be"),
    ("nacos://h?dataId=a", {"WXGATED_NACOS_USERNAME": "gw"}, "set both"),
])
def test_refused(url: str, env: dict[str, str], says: str) -> None:
    with pytest.raises(SourceURLError, match=says) as exc:
        parse_source(url, env)
    assert "secretpw" not in str(exc.value)


def test_run_refuses_a_bad_url_before_starting() -> None:
    out = subprocess.run([sys.executable, "-m", "wxgated", "run", "--config-source",
                          "nacos://gw:secretpw@127.0.0.1:1?dataId=a"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "no credentials in the URL" in out.stderr and "secretpw" not in out.stderr
