#!/usr/bin/env bash
# The test command: builds every image the tests use, runs every Rust test (unit,
# integration, real Docker, real SQLite, kill -9), then the independent Python verifier
# and its tests. Needs Rust, Docker and python3. Docker tests fail (not skip) under CI=true.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

step() { printf '\n==> %s\n' "$*"; }

step "checking Docker"
if ! docker info >/dev/null 2>&1; then
  echo "error: cannot talk to the Docker daemon (is dockerd running? is DOCKER_HOST right? may this user use the socket?)" >&2
  exit 1
fi

step "building workload images (images/build.sh)"
bash images/build.sh
step "building the node and verifier images (docker/build.sh)"
bash docker/build.sh </dev/null

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo test (workspace)"
cargo test --workspace --locked --no-fail-fast

step "Python tools (independent verifier, in .venv)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r proto/tools/requirements.txt -r tests/openai/requirements.txt
.venv/bin/python proto/tools/vouch_verify.py vectors proto/testdata/vectors.json

step "Python tests: the verifier, the official openai SDK against real vouch-node processes, 3 nodes + a verifier in containers (partition, an operator stopped mid-job, a verifier restart), the compose devnet"
VOUCH_NODE_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/vouch-node" .venv/bin/python -m pytest -q proto/tools tests/openai tests/multihost
