"""Start the bench's services as pinned children: nginx (upstream and proxy),
redis-server and wxgated. Nothing touches /etc or a system-wide nginx: every file
(config, pid, logs, temp dirs) lives in the run's temporary directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from benchlib.procs import free_port, spawn, tree_pids, wait_http, wait_port

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent
PACKAGES = {"nginx": "nginx-light", "wrk": "wrk", "redis-server": "redis-server"}


def missing_tools(names: tuple[str, ...] = ("nginx", "wrk", "redis-server")) -> list[str]:
    return [n for n in names if shutil.which(n) is None]


def install_hint(missing: list[str]) -> str:
    return "apt-get install -y " + " ".join(PACKAGES[n] for n in missing)


def install(missing: list[str]) -> None:
    """apt-get the Debian packages (root only; run.py --install)."""
    subprocess.run(["apt-get", "update"], check=True)
    names = [PACKAGES[n] for n in missing]
    if subprocess.run(["apt-get", "install", "-y", *names]).returncode != 0 and \
            "nginx-light" in names:
        # newer Debian releases dropped nginx-light; plain nginx has what the bench needs
        names = ["nginx" if n == "nginx-light" else n for n in names]
        subprocess.run(["apt-get", "install", "-y", *names], check=True)


def python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    admin_port: int = 0
    stdout: Path | None = None

    def pids(self) -> list[int]:
        return tree_pids(self.proc.pid)


def start_nginx(name: str, template: str, tmp: Path, cpus: str | None,
                fields: dict[str, int]) -> Service:
    """nginx -p TMP -c TMP/NAME.conf from a template in bench/nginx; `fields` fill {{X}}."""
    text = (BENCH / "nginx" / template).read_text().replace("{{TMP}}", str(tmp))
    for key, value in fields.items():
        text = text.replace("{{" + key + "}}", str(value))
    conf = tmp / f"{name}.conf"
    conf.write_text(text)
    log = tmp / f"{name}.log"
    proc = spawn(["nginx", "-p", str(tmp), "-c", str(conf)], cpus, log)
    port = fields["PROXY_PORT" if "PROXY_PORT" in fields else "UPSTREAM_PORT"]
    wait_port(port, proc)
    return Service(name, proc, port, log)


def start_redis(tmp: Path, cpus: str | None) -> Service:
    port = free_port()
    log = tmp / "redis.log"
    proc = spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", str(tmp), "--daemonize", "no"], cpus, log)
    wait_port(port, proc)
    return Service("redis", proc, port, log)


def start_floor(tmp: Path, cpus: str | None, upstream_port: int) -> Service:
    """bench/floor.py: the featureless callback proxy, CPython's own floor."""
    port = free_port()
    log = tmp / "floor.log"
    proc = spawn([python(), str(BENCH / "floor.py"), str(port), str(upstream_port)], cpus, log)
    wait_port(port, proc)
    return Service("floor", proc, port, log)


def start_gateway(name: str, config: str, tmp: Path, cpus: str | None,
                  env: dict[str, str | int], tree: Path | None = None,
                  config_text: str | None = None, ready_timeout: float = 60.0) -> Service:
    """`wxgated run -c bench/CONFIG` with ports (and workers) given through BENCH_* vars;
    stdout (the access log) goes to TMP/NAME-access.log, stderr to TMP/NAME.log. With
    `tree` (another checkout), that tree's wxgated and bench config run instead;
    `config_text` replaces the config's contents (for keys that take no ${VAR})."""
    port, admin = free_port(), free_port()
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "BENCH_PORT": str(port),
                "BENCH_ADMIN_PORT": str(admin), **{k: str(v) for k, v in env.items()}}
    bench = BENCH
    if tree is not None:  # ahead of the venv's editable install on sys.path
        full_env["PYTHONPATH"] = str(tree)
        bench = tree / "bench"
    log, access = tmp / f"{name}.log", tmp / f"{name}-access.log"
    # A private copy: the gateway watches its config's directory for reloads, and the
    # bench must not reload (or fingerprint files) because someone edits bench/.
    conf_dir = tmp / f"conf-{name}"
    conf_dir.mkdir(exist_ok=True)
    shutil.copy(bench / config, conf_dir / config)
    if config_text is not None:
        (conf_dir / config).write_text(config_text)
    proc = spawn([python(), "-m", "wxgated", "run", "-c", str(conf_dir / config)], cpus, log,
                 env=full_env, stdout=access, cwd=tmp)
    try:
        wait_http(f"http://127.0.0.1:{admin}/readyz", proc, ready_timeout)
        wait_port(port, proc)
    except (RuntimeError, TimeoutError) as exc:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{name}: {exc}\n{tail}") from None
    return Service(name, proc, port, log, admin, access)


def checkout(ref: str, tmp: Path) -> Path:
    """The tree of git `ref` (a commit, tag or branch of this repo) in TMP, for A/B runs,
    built as this tree is: its hot modules compiled in place when it has a compiled
    build and this tree runs one, so the A/B compares like with like."""
    tree = tmp / f"tree-{ref.replace('/', '_')}"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    if (tree / "wxgated" / "build.py").exists() and _compiled_here():
        subprocess.run([python(), "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                       check=True, capture_output=True)
    return tree


def _compiled_here() -> bool:
    out = subprocess.run([python(), "-c", "import wxgated.build as b; print(b.describe())"],
                         cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() == "compiled"


def login(base: str, code: str = "bench-code") -> str:
    """A real token from the gateway's own WeChat login (the upstream plays WeChat)."""
    req = urllib.request.Request(base + "/auth/wx/login", method="POST",
                                 data=json.dumps({"code": code}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        doc = json.loads(r.read())
    return str(doc["data"]["token"])


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
