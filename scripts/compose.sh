#!/usr/bin/env bash
# The devnet as containers (docker/compose.yaml): a verifier and three operator nodes on a
# private bridge network, workloads started by the nodes as sibling containers.
#
#   bash scripts/compose.sh up      build the images if missing, generate keys, start the
#                                   verifier, then the nodes (bootstrapped to its peer id),
#                                   seed the stake, run one job and check its receipt reached
#                                   every node; leaves the network running
#   bash scripts/compose.sh down    stop it and delete its containers, network and volumes
#   bash scripts/compose.sh logs    follow the logs
#   bash scripts/compose.sh ps      what is running
#
# Environment: VOUCH_COMPOSE_PROJECT (default vouch-compose), VOUCH_COMPOSE_VERIFIER_PORT
# (19090), VOUCH_COMPOSE_NODE{1,2,3}_PORT (18081-18083): loopback ports on the host.
# Reads nothing from standard input.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
project="${VOUCH_COMPOSE_PROJECT:-vouch-compose}"
export VOUCH_COMPOSE_VERIFIER_PORT="${VOUCH_COMPOSE_VERIFIER_PORT:-19090}"
export VOUCH_COMPOSE_NODE1_PORT="${VOUCH_COMPOSE_NODE1_PORT:-18081}"
export VOUCH_COMPOSE_NODE2_PORT="${VOUCH_COMPOSE_NODE2_PORT:-18082}"
export VOUCH_COMPOSE_NODE3_PORT="${VOUCH_COMPOSE_NODE3_PORT:-18083}"
case "${DOCKER_HOST:-}" in
  "") DOCKER_SOCKET=/var/run/docker.sock ;;
  unix://*) DOCKER_SOCKET="${DOCKER_HOST#unix://}" ;;
  *) echo "scripts/compose.sh: DOCKER_HOST=$DOCKER_HOST: the nodes need a local Docker socket to mount" >&2; exit 1 ;;
esac
export DOCKER_SOCKET
export VOUCH_BOOTSTRAP="${VOUCH_BOOTSTRAP:-}"
vurl="http://127.0.0.1:$VOUCH_COMPOSE_VERIFIER_PORT"
network=vouch-compose

say() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { echo "scripts/compose.sh: $*" >&2; exit 1; }

command -v docker-compose >/dev/null || die "docker-compose is not installed (Debian: apt-get install docker-compose)"
[ -S "$DOCKER_SOCKET" ] || die "no Docker socket at $DOCKER_SOCKET"
export DOCKER_GID="$(stat -c %g "$DOCKER_SOCKET")"
dc() { docker-compose -p "$project" -f docker/compose.yaml "$@" </dev/null; }
# A one-off container: its output on success; docker-compose's chatter only on failure.
dc_run() {
  local err
  err="$(mktemp)"
  if ! dc run --rm --no-deps "$@" 2>"$err"; then
    cat "$err" >&2
    rm -f "$err"
    return 1
  fi
  rm -f "$err"
}

wait_url() { # url what
  for _ in $(seq 1 300); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  dc logs --tail 40 >&2 || true
  die "$2 did not answer at $1"
}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }

nonce=$(($(date +%s%N) / 1000000))
# request KEY BODY [PEERKEY]: a signed ledger request through the cli service.
request() {
  nonce=$((nonce + 1))
  local extra=()
  [ -n "${3:-}" ] && extra=(--peer-key "$3")
  dc_run cli request --url http://verifier:9090 --network "$network" \
    --key "$1" --nonce "$nonce" "${extra[@]}" "$2" >/dev/null
}

key_of() { # service: generate its key once, print it
  local out
  out="$(dc_run "$1" keys show --data-dir /data 2>/dev/null | tail -1 || true)"
  if ! [[ "$out" =~ ^[0-9a-f]{64}$ ]]; then
    out="$(dc_run "$1" keys generate --data-dir /data | tail -1)"
  fi
  [[ "$out" =~ ^[0-9a-f]{64}$ ]] || die "no key for $1: $out"
  echo "$out"
}

up() {
  say "1. Images (FROM scratch, built here: nothing is pulled)"
  for image in vouch/node:dev vouch/verifier:dev; do
    docker image inspect "$image" >/dev/null 2>&1 || bash docker/build.sh
  done
  docker image inspect vouch/wc:dev >/dev/null 2>&1 || bash images/build.sh wc probe
  docker image inspect vouch/probe:dev >/dev/null 2>&1 || bash images/build.sh probe

  say "2. Keys (kept in the project's volumes) and the verifier"
  verifier_key="$(key_of verifier)"
  note "verifier $verifier_key"
  dc up -d verifier
  wait_url "$vurl/healthz" "the verifier"
  peer_id="$(curl -fsS "$vurl/v1/peers" | json 'd["peer_id"]')"
  export VOUCH_BOOTSTRAP="/dns4/verifier/tcp/7000/p2p/$peer_id"
  note "its libp2p peer id $peer_id"

  say "3. Three operator nodes, bootstrapped to the verifier"
  declare -gA operator
  for i in 1 2 3; do
    operator[$i]="$(key_of "node$i")"
    note "node$i operator ${operator[$i]}"
  done
  dc up -d node1 node2 node3
  for i in 1 2 3; do
    p="VOUCH_COMPOSE_NODE${i}_PORT"
    wait_url "http://127.0.0.1:${!p}/v1/peers" "node$i"
  done

  say "4. Stake: one asset, each operator registered with its libp2p key and backed by a restaker"
  request /v/verifier.pem '{"type":"register_asset","asset":"eth","price_per_unit":"1"}' || true
  for i in 1 2 3; do
    if curl -fsS "$vurl/v1/operators/${operator[$i]}" >/dev/null 2>&1; then
      note "node$i is registered already"
      continue
    fi
    dc_run cli keys generate --data-dir "/data/r$i" >/dev/null
    request "/n$i/operator.pem" '{"type":"register_operator"}' "/n$i/p2p-key"
    request "/n$i/operator.pem" '{"type":"allocate","magnitude_ppm":1000000}'
    request "/data/r$i/verifier.pem" '{"type":"deposit","asset":"eth","amount":"1000"}'
    request "/data/r$i/verifier.pem" "{\"type\":\"delegate\",\"operator\":\"${operator[$i]}\"}"
    note "node$i: 1000 ETH-units delegated and allocated"
  done

  say "5. A job on node 1; its receipt gossiped to nodes 2 and 3"
  n1="http://127.0.0.1:$VOUCH_COMPOSE_NODE1_PORT"
  for i in 1 2 3; do
    p="VOUCH_COMPOSE_NODE${i}_PORT"
    for _ in $(seq 1 300); do
      n="$(curl -fsS "http://127.0.0.1:${!p}/v1/peers" | json 'len(d["registry"]["operators"])' 2>/dev/null || echo 0)"
      mesh="$(curl -fsS "http://127.0.0.1:${!p}/v1/peers" | json 'len(d["receipts_mesh"])' 2>/dev/null || echo 0)"
      [ "$n" = 3 ] && [ "$mesh" -ge 1 ] && break
      sleep 0.2
    done
    [ "$n" = 3 ] && [ "$mesh" -ge 1 ] || die "node$i has $n operators in its registry and $mesh mesh peers"
  done
  image="$(docker image inspect -f '{{.Id}}' vouch/wc:dev)"
  job="$(curl -fsS -X POST "$n1/v1/jobs" -H 'content-type: application/json' \
    -d "{\"image\":\"$image\",\"input\":\"hello from the compose devnet\\n\",\"nonce\":\"compose-$nonce\"}" | json 'd["job_id"]')"
  status="$(curl -fsS "$n1/v1/jobs/$job?wait_ms=30000" | json 'd["status"]')"
  [ "$status" = succeeded ] || die "job $job: $status"
  note "job $job succeeded on node 1"
  for i in 2 3; do
    p="VOUCH_COMPOSE_NODE${i}_PORT"
    for _ in $(seq 1 150); do
      seen="$(curl -fsS "http://127.0.0.1:${!p}/v1/jobs/$job/receipts" | json 'len(d["receipts"])')"
      [ "$seen" = 1 ] && break
      sleep 0.2
    done
    [ "$seen" = 1 ] || die "node$i never recorded job $job's receipt"
    note "node$i holds its receipt"
  done

  say "The compose devnet is running"
  note "verifier   $vurl   (GET /v1/registry, /v1/security, /v1/events)"
  for i in 1 2 3; do
    p="VOUCH_COMPOSE_NODE${i}_PORT"
    note "node$i      http://127.0.0.1:${!p}"
  done
  note "logs: bash scripts/compose.sh logs     stop and delete: bash scripts/compose.sh down"
}

case "${1:-up}" in
  up) up ;;
  down) dc --profile tools down -v --remove-orphans ;;
  logs) dc logs -f ;;
  ps) dc ps ;;
  *) die "unknown command '$1' (up | down | logs | ps)" ;;
esac
