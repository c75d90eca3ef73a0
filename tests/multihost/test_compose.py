"""The devnet as containers: `scripts/compose.sh` over `docker/compose.yaml`.

From nothing, `up` builds what is missing, generates the keys in the project's volumes,
starts the verifier and three nodes on a private bridge network, seeds the stake, runs a
job on node 1 and checks that its receipt reached nodes 2 and 3 (it fails otherwise).
This test then checks what a user would: the nodes' workloads run as sibling containers
in the sandbox (no network but loopback, no Docker socket), the verifier's security
figures show three staked operators, a second `up` changes nothing, and `down` leaves no
container, network or volume of the project behind. Each run uses its own project name
and free loopback ports. Without Docker, docker-compose or the images the test is
skipped, or fails when CI is `true`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES = ["vouch/node:dev", "vouch/verifier:dev", "vouch/wc:dev", "vouch/probe:dev"]


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body: object = None):
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=60) as r:
        raw = r.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


def _project_leftovers(project: str) -> list[str]:
    label = f"label=com.docker.compose.project={project}"
    found = []
    for what in (["ps", "-aq"], ["network", "ls", "-q"], ["volume", "ls", "-q"]):
        out = subprocess.run(["docker", *what, "--filter", label], capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
        found += out.stdout.split()
    return found


def test_compose_devnet_up_job_sandbox_and_down():
    if shutil.which("docker") is None or shutil.which("docker-compose") is None:
        _unavailable("docker or docker-compose is not installed")
    for image in IMAGES:
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                          timeout=30, stdin=subprocess.DEVNULL).returncode != 0:
            _unavailable(f"the image {image} is missing (images/build.sh, docker/build.sh)")
    project = f"vouch-compose-test-{secrets.token_hex(3)}"
    ports = {f"VOUCH_COMPOSE_NODE{i}_PORT": str(_free_port()) for i in (1, 2, 3)}
    ports["VOUCH_COMPOSE_VERIFIER_PORT"] = str(_free_port())
    env = {**os.environ, "VOUCH_COMPOSE_PROJECT": project, **ports}

    def compose(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(REPO / "scripts/compose.sh"), *args], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)

    try:
        up = compose("up")
        assert up.returncode == 0, f"compose.sh up failed:\n{up.stdout}\n{up.stderr}"
        assert "node3 holds its receipt" in up.stdout, up.stdout

        node2 = f"http://127.0.0.1:{ports['VOUCH_COMPOSE_NODE2_PORT']}"
        probe = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}",
                                "vouch/probe:dev"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
        job = _http("POST", f"{node2}/v1/jobs", {"image": probe, "nonce": project})
        done = _http("GET", f"{node2}/v1/jobs/{job['job_id']}?wait_ms=30000")
        assert done["status"] == "succeeded", done
        seen = _http("GET", f"{node2}/v1/jobs/{job['job_id']}/output")
        assert seen["docker_sock"] is False, seen
        assert seen["interfaces"] == ["lo"], seen
        assert seen["uid"] != 0 and seen["cap_eff"] == "0000000000000000", seen

        verifier = f"http://127.0.0.1:{ports['VOUCH_COMPOSE_VERIFIER_PORT']}"
        sec = _http("GET", f"{verifier}/v1/security")
        assert len(sec["operators"]) == 3, sec
        for o in sec["operators"]:
            assert (o["stake_value"], o["cap"], o["condition_holds"]) == ("1000", "454", True), o

        again = compose("up")
        assert again.returncode == 0, f"a second up failed:\n{again.stdout}\n{again.stderr}"
        assert again.stdout.count("is registered already") == 3, again.stdout
        events = _http("GET", f"{verifier}/v1/events?from=0&limit=1000")["events"]
        assert len(events) == 1 + 3 * 4, [e["kind"] for e in events]
    finally:
        down = compose("down")
        left = _project_leftovers(project)
        assert down.returncode == 0, down.stderr
        assert left == [], f"compose.sh down left {left}"
