"""Fixtures for the OpenAI SDK tests: real `vouch-node` processes on free loopback ports.

Needs the node binary (env VOUCH_NODE_BIN, default <repo>/target/debug/vouch-node, built by
`cargo build -p vouch-node`), Docker, and the model image vouch/inference-stub:dev (built by
`images/build.sh inference-stub`). When one is missing the tests are skipped, or fail when
the environment variable CI is `true`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_BIN = Path(os.environ.get("VOUCH_NODE_BIN", str(REPO / "target" / "debug" / "vouch-node")))
MODEL = "vouch-tiny-1"
MODEL_IMAGE_REF = "vouch/inference-stub:dev"
NETWORK = "sdk-test"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def _unavailable(why: str) -> None:
    """Skip, or fail under CI (a CI run must not silently skip its main test)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


def load_verifier():
    """proto/tools/vouch_verify.py, imported by path (pure Python: it never calls Rust)."""
    path = REPO / "proto" / "tools" / "vouch_verify.py"
    spec = importlib.util.spec_from_file_location("vouch_verify", path)
    assert spec and spec.loader, path
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def vv():
    return load_verifier()


@pytest.fixture(scope="session")
def model_image() -> str:
    """The model image id, as Docker reports it; skips (or fails under CI) without it."""
    if not NODE_BIN.is_file() or not os.access(NODE_BIN, os.X_OK):
        _unavailable(
            f"the node binary {NODE_BIN} is missing (cargo build -p vouch-node, or set VOUCH_NODE_BIN)"
        )
    if shutil.which("docker") is None:
        _unavailable("docker is not installed")
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        _unavailable(f"the docker daemon is unreachable: {info.stderr.strip()[:200]}")
    insp = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", MODEL_IMAGE_REF],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if insp.returncode != 0:
        _unavailable(f"the image {MODEL_IMAGE_REF} is missing (images/build.sh inference-stub)")
    return insp.stdout.strip()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class NodeProc:
    """One running `vouch-node run`."""

    name: str
    data_dir: Path
    port: int
    operator: str
    proc: subprocess.Popen
    log_path: Path
    api_key: str | None = None
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"

    def client(self, api_key: str | None = None, **kw):
        import openai

        key = api_key if api_key is not None else (self.api_key or "unused")
        return openai.OpenAI(
            base_url=self.openai_base, api_key=key, timeout=120.0, max_retries=0, **kw
        )

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def get_json(self, path: str, api_key: str | None = None) -> tuple[int, dict]:
        """GET with urllib (not the SDK), returning (status, parsed body)."""
        req = urllib.request.Request(self.url + path, headers={"Accept": "application/json"})
        key = api_key if api_key is not None else self.api_key
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_node(
    tmp_root: Path, name: str, extra: list[str] | None = None, api_key: str | None = None
) -> NodeProc:
    data_dir = tmp_root / name
    data_dir.mkdir(parents=True, exist_ok=True)
    gen = subprocess.run(
        [str(NODE_BIN), "keys", "generate", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gen.returncode == 0, f"keys generate failed: {gen.stderr}"
    show = subprocess.run(
        [str(NODE_BIN), "keys", "show", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert show.returncode == 0, f"keys show failed: {show.stderr}"
    operator = show.stdout.strip()
    assert len(operator) == 64, operator

    args = list(extra or [])
    if api_key:
        args += ["--api-keys", api_key]
    last_err = ""
    for _attempt in range(3):
        port = _free_port()
        log_path = data_dir / f"node-{port}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [
                str(NODE_BIN),
                "run",
                "--data-dir",
                str(data_dir),
                "--listen",
                f"127.0.0.1:{port}",
                "--network",
                NETWORK,
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        node = NodeProc(name, data_dir, port, operator, proc, log_path, api_key, args)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{node.url}/healthz", timeout=2) as r:
                    health = json.loads(r.read())
                if health.get("docker") != "ok":
                    node.stop()
                    _unavailable(f"node {name} says docker is {health.get('docker')!r}")
                return node
            except (OSError, ValueError):
                time.sleep(0.1)
        last_err = node.log_tail()
        node.stop()
        if "Address already in use" not in last_err and "address in use" not in last_err.lower():
            break
    pytest.fail(f"vouch-node {name} did not become healthy:\n{last_err}", pytrace=False)


@pytest.fixture(scope="session")
def nodes_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vouch-sdk-nodes")


def _node_fixture(nodes_root, model_image, name, extra=None, api_key=None):
    node = start_node(nodes_root, name, extra, api_key)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def warm_node(nodes_root, model_image):
    """A node with its default config: vouch-tiny-1 warm."""
    yield from _node_fixture(nodes_root, model_image, "warm", ["--warm-models", "true"])


@pytest.fixture(scope="session")
def cold_node(nodes_root, model_image):
    """A node that starts a fresh container per request (--warm-models false)."""
    yield from _node_fixture(nodes_root, model_image, "cold", ["--warm-models", "false"])


API_KEY = "sdk-test-key-1"


@pytest.fixture(scope="session")
def keyed_node(nodes_root, model_image):
    """A node that requires `Authorization: Bearer sdk-test-key-1`."""
    yield from _node_fixture(nodes_root, model_image, "keyed", None, API_KEY)
