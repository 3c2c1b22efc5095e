"""The parties of the gateway-overhead benchmark, each its own process: start, check, stop.

- the upstream: the emulated engine in zero mode (``--timing none``);
- the Isthmus gateway (``bench/serve_gateway.py``) on uvicorn (its server) or granian;
- the Python floor (``bench/python_floor_proxy.py``): a bare forwarding proxy on the same event
  loop, parser and upstream pool as the gateway, with none of its work;
- nginx as a plain reverse proxy: its config generated into a temporary prefix, run in the
  foreground as a child (no root config, no daemon);
- LiteLLM proxy from its own virtualenv (``bench/.venvs/litellm``, made on first use).

Invariants: every child runs in its own session (process group) and is registered with
``Children``, whose ``stop_all`` ends them all, their workers included; a configuration is
returned only after one non-streaming and one streaming chat completion went through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen import tree_cpu_seconds  # bench/ is on sys.path: the scripts' folder

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENVS = BENCH / ".venvs"
PYTHON = sys.executable

# The newest litellm[proxy] that installs from the package index reachable here: 1.106.3 and
# later pin certifi>=2026.10.19, which the index does not carry. DESIGN.md measured 1.106.2.
LITELLM_VERSION = "1.106.2"

MODEL = "zero"
API_KEY = "sk-bench"
CHAT = "/v1/chat/completions"


# -- child processes ---------------------------------------------------------------------------
class Children:
    """Every process this benchmark starts, each in its own session; all stopped on exit."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the child
        proc = subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout_s: float = 8.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout_s)
        # the group too: granian's worker, nginx's worker, litellm's children
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(2)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)

    def tail(self, name: str, chars: int = 1500) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request_body(stream: bool) -> bytes:
    return json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Say something short."}],
            "max_tokens": 8,
            "stream": stream,
        }
    ).encode()


def probe(url: str, stream: bool, timeout_s: float = 5.0) -> str | None:
    """None if one chat completion succeeds through ``url``, else what went wrong."""
    req = urllib.request.Request(
        url + CHAT,
        data=request_body(stream),
        headers={"content-type": "application/json", "authorization": f"Bearer {API_KEY}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            body = r.read()
            if r.status != 200:
                return f"HTTP {r.status}"
    except Exception as exc:  # not up yet, refused, 4xx/5xx
        return f"{type(exc).__name__}: {exc}"
    if stream and b"[DONE]" not in body:
        return "stream without [DONE]"
    if not stream and b'"choices"' not in body:
        return "no choices in the body"
    return None


def wait_ready(
    url: str, proc: subprocess.Popen[bytes], timeout_s: float, stream_too: bool = True
) -> None:
    deadline = time.monotonic() + timeout_s
    problem: str | None = "not started"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} while starting")
        problem = probe(url, stream=False, timeout_s=3.0)
        if problem is None:
            break
        time.sleep(0.25)
    else:
        raise RuntimeError(f"not ready after {timeout_s:.0f} s: {problem}")
    if stream_too and (problem := probe(url, stream=True)) is not None:
        raise RuntimeError(f"streaming request failed: {problem}")


# -- CPU of process trees (for idling and settling) -------------------------------------------
def _tree_cpu_s(pid: int) -> float:
    return sum(tree_cpu_seconds(pid).values())


def settle(pid: int, max_wait_s: float = 60.0, busy_fraction: float = 0.05) -> float:
    """Wait until the process tree is idle (after an overload it may still drain a backlog)."""
    start = time.monotonic()
    while time.monotonic() - start < max_wait_s:
        a = _tree_cpu_s(pid)
        time.sleep(0.5)
        if (_tree_cpu_s(pid) - a) / 0.5 < busy_fraction:
            break
    return time.monotonic() - start


# -- the configurations ------------------------------------------------------------------------
@dataclass
class Proxy:
    name: str
    url: str
    proc: subprocess.Popen[bytes] | None  # None: direct (no proxy process)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def start_emulator(children: Children) -> Proxy:
    port = free_port()
    cmd = [PYTHON, "-m", "isthmus.engines.emulator", "--port", str(port), "--model", MODEL]
    proc = children.start("emulator", [*cmd, "--timing", "none"])
    proxy = Proxy("direct", f"http://127.0.0.1:{port}", proc, {"port": port})
    wait_ready(proxy.url, proc, 30)
    return proxy


def start_python_floor(children: Children, upstream_port: int) -> Proxy:
    """``bench/python_floor_proxy.py``: the least a Python proxy on asyncio does per request."""
    port = free_port()
    cmd = [PYTHON, str(BENCH / "python_floor_proxy.py"), "--port", str(port)]
    cmd += ["--upstream-port", str(upstream_port)]
    proc = children.start("python-floor", cmd)
    proxy = Proxy("python-floor", f"http://127.0.0.1:{port}", proc, {})
    wait_ready(proxy.url, proc, 30)
    return proxy


def start_isthmus(
    children: Children, upstream_port: int, server: str, guard: bool = False
) -> Proxy:
    port = free_port()
    cmd = [PYTHON, str(BENCH / "serve_gateway.py"), "--port", str(port)]
    cmd += ["--upstream-port", str(upstream_port), "--server", server]
    name = "isthmus" if server == "uvicorn" else f"isthmus-{server}"
    if guard:
        cmd.append("--guard")
        name += "-guard"
    proc = children.start(name, cmd)
    proxy = Proxy(name, f"http://127.0.0.1:{port}", proc, {"server": server, "guard": guard})
    wait_ready(proxy.url, proc, 30)
    return proxy


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    upstream emulator {{
        server 127.0.0.1:{upstream};
        keepalive 512;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://emulator;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
    )


def start_nginx(children: Children, upstream_port: int, scratch: Path) -> Proxy:
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx not found: apt-get update && apt-get install -y nginx-light")
    prefix = scratch / "nginx"
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, upstream=upstream_port, port=port))
    cmd = [binary, "-e", str(prefix / "error.log"), "-p", str(prefix), "-c", str(conf)]
    proc = children.start("nginx", cmd, cwd=prefix)
    proxy = Proxy("nginx", f"http://127.0.0.1:{port}", proc, {"config": conf.read_text()})
    wait_ready(proxy.url, proc, 15)
    return proxy


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def installed_version(python: Path, dist: str) -> str | None:
    if not python.exists():
        return None
    out = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_venv(name: str, requirement: str, dist: str, version: str) -> Path:
    """``bench/.venvs/NAME`` with ``requirement`` installed (created on first use)."""
    venv = VENVS / name
    python = venv_python(venv)
    if installed_version(python, dist) == version:
        return venv
    print(f"installing {requirement} into {venv.relative_to(REPO)} (first run only)...", flush=True)
    if not python.exists():
        subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", requirement], capture_output=True, text=True
    )
    if pip.returncode != 0 or installed_version(python, dist) != version:
        raise RuntimeError(f"pip install {requirement} failed: {pip.stderr.strip()[-800:]}")
    return venv


LITELLM_CONF = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: http://127.0.0.1:{upstream}/v1
      api_key: dummy
litellm_settings:
  drop_params: true
  telemetry: false
general_settings:
  master_key: {key}
"""


def start_litellm(children: Children, upstream_port: int, scratch: Path) -> Proxy:
    venv = ensure_venv("litellm", f"litellm[proxy]=={LITELLM_VERSION}", "litellm", LITELLM_VERSION)
    home = scratch / "litellm"
    home.mkdir()
    conf = home / "config.yaml"
    conf.write_text(LITELLM_CONF.format(model=MODEL, upstream=upstream_port, key=API_KEY))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "LITELLM_"))}
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at start-up
            "LITELLM_LOG": "ERROR",
            "DISABLE_ADMIN_UI": "True",
            "NO_DOCS": "True",
            "NO_REDOC": "True",
            "HOME": str(home),
        }
    )
    cmd = [str(venv / "bin" / "litellm"), "--config", str(conf), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--num_workers", "1"]
    proc = children.start("litellm", cmd, env=env, cwd=home)
    proxy = Proxy("litellm", f"http://127.0.0.1:{port}", proc, {"config": conf.read_text()})
    wait_ready(proxy.url, proc, 120)
    return proxy
