"""Three operators and a verifier on a private Docker network: a partitioned operator
catches up on the receipts it missed, exactly once.

Every Vouch process runs in its own container of `vouch/node:dev` or `vouch/verifier:dev`
(built by `docker/build.sh`), on a user-defined bridge network of its own, as on three
hosts. The nodes know only the verifier, by its container name
(`--p2p-bootstrap /dns4/<verifier>/tcp/7000/p2p/<peer id>`, `--verifier-url`); mDNS is off.
The ledger is seeded with `vouch-verifier request` run as one-off containers: an asset, the
three operators (with their libp2p identities) and one restaker per operator who deposits
and delegates, so all three are `active` in `GET /v1/registry`.

`test_receipts_reach_every_operator_and_the_verifier` checks that a receipt signed by one
node is recorded once by every node and heard by the verifier.

`test_partitioned_operator_catches_up_without_duplicates` cuts node3 off
(`docker network disconnect`), signs receipts on node1 and node2, heals the partition
(`docker network connect`) and expects node3 to hold each missed receipt exactly once,
received after the heal through catch-up sync (`/v1/peers` -> `messages.synced`), and a
receipt node3 then signs to reach everyone.

Node3 comes back with another IP address, as a host does after a DHCP renewal or a move.
Left to itself Docker hands the old address back; the TCP connections of both sides then
survive the cut and simply deliver the gossip queued during it by retransmission, so
catch-up would never be exercised. With a new address those connections are dead for
good, and only the redial of the bootstrap peer and catch-up sync bring node3 back. (The
address is chosen with `--ip`, which Docker allows only on a network whose subnet was
given explicitly: the test creates the network, reads the subnet Docker picked, and
creates it again with that subnet.)

While node3 is cut off the test still reads its API: before the cut, node3 is attached to
a second, `--internal` network on which there is no other Vouch container (the host is
on every bridge, so it can reach node3 there; node3 can reach nobody). That lets the test
check that nothing reached node3 during the partition, rather than only inferring it from
arrival times afterwards (it checks those too). The side network is removed from node3
when the partition heals.

The host talks only to the containers' addresses on these networks. Everything the test
creates (containers, networks, volumes, and the workload containers the nodes start,
labelled `vouch.node=<operator key prefix>`) is removed at the end, whatever happened; the
teardown fails if anything is left. Without Docker or the images the tests are skipped,
or fail when the environment variable CI is `true`.

Run: `images/build.sh wc && docker/build.sh && .venv/bin/python -m pytest -q tests/multihost`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

NODE_IMAGE = "vouch/node:dev"
VERIFIER_IMAGE = "vouch/verifier:dev"
WORKLOAD_IMAGE = "vouch/wc:dev"
SLEEP_IMAGE = "vouch/sleep:dev"
IMAGES = {
    NODE_IMAGE: "docker/build.sh",
    VERIFIER_IMAGE: "docker/build.sh",
    WORKLOAD_IMAGE: "images/build.sh wc",
    SLEEP_IMAGE: "images/build.sh sleep",
}
NETWORK = "mh-test"
NODE_PORT = 8080
VERIFIER_PORT = 9090
P2P_PORT = 7000
# Our own containers, networks and volumes carry this label (value: the run id), so the
# teardown finds them even when the test died half-way through creating them.
RUN_LABEL = "vouch.multihost"
# Nodes poll the registry every 5 s and ask peers for missed receipts every 10 s.
READY_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 60.0
GOSSIP_TIMEOUT_S = 20.0
# The bar: a healed node has everything it missed within about 30 s (one or two
# sync intervals, plus the redial of the bootstrap peer).
CATCH_UP_TIMEOUT_S = 30.0
PARTITION_JOBS = 6
# Gossipsub can re-send recent messages (IHAVE/IWANT) for a few heartbeats of 1 s; a
# partition longer than that leaves catch-up sync as the only way back for what was missed.
MIN_PARTITION_S = 8.0
LOG_TAIL = 80

# Never send the test's requests through an HTTP proxy from the environment: the
# containers' addresses are only reachable directly.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _unavailable(why: str) -> None:
    """Skip, or fail under CI (a CI run must not silently skip this test)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------------------------------
# docker CLI and HTTP


class DockerError(RuntimeError):
    pass


def docker(*args: str, timeout: float = 120.0, check: bool = True) -> str:
    """Runs the docker CLI; returns stdout, raises DockerError (with stderr) on failure."""
    try:
        p = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise DockerError(f"docker {' '.join(args)}: no answer within {timeout:.0f} s") from e
    if check and p.returncode != 0:
        raise DockerError(
            f"docker {' '.join(args)} exited with {p.returncode}: {p.stderr.strip()[-2000:]}"
        )
    return p.stdout


def http(method: str, url: str, body: object = None, timeout: float = 15.0):
    """(status, parsed JSON body or raw text). Connection errors propagate (OSError)."""
    data = None
    headers = {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _HTTP.open(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def get_json(url: str, timeout: float = 15.0):
    status, body = http("GET", url, timeout=timeout)
    assert status == 200, f"GET {url} -> {status}: {body}"
    return body


def wait_for(what: str, probe, timeout: float, interval: float = 0.5):
    """Calls `probe` until it returns something truthy; connection errors count as "not
    yet". On timeout fails with `what` and the last value or error seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except (OSError, urllib.error.URLError, AssertionError) as e:
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}; last: {last}"
            )
        time.sleep(interval)


# ---------------------------------------------------------------------------------------
# the cluster


@dataclass
class Node:
    name: str  # container name
    volume: str
    operator: str = ""  # operator key, 64 hex
    peer_id: str = ""

    @property
    def label(self) -> str:
        """The `vouch.node` label of the workload containers this node starts."""
        return self.operator[:16]


@dataclass
class Cluster:
    run_id: str
    network: str
    side_network: str
    verifier: str  # container name
    verifier_volume: str
    restaker_volume: str
    nodes: list[Node]
    verifier_key: str = ""
    verifier_peer_id: str = ""
    subnet: str = ""  # of `network`
    docker_socket: str = "/var/run/docker.sock"
    _nonce: int = field(default_factory=now_ms)

    # ---- addresses

    def ip(self, container: str, network: str | None = None) -> str:
        """The container's address on `network` (default: the cluster network, else any)."""
        nets = json.loads(
            docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", container)
        ) or {}
        if network is None:
            network = self.network if self.network in nets else next(iter(nets), None)
        entry = nets.get(network) if network else None
        if not entry or not entry.get("IPAddress"):
            raise AssertionError(
                f"{container} has no address on {network} (networks: {list(nets)})"
            )
        return entry["IPAddress"]

    def node_url(self, node: Node, network: str | None = None) -> str:
        return f"http://{self.ip(node.name, network)}:{NODE_PORT}"

    def verifier_url(self) -> str:
        return f"http://{self.ip(self.verifier, self.network)}:{VERIFIER_PORT}"

    def bootstrap_addr(self) -> str:
        return f"/dns4/{self.verifier}/tcp/{P2P_PORT}/p2p/{self.verifier_peer_id}"

    # ---- helpers

    def one_off(self, image: str, volume: str, *args: str, timeout: float = 60.0) -> str:
        """Runs a short-lived container of `image` on the cluster network with `volume` on
        /data; returns its stdout."""
        return docker(
            "run", "--rm", "--label", f"{RUN_LABEL}={self.run_id}",
            "--network", self.network, "-v", f"{volume}:/data",
            image, *args,
            timeout=timeout,
        )

    def request(self, volume: str, key: str, body: dict, peer_key: str | None = None) -> dict:
        """A signed ledger request through `vouch-verifier request`; nonces come from one
        counter, so they increase for every actor whatever the clock does."""
        self._nonce += 1
        args = [
            "request", "--url", f"http://{self.verifier}:{VERIFIER_PORT}", "--network", NETWORK,
            "--key", key, "--nonce", str(self._nonce),
        ]
        if peer_key:
            args += ["--peer-key", peer_key]
        out = self.one_off(VERIFIER_IMAGE, volume, *args, json.dumps(body))
        return json.loads(out)

    def peers(self, node: Node, network: str | None = None) -> dict:
        return get_json(f"{self.node_url(node, network)}/v1/peers")

    def diagnostics(self) -> str:
        """The containers' recent logs and the nodes' network views, for a failure report."""
        parts = []
        for c in [self.verifier] + [n.name for n in self.nodes]:
            try:
                p = subprocess.run(
                    ["docker", "logs", "--tail", str(LOG_TAIL), c],
                    capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                )
                parts.append(f"----- docker logs --tail {LOG_TAIL} {c}\n{p.stdout}{p.stderr}")
            except (OSError, subprocess.SubprocessError) as e:
                parts.append(f"----- {c}: cannot read logs: {e}")
        for n in self.nodes:
            try:
                nets = json.loads(
                    docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", n.name)
                ) or {}
                for net in nets:
                    with contextlib.suppress(Exception):
                        parts.append(
                            f"----- {n.name} /v1/peers (via {net})\n"
                            + json.dumps(self.peers(n, net), indent=1)
                        )
                        break
            except Exception as e:  # noqa: BLE001 - diagnostics must not mask the failure
                parts.append(f"----- {n.name}: {e}")
        return "\n".join(parts)

    @contextlib.contextmanager
    def explain_failure(self):
        """Prints diagnostics (shown by pytest with the failure) if the block fails."""
        try:
            yield
        except BaseException:
            print(self.diagnostics())
            raise


def _docker_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        _unavailable(f"DOCKER_HOST={host}: the nodes need a local Docker socket to mount")
    return host[len("unix://"):] if host else "/var/run/docker.sock"


def _check_prerequisites() -> str:
    if shutil.which("docker") is None:
        _unavailable("docker is not installed")
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    if info.returncode != 0:
        _unavailable(f"the Docker daemon is unreachable: {info.stderr.strip()[:300]}")
    for image, build in IMAGES.items():
        insp = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Id}}", image],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )
        if insp.returncode != 0:
            _unavailable(f"the image {image} is missing (build it with {build})")
    socket = _docker_socket()
    if not os.path.exists(socket):
        _unavailable(f"the Docker socket {socket} does not exist on this host")
    return socket


def _hex_key(out: str, what: str) -> str:
    lines = [l.strip() for l in out.splitlines() if l.strip()]
    key = lines[-1] if lines else ""
    assert re.fullmatch(r"[0-9a-f]{64}", key), f"{what}: expected a 64-hex key, got {out!r}"
    return key


def _create_network_with_subnet(name: str, label: str) -> str:
    """Creates the bridge network `name` with an explicit subnet (so `docker network
    connect --ip` works on it): the one Docker picks from its own pools, which it has
    checked against the host's routes. Returns the subnet."""
    last = None
    for _ in range(5):
        docker("network", "create", "--label", label, name)
        subnet = docker(
            "network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", name
        ).strip()
        docker("network", "rm", name)
        try:
            docker("network", "create", "--subnet", subnet, "--label", label, name)
            return subnet
        except DockerError as e:  # another client took the subnet in between: try again
            last = e
    raise AssertionError(f"cannot create network {name} with an explicit subnet: {last}")


def _unused_address(c: Cluster) -> str:
    """An address of the cluster subnet no container has: the highest host address (Docker
    allocates from the bottom)."""
    net = ipaddress.ip_network(c.subnet)
    assert net.num_addresses >= 16, f"subnet {c.subnet} is too small"
    used = json.loads(docker("network", "inspect", "-f", "{{json .Containers}}", c.network)) or {}
    taken = {e["IPv4Address"].split("/")[0] for e in used.values()}
    candidate = str(net.broadcast_address - 1)
    assert candidate not in taken, f"{candidate} is in use on {c.network}: {used}"
    return candidate


def _start(c: Cluster) -> None:
    label = f"{RUN_LABEL}={c.run_id}"
    c.subnet = _create_network_with_subnet(c.network, label)
    # Internal: no route out of it, so a node attached to it reaches no other Vouch process.
    docker("network", "create", "--internal", "--label", label, c.side_network)
    for v in [c.verifier_volume, c.restaker_volume] + [n.volume for n in c.nodes]:
        docker("volume", "create", "--label", label, v)

    # ---- verifier
    c.verifier_key = _hex_key(
        c.one_off(VERIFIER_IMAGE, c.verifier_volume, "keys", "generate", "--data-dir", "/data"),
        "vouch-verifier keys generate",
    )
    docker(
        "run", "-d", "--name", c.verifier, "--label", label, "--network", c.network,
        "-v", f"{c.verifier_volume}:/data", "-e", "RUST_LOG=info,vouch_net=debug",
        VERIFIER_IMAGE,
        "run", "--data-dir", "/data", "--listen", f"0.0.0.0:{VERIFIER_PORT}",
        "--network", NETWORK, "--min-stake-value", "1",
        "--challenge-window-ms", "60000", "--withdrawal-delay-ms", "120000",
        "--p2p-listen", f"/ip4/0.0.0.0/tcp/{P2P_PORT}", "--no-mdns",
    )
    c.verifier_peer_id = wait_for(
        "the verifier's /v1/peers",
        lambda: get_json(f"{c.verifier_url()}/v1/peers", timeout=5).get("peer_id"),
        READY_TIMEOUT_S,
    )

    # ---- nodes
    gid = str(os.stat(c.docker_socket).st_gid)
    for n in c.nodes:
        n.operator = _hex_key(
            c.one_off(NODE_IMAGE, n.volume, "keys", "generate", "--data-dir", "/data"),
            "vouch-node keys generate",
        )
    for n in c.nodes:
        docker(
            "run", "-d", "--name", n.name, "--label", label, "--network", c.network,
            "--stop-timeout", "30",
            "-v", f"{n.volume}:/data",
            "-v", f"{c.docker_socket}:/var/run/docker.sock",
            "--group-add", gid,
            "-e", "RUST_LOG=info,vouch_net=debug",
            NODE_IMAGE,
            "run", "--network", NETWORK, "--listen", f"0.0.0.0:{NODE_PORT}",
            "--p2p-listen", f"/ip4/0.0.0.0/tcp/{P2P_PORT}", "--no-mdns",
            "--p2p-bootstrap", c.bootstrap_addr(),
            "--verifier-url", f"http://{c.verifier}:{VERIFIER_PORT}",
        )
    for n in c.nodes:
        health = wait_for(
            f"{n.name} /healthz",
            lambda n=n: get_json(f"{c.node_url(n)}/healthz", timeout=5),
            READY_TIMEOUT_S,
        )
        assert health.get("docker") == "ok", f"{n.name} cannot use Docker: {health}"
        # The node writes /data/p2p-key when it joins the network, before /v1/peers answers.
        n.peer_id = wait_for(
            f"{n.name} /v1/peers", lambda n=n: c.peers(n).get("peer_id"), READY_TIMEOUT_S
        )
        shown = _hex_key(
            c.one_off(NODE_IMAGE, n.volume, "keys", "show", "--data-dir", "/data"),
            "vouch-node keys show",
        )
        assert shown == n.operator

    # ---- ledger: an asset, three operators, a restaker behind each
    c.request(c.verifier_volume, "/data/verifier.pem",
              {"type": "register_asset", "asset": "eth", "price_per_unit": "1"})
    for i, n in enumerate(c.nodes, 1):
        c.request(n.volume, "/data/operator.pem", {"type": "register_operator"},
                  peer_key="/data/p2p-key")
        c.request(n.volume, "/data/operator.pem",
                  {"type": "allocate", "magnitude_ppm": 1_000_000})
        restaker = _hex_key(
            c.one_off(VERIFIER_IMAGE, c.restaker_volume,
                      "keys", "generate", "--data-dir", f"/data/r{i}"),
            "restaker key",
        )
        assert restaker not in {m.operator for m in c.nodes}
        key = f"/data/r{i}/verifier.pem"
        c.request(c.restaker_volume, key, {"type": "deposit", "asset": "eth", "amount": "1000"})
        c.request(c.restaker_volume, key, {"type": "delegate", "operator": n.operator})

    operators = {n.operator for n in c.nodes}
    registry = get_json(f"{c.verifier_url()}/v1/registry")
    listed = {o["operator"]: o for o in registry["operators"]}
    assert set(listed) == operators, f"registry: {registry}"
    for n in c.nodes:
        o = listed[n.operator]
        assert o["active"] is True, f"{n.name} is not active: {o}"
        assert o["jailed_by_slash"] is False, o
        assert o["stake_value"] == "1000", o
        assert o["peer_key"], o

    # ---- every node uses that registry and is on the receipts mesh
    for n in c.nodes:
        wait_for(
            f"{n.name} to load the registry with all three operators",
            lambda n=n: {o["operator"] for o in c.peers(n)["registry"]["operators"]} == operators,
            READY_TIMEOUT_S,
        )
        view = c.peers(n)
        assert view["registry"]["verifier"] == c.verifier_key, view["registry"]
    wait_for(
        "the verifier to be connected to all three nodes",
        lambda: {n.peer_id for n in c.nodes}
        <= set(get_json(f"{c.verifier_url()}/v1/peers")["connected"]),
        READY_TIMEOUT_S,
    )
    for n in c.nodes:
        wait_for(
            f"{n.name} to have a receipts mesh",
            lambda n=n: (lambda v: v["receipts_mesh"] and len(v["connected"]) >= 1)(c.peers(n)),
            READY_TIMEOUT_S,
        )


def _leftovers(c: Cluster) -> list[str]:
    label = f"{RUN_LABEL}={c.run_id}"
    found = []
    found += docker("ps", "-aq", "--filter", f"label={label}", check=False).split()
    for n in c.nodes:
        if n.operator:
            found += docker("ps", "-aq", "--filter", f"label=vouch.node={n.label}",
                            check=False).split()
    found += docker("network", "ls", "-q", "--filter", f"label={label}", check=False).split()
    found += docker("volume", "ls", "-q", "--filter", f"label={label}", check=False).split()
    return found


def _teardown(c: Cluster) -> None:
    """Removes everything the run created; raises if something is left behind."""
    errors = []

    def attempt(*args: str) -> None:
        try:
            docker(*args)
        except DockerError as e:
            errors.append(str(e))

    label = f"{RUN_LABEL}={c.run_id}"
    # Our containers first (the nodes stop starting workloads), then the workloads they
    # left. A creation the daemon was still finishing for a dead node can appear a moment
    # later: sweep twice.
    for _ in range(2):
        ours = docker("ps", "-aq", "--filter", f"label={label}", check=False).split()
        if ours:
            attempt("rm", "-f", "-v", *ours)
        for n in c.nodes:
            if not n.operator:
                continue
            work = docker("ps", "-aq", "--filter", f"label=vouch.node={n.label}",
                          check=False).split()
            if work:
                attempt("rm", "-f", "-v", *work)
        time.sleep(1)
    nets = docker("network", "ls", "-q", "--filter", f"label={label}", check=False).split()
    if nets:
        attempt("network", "rm", *nets)
    vols = docker("volume", "ls", "-q", "--filter", f"label={label}", check=False).split()
    if vols:
        attempt("volume", "rm", "-f", *vols)
    left = _leftovers(c)
    if left or errors:
        raise AssertionError(f"cleanup of run {c.run_id} incomplete: left {left}; errors {errors}")


@pytest.fixture(scope="module")
def cluster():
    socket = _check_prerequisites()
    run_id = secrets.token_hex(4)
    prefix = f"vouch-mh-{run_id}"
    c = Cluster(
        run_id=run_id,
        network=prefix,
        side_network=f"{prefix}-side",
        verifier=f"{prefix}-verifier",
        verifier_volume=f"{prefix}-verifier",
        restaker_volume=f"{prefix}-restakers",
        nodes=[Node(name=f"{prefix}-node{i}", volume=f"{prefix}-node{i}") for i in (1, 2, 3)],
        docker_socket=socket,
    )
    try:
        started = time.monotonic()
        with c.explain_failure():
            _start(c)
        print(f"cluster {run_id} ready in {time.monotonic() - started:.1f} s")
        yield c
    finally:
        _teardown(c)


# ---------------------------------------------------------------------------------------
# jobs and receipts


def submit(c: Cluster, node: Node, text: str) -> str:
    status, body = http(
        "POST",
        f"{c.node_url(node)}/v1/jobs",
        {"image": WORKLOAD_IMAGE, "input": text, "nonce": f"{c.run_id}/{secrets.token_hex(8)}"},
    )
    assert status == 202, f"POST /v1/jobs on {node.name} -> {status}: {body}"
    return body["job_id"]


def finish(c: Cluster, node: Node, job_id: str) -> dict:
    """Long-polls the job until it is finished; returns its signed receipt."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        job = get_json(f"{c.node_url(node)}/v1/jobs/{job_id}?wait_ms=10000", timeout=20)
        if job["status"] in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline, f"job {job_id} on {node.name} still {job['status']}"
    assert job["status"] == "succeeded", f"job {job_id} on {node.name}: {job}"
    receipt = job["receipt"]
    assert receipt["job_id"] == job_id and receipt["operator"] == node.operator, receipt
    return receipt


def run_jobs(c: Cluster, plan: list[tuple[Node, str]]) -> dict[str, tuple[Node, dict]]:
    """Submits every job at once (they run concurrently), then waits for each; returns
    job id -> (signing node, receipt)."""
    ids = [(node, submit(c, node, text)) for node, text in plan]
    with ThreadPoolExecutor(max_workers=len(ids)) as pool:
        receipts = list(pool.map(lambda p: finish(c, *p), ids))
    return {job_id: (node, r) for (node, job_id), r in zip(ids, receipts)}


def seen_on(c: Cluster, node: Node, job_id: str, network: str | None = None) -> list[dict]:
    body = get_json(f"{c.node_url(node, network)}/v1/jobs/{job_id}/receipts")
    return body["receipts"]


def heard_by_verifier(c: Cluster) -> dict[str, list[dict]]:
    body = get_json(f"{c.verifier_url()}/v1/receipts?limit=1000")
    out: dict[str, list[dict]] = {}
    for h in body["receipts"]:
        out.setdefault(h["receipt"]["job_id"], []).append(h)
    return out


def wait_everywhere(c: Cluster, jobs: dict[str, tuple[Node, dict]], nodes: list[Node],
                    timeout: float = GOSSIP_TIMEOUT_S) -> None:
    """Waits until every job's receipt is on every node of `nodes` and the verifier."""
    def arrived():
        missing = [
            (n.name, j) for j in jobs for n in nodes if not seen_on(c, n, j)
        ]
        heard = heard_by_verifier(c)
        missing += [("verifier", j) for j in jobs if j not in heard]
        assert not missing, f"not there yet: {missing}"
        return True

    wait_for(f"{len(jobs)} receipts on {[n.name for n in nodes]} and the verifier", arrived,
             timeout)


def assert_exactly_once(c: Cluster, jobs: dict[str, tuple[Node, dict]], nodes: list[Node]) -> None:
    """Each job has one entry on each node, the signer's receipt, and one on the verifier."""
    heard = heard_by_verifier(c)
    for job_id, (signer, receipt) in jobs.items():
        for n in nodes:
            seen = seen_on(c, n, job_id)
            assert len(seen) == 1, f"{n.name} has {len(seen)} entries for job {job_id}: {seen}"
            assert seen[0]["receipt"] == receipt, (
                f"{n.name} holds another receipt for {job_id}: {seen[0]} vs {receipt}"
            )
            if n is signer:
                assert seen[0]["via"] == "self", seen[0]
            else:
                assert seen[0]["via"] != "self", seen[0]
        got = heard.get(job_id, [])
        assert len(got) == 1, f"the verifier heard job {job_id} {len(got)} times: {got}"
        assert got[0]["receipt"] == receipt, (got[0], receipt)


# ---------------------------------------------------------------------------------------
# tests


def test_receipts_reach_every_operator_and_the_verifier(cluster: Cluster):
    c = cluster
    node1, node2, _ = c.nodes
    with c.explain_failure():
        jobs = run_jobs(c, [
            (node1, "a receipt signed by node1\n"),
            (node2, "a receipt signed by node2\n"),
            (node1, "another one from node1\n"),
            (node2, "another one from node2\n"),
        ])
        wait_everywhere(c, jobs, c.nodes)
        assert_exactly_once(c, jobs, c.nodes)


def test_partitioned_operator_catches_up_without_duplicates(cluster: Cluster):
    c = cluster
    node1, node2, node3 = c.nodes
    with c.explain_failure():
        # ---- cut node3 off; the side network keeps its API reachable from the host only
        docker("network", "connect", c.side_network, node3.name)
        wait_for("node3 on the side network",
                 lambda: c.peers(node3, c.side_network)["peer_id"] == node3.peer_id,
                 READY_TIMEOUT_S)
        old_ip = c.ip(node3.name, c.network)
        docker("network", "disconnect", c.network, node3.name)
        cut_at = time.monotonic()
        before = c.peers(node3, c.side_network)["messages"]

        # ---- the others keep working
        plan = [(node1 if i % 2 == 0 else node2, f"signed during the partition #{i}\n")
                for i in range(PARTITION_JOBS)]
        jobs = run_jobs(c, plan)
        wait_everywhere(c, jobs, [node1, node2])
        assert_exactly_once(c, jobs, [node1, node2])

        # ---- none of it reached node3 (checked again just before the heal)
        remaining = MIN_PARTITION_S - (time.monotonic() - cut_at)
        if remaining > 0:
            time.sleep(remaining)
        for job_id in jobs:
            seen = seen_on(c, node3, job_id, c.side_network)
            assert seen == [], f"node3 got job {job_id} while partitioned: {seen}"
        during = c.peers(node3, c.side_network)["messages"]
        assert during["accepted"] == before["accepted"], (before, during)

        # ---- heal: back on the cluster network at another address, side network off
        new_ip = _unused_address(c)
        healed_ms = now_ms()
        healed_at = time.monotonic()
        docker("network", "connect", "--ip", new_ip, c.network, node3.name)
        docker("network", "disconnect", c.side_network, node3.name)
        assert c.ip(node3.name, c.network) == new_ip != old_ip

        def caught_up():
            missing = [j for j in jobs if not seen_on(c, node3, j)]
            assert not missing, f"node3 still misses {len(missing)} of {len(jobs)} receipts"
            return True

        wait_for(f"node3 to catch up on {len(jobs)} missed receipts", caught_up,
                 CATCH_UP_TIMEOUT_S)
        print(f"node3 caught up {time.monotonic() - healed_at:.1f} s after the heal")
        for job_id, (_, receipt) in jobs.items():
            [entry] = seen_on(c, node3, job_id)
            assert entry["receipt"] == receipt, (entry, receipt)
            assert entry["via"] in {node1.peer_id, node2.peer_id, c.verifier_peer_id}, entry
            assert entry["received_at_ms"] >= healed_ms, (
                f"job {job_id} arrived at {entry['received_at_ms']}, before the heal at {healed_ms}"
            )
        after = c.peers(node3)["messages"]
        assert after["synced"] - during["synced"] >= len(jobs), (
            f"node3 should have caught up through sync: {during} -> {after}"
        )

        # ---- node3 signs again, and everyone hears it
        jobs.update(run_jobs(c, [(node3, "signed by node3 after the heal\n")]))
        wait_everywhere(c, jobs, c.nodes)
        assert_exactly_once(c, jobs, c.nodes)


# ---------------------------------------------------------------------------------------
# chaos: an operator stopped mid-job, the verifier restarted; nothing lost, nobody slashed


def all_events(c: Cluster) -> list[dict]:
    out, start = [], 0
    while True:
        page = get_json(f"{c.verifier_url()}/v1/events?from={start}&limit=1000")
        out += page["events"]
        if not page["events"]:
            return out
        start = page["next"]


def assert_no_slash_and_stake_intact(c: Cluster) -> None:
    """An outage is not an offence: no slash in the ledger, no dispute, every operator
    active with its whole stake."""
    events = all_events(c)
    kinds = [e["kind"] for e in events]
    assert "slash" not in kinds and "open_dispute" not in kinds, kinds
    # The chain is intact: each event names the previous one's hash, in sequence.
    for prev, e in zip(events, events[1:]):
        assert int(e["seq"]) == int(prev["seq"]) + 1, (prev["seq"], e["seq"])
        assert e["prev_hash"] == prev["hash"], (prev, e)
    listed = {o["operator"]: o for o in get_json(f"{c.verifier_url()}/v1/registry")["operators"]}
    for n in c.nodes:
        o = listed[n.operator]
        assert o["active"] is True and o["jailed_by_slash"] is False, o
        assert o["stake_value"] == "1000", o


def wait_healthy(c: Cluster, node: Node) -> None:
    health = wait_for(f"{node.name} /healthz after the restart",
                      lambda: get_json(f"{c.node_url(node)}/healthz", timeout=5),
                      READY_TIMEOUT_S)
    assert health.get("docker") == "ok", health
    wait_for(f"{node.name} back on the receipts mesh",
             lambda: c.peers(node)["receipts_mesh"], READY_TIMEOUT_S)


def test_operator_stopped_mid_job_signs_it_after_restart_and_loses_nothing(cluster: Cluster):
    c = cluster
    node1, node2, node3 = c.nodes
    with c.explain_failure():
        # A receipt node2 signed before the outage, on every node.
        earlier = run_jobs(c, [(node2, "signed by node2 before its outage\n")])
        wait_everywhere(c, earlier, c.nodes)

        # A 4-second job; node2's container is stopped while it runs.
        status, body = http("POST", f"{c.node_url(node2)}/v1/jobs", {
            "image": SLEEP_IMAGE, "command": ["4000"], "input": "survives the outage\n",
            "nonce": f"{c.run_id}/chaos-stop",
        })
        assert status == 202, body
        job_id = body["job_id"]
        wait_for("the job to run",
                 lambda: get_json(f"{c.node_url(node2)}/v1/jobs/{job_id}")["status"] == "running",
                 JOB_TIMEOUT_S, interval=0.1)
        docker("stop", "--time", "1", node2.name)
        assert docker("inspect", "-f", "{{.State.Running}}", node2.name).strip() == "false"
        time.sleep(2)
        docker("start", node2.name)
        wait_healthy(c, node2)

        # The interrupted job is run again and signed once; its receipt reaches everyone.
        receipt = finish(c, node2, job_id)
        out = http("GET", f"{c.node_url(node2)}/v1/jobs/{job_id}/output")
        assert out == (200, "survives the outage\n"), out
        jobs = {job_id: (node2, receipt)}
        wait_everywhere(c, jobs, c.nodes, timeout=CATCH_UP_TIMEOUT_S + GOSSIP_TIMEOUT_S)
        assert_exactly_once(c, jobs, c.nodes)
        # Nothing signed before the outage was lost, on node2 or elsewhere.
        for job, (_, r) in earlier.items():
            for n in c.nodes:
                [entry] = seen_on(c, n, job)
                assert entry["receipt"] == r, (n.name, entry, r)
        # The workload container of the interrupted run is gone.
        left = docker("ps", "-aq", "--filter", f"label=vouch.node={node2.label}").split()
        assert left == [], f"node2 left workload containers: {left}"
        assert_no_slash_and_stake_intact(c)


def test_verifier_restart_keeps_its_ledger_and_rejoins(cluster: Cluster):
    c = cluster
    node1, node2, node3 = c.nodes
    with c.explain_failure():
        before = all_events(c)
        registry_before = get_json(f"{c.verifier_url()}/v1/registry")["operators"]
        docker("restart", "--time", "10", c.verifier)
        wait_for("the verifier's /healthz after the restart",
                 lambda: get_json(f"{c.verifier_url()}/healthz", timeout=5), READY_TIMEOUT_S)
        # The same ledger: every event, byte for byte, and the same stake.
        assert all_events(c) == before
        assert get_json(f"{c.verifier_url()}/v1/registry")["operators"] == registry_before
        # Same identity, so the nodes' bootstrap address still works: it is reconnected,
        # and the nodes read the registry again.
        assert get_json(f"{c.verifier_url()}/v1/peers")["peer_id"] == c.verifier_peer_id
        wait_for("the verifier to be connected to all three nodes again",
                 lambda: {n.peer_id for n in c.nodes}
                 <= set(get_json(f"{c.verifier_url()}/v1/peers")["connected"]),
                 READY_TIMEOUT_S)
        for n in c.nodes:
            wait_for(f"{n.name} to read the registry from the restarted verifier",
                     lambda n=n: c.peers(n)["registry"]["error"] is None
                     and len(c.peers(n)["registry"]["operators"]) == 3,
                     READY_TIMEOUT_S)
        # Receipts signed after the restart reach every node and the verifier.
        jobs = run_jobs(c, [(node1, "after the verifier restart\n"),
                            (node3, "node3 after the verifier restart\n")])
        wait_everywhere(c, jobs, c.nodes, timeout=CATCH_UP_TIMEOUT_S + GOSSIP_TIMEOUT_S)
        assert_exactly_once(c, jobs, c.nodes)
        assert_no_slash_and_stake_intact(c)
