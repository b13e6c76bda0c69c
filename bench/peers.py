"""Other gateways for ``bench/compare.py``: installed into a cache folder, run on loopback only.

* **Portkey gateway 1.15.2** (npm ``@portkey-ai/gateway``), routed to the mock with
  ``x-portkey-provider: openai`` + ``x-portkey-custom-host``. ``@hono/node-server`` is pinned
  to 1.13.8 through npm ``overrides``: from 1.14 its lightweight ``Response`` hands out the
  upstream fetch response's *immutable* ``Headers`` for a streamed body, so Portkey 1.15.2
  answers every stream ``500 TypeError: immutable`` (its ``updateHeaders`` appends to them).
  Plain requests work either way, which is why it "worked by hand" with curl.
* **LiteLLM proxy 1.106.12** (PyPI ``litellm[proxy]``, its own virtual environment), with a
  master key and ``mock-gpt`` routed to the mock (``openai/`` provider, ``api_base``);
  ``LITELLM_LOCAL_MODEL_COST_MAP=True`` so it does not fetch its price list.

Nothing is installed into the repository: the folder is ``$REGOGATE_BENCH_CACHE`` or
``~/.cache/regogate-bench`` (reused between runs). Installing needs the package registries;
the benchmark itself then runs inside a fresh network namespace that has only loopback
(``unshare --net``, see ``isolate``), because Portkey resolves names over DNS-over-HTTPS at
start and LiteLLM phones home: neither can reach anything but the mock there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PORTKEY_VERSION = "1.15.2"
HONO_NODE_SERVER = "1.13.8"
LITELLM_VERSION = "1.106.12"
NETNS_ENV = "REGOGATE_BENCH_NETNS"
BENCH_KEY = "bench-not-a-secret"  # the mock accepts any key; nothing here is a credential


def cache_dir() -> Path:
    root = os.environ.get("REGOGATE_BENCH_CACHE") or str(Path.home() / ".cache" / "regogate-bench")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def portkey_dir() -> Path:
    return cache_dir() / f"portkey-{PORTKEY_VERSION}-hono-{HONO_NODE_SERVER}"


def install_portkey() -> Path:
    folder = portkey_dir()
    entry = folder / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if entry.exists():
        return entry
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise SystemExit("--peers portkey needs node and npm (apt-get install nodejs npm)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text(json.dumps({
        "name": "regogate-bench-portkey", "private": True,
        "dependencies": {"@portkey-ai/gateway": PORTKEY_VERSION},
        "overrides": {"@hono/node-server": HONO_NODE_SERVER},
    }))
    _say(f"installing Portkey gateway {PORTKEY_VERSION} into {folder}")
    subprocess.check_call(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts",
                           "--loglevel=error"], cwd=folder, stdout=subprocess.DEVNULL)
    return entry


def litellm_dir() -> Path:
    return cache_dir() / f"litellm-{LITELLM_VERSION}"


def install_litellm() -> Path:
    folder = litellm_dir()
    exe = folder / "bin" / "litellm"
    stamp = folder / ".installed"
    if exe.exists() and stamp.exists():
        return exe
    _say(f"installing LiteLLM proxy {LITELLM_VERSION} into {folder} (a few minutes)")
    subprocess.check_call([sys.executable, "-m", "venv", str(folder)])
    subprocess.check_call([str(folder / "bin" / "python"), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", f"litellm[proxy]=={LITELLM_VERSION}"])
    stamp.write_text(LITELLM_VERSION)
    return exe


def install(peers: list[str]) -> None:
    for name in peers:
        {"portkey": install_portkey, "litellm": install_litellm}[name]()


def isolate(argv: list[str]) -> None:
    """Re-run this benchmark inside a new network namespace with only loopback up. Returns
    only when already inside one."""
    if os.environ.get(NETNS_ENV) == "1":
        subprocess.check_call(["ip", "link", "set", "lo", "up"])
        return
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        raise SystemExit("peers must run without a network: needs unshare (util-linux) and ip "
                         "(iproute2); or pass --no-isolate to run them on the host network")
    user_ns = [] if os.geteuid() == 0 else ["--map-root-user"]
    env = {**os.environ, NETNS_ENV: "1"}
    os.execvpe("unshare", ["unshare", "--net", *user_ns, "--", sys.executable, *argv], env)


def portkey_command(port: int) -> tuple[list[str], dict[str, str]]:
    entry = install_portkey()
    return ["node", str(entry), f"--port={port}", "--headless"], {}


def portkey_headers(mock: str) -> dict[str, str]:
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": mock + "/v1",
            "Authorization": f"Bearer {BENCH_KEY}", "Content-Type": "application/json"}


def litellm_command(port: int, work: Path, mock: str) -> tuple[list[str], dict[str, str]]:
    exe = install_litellm()
    cfg = work / "litellm.yaml"
    cfg.write_text(json.dumps({  # JSON is YAML
        "model_list": [{"model_name": "mock-gpt", "litellm_params": {
            "model": "openai/mock-gpt", "api_base": mock + "/v1", "api_key": BENCH_KEY}}],
        "general_settings": {"master_key": "sk-" + BENCH_KEY},
        "litellm_settings": {"telemetry": False},
    }))
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "LITELLM_TELEMETRY": "False", "NO_DOCS": "True"}
    return [str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1"], env


def litellm_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer sk-{BENCH_KEY}", "Content-Type": "application/json"}


def tree_cpu_seconds(pid: int, clk_tck: int) -> float:
    """utime + stime of ``pid`` and every live descendant (LiteLLM may fork a worker)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        p = int(entry.name)
        stats[p] = fields
        children.setdefault(int(fields[1]), []).append(p)
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        f: Any = stats.get(p)
        if f is not None:
            total += int(f[11]) + int(f[12])
        todo.extend(children.get(p, []))
    return total / clk_tck
