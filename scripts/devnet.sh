#!/usr/bin/env bash
# The main job: a local Vouch network, end to end.
#
#   bash scripts/devnet.sh [up]   build everything, start the network, run the narrated demo,
#                                 leave it running and print URLs and example commands
#   bash scripts/devnet.sh stop   stop it (state is kept in .devnet/)
#   bash scripts/devnet.sh logs   follow the logs
#   bash scripts/devnet.sh reset  stop it and delete its state
#   bash scripts/devnet.sh check-stopped
#                                 exit 1 if any devnet process or workload container is left
#
# The network: a verifier (collateral ledger, registry), three operator nodes joined by
# libp2p gossip on 127.0.0.1 — node 3 is dishonest on purpose (--fault wrong-output) — and
# a watcher (vouch-verifier watch) that re-runs every receipt it hears. `up` starts from a
# clean state and fails unless the dishonest operator ends slashed and jailed and the
# honest operators' stake is untouched.
#
# Environment: VOUCH_DEVNET_PORT (default 8080: nodes on 8080-8082, verifier on 8090),
# VOUCH_DEVNET_P2P_PORT (default 7100: verifier 7100, nodes 7101-7103),
# VOUCH_PROFILE (release | debug, default release), VOUCH_DEVNET_NO_BUILD (set: use the
# binaries already built for that profile, as CI does after the tests built them).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
state="$repo/.devnet"
port="${VOUCH_DEVNET_PORT:-8080}"
p2p="${VOUCH_DEVNET_P2P_PORT:-7100}"
vport=$((port + 10))
vurl="http://127.0.0.1:$vport"
network=vouch-devnet
profile="${VOUCH_PROFILE:-release}"
url="http://127.0.0.1:$port"
bin="${CARGO_TARGET_DIR:-$repo/target}/$profile"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }

stop() {
  for pidfile in "$state"/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    name=$(basename "$pidfile" .pid)
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      echo "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
  done
}

# Nothing of the devnet may be left running: its processes (by the pid files' commands and
# by data directory), its ports, the workload containers its nodes started.
check_stopped() {
  local left=0
  if pgrep -af "$state/" >/dev/null 2>&1; then
    echo "devnet processes still running:" >&2; pgrep -af "$state/" >&2; left=1
  fi
  for p in $port $((port + 1)) $((port + 2)) $vport $((vport + 1)); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/healthz"; then
      echo "something still answers on 127.0.0.1:$p" >&2; left=1
    fi
  done
  for i in 1 2 3; do
    [ -f "$state/node$i/operator.pem" ] || continue
    local op
    op=$("$bin/vouch-node" keys show --data-dir "$state/node$i" 2>/dev/null || true)
    [ -n "$op" ] || continue
    local c
    c=$(docker ps -aq --filter "label=vouch.node=${op:0:16}" 2>/dev/null || true)
    [ -z "$c" ] || { echo "node $i left workload containers: $c" >&2; left=1; }
  done
  [ "$left" = 0 ] && echo "devnet stopped: no process, port or container left"
  return "$left"
}

wait_http() { # url logfile what
  for _ in $(seq 1 150); do curl -fsS "$1/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  tail -20 "$2"; echo "$3 did not start" >&2; exit 1
}

# request KEYFILE BODY [PEERKEY]: sign a ledger request and send it to the verifier.
request() {
  local extra=()
  [ -n "${3:-}" ] && extra=(--peer-key "$3")
  "$bin/vouch-verifier" request --url "$vurl" --network "$network" --key "$1" "${extra[@]}" "$2" >/dev/null
  sleep 0.002 # nonces default to the time in ms
}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }

up() {
  stop
  # From scratch every time: the story needs fresh stake (a slashed, jailed operator 3 from
  # an earlier run would change it).
  rm -rf "$state"
  mkdir -p "$state"
  if [ -n "${VOUCH_DEVNET_NO_BUILD:-}" ] && [ -x "$bin/vouch-node" ] && [ -x "$bin/vouch-verifier" ]; then
    say "Using the binaries in $bin (VOUCH_DEVNET_NO_BUILD)"
  else
    say "Building vouch-node and vouch-verifier ($profile)"
    if [ "$profile" = release ]; then cargo build --release -p vouch-node -p vouch-verifier
    else cargo build -p vouch-node -p vouch-verifier; fi
  fi
  say "Building workload images (static binaries in FROM scratch images; nothing is pulled)"
  bash images/build.sh

  say "Keys: a verifier key, three operator keys, three restaker keys"
  [ -f "$state/verifier/verifier.pem" ] || "$bin/vouch-verifier" keys generate --data-dir "$state/verifier" >/dev/null
  for i in 1 2 3; do
    [ -f "$state/node$i/operator.pem" ] || "$bin/vouch-node" keys generate --data-dir "$state/node$i" >/dev/null
    [ -f "$state/restaker$i/verifier.pem" ] || "$bin/vouch-verifier" keys generate --data-dir "$state/restaker$i" >/dev/null
  done
  verifier_key=$("$bin/vouch-verifier" keys show --data-dir "$state/verifier")
  op1=$("$bin/vouch-node" keys show --data-dir "$state/node1")
  op2=$("$bin/vouch-node" keys show --data-dir "$state/node2")
  op3=$("$bin/vouch-node" keys show --data-dir "$state/node3")
  operator=$op1
  note "verifier   $verifier_key"
  note "operator 1 $op1 (honest)"
  note "operator 2 $op2 (honest)"
  note "operator 3 $op3 (dishonest: signs wrong outputs on purpose)"

  say "Starting vouch-verifier on $vurl (gossip on tcp/$p2p)"
  nohup "$bin/vouch-verifier" run --data-dir "$state/verifier" --listen "127.0.0.1:$vport" --network "$network" \
    --min-stake-value 1 --challenge-window-ms 600000 --withdrawal-delay-ms 1200000 \
    --beacon-epoch-ms 2000 \
    --p2p-listen "/ip4/127.0.0.1/tcp/$p2p" --no-mdns >>"$state/verifier.log" 2>&1 &
  echo $! >"$state/verifier.pid"
  wait_http "$vurl" "$state/verifier.log" vouch-verifier
  vpeer=$(curl -fsS "$vurl/v1/peers" | json 'd["peer_id"]')
  boot="/ip4/127.0.0.1/tcp/$p2p/p2p/$vpeer"
  note "verifier peer id $vpeer"

  for i in 1 2 3; do
    nurl="http://127.0.0.1:$((port + i - 1))"
    fault=()
    [ "$i" = 3 ] && fault=(--fault wrong-output)
    say "Starting vouch-node $i on $nurl (gossip on tcp/$((p2p + i)))"
    nohup "$bin/vouch-node" run --data-dir "$state/node$i" --listen "127.0.0.1:$((port + i - 1))" --network "$network" \
      --p2p-listen "/ip4/127.0.0.1/tcp/$((p2p + i))" --p2p-bootstrap "$boot" --no-mdns \
      --verifier-url "$vurl" "${fault[@]}" >>"$state/node$i.log" 2>&1 &
    echo $! >"$state/node$i.pid"
    wait_http "$nurl" "$state/node$i.log" "vouch-node $i"
  done
  url="http://127.0.0.1:$port"
  note "health: $(curl -fsS "$url/healthz")"

  say "Seeding stake: each operator registers (signed by its key and its libp2p key), allocates; a restaker deposits 1000 ETH-units and delegates to it"
  active=$(curl -fsS "$vurl/v1/registry" | json 'sum(1 for o in d["operators"] if o["active"])')
  if [ "$active" -lt 3 ]; then
    request "$state/verifier/verifier.pem" '{"type":"register_asset","asset":"eth","price_per_unit":"1"}' || true
    for i in 1 2 3; do
      opk=$("$bin/vouch-node" keys show --data-dir "$state/node$i")
      request "$state/node$i/operator.pem" '{"type":"register_operator"}' "$state/node$i/p2p-key"
      request "$state/node$i/operator.pem" '{"type":"allocate","magnitude_ppm":1000000}'
      request "$state/restaker$i/verifier.pem" '{"type":"deposit","asset":"eth","amount":"1000"}'
      request "$state/restaker$i/verifier.pem" '{"type":"delegate","operator":"'"$opk"'"}'
    done
  fi
  curl -fsS "$vurl/v1/registry" | json '"\n".join("    operator %s… active=%s stake=%s" % (o["operator"][:16], o["active"], o["stake_value"]) for o in d["operators"])'
  note "economic security (vouch-verifier security; docs/security.md): a wrong result slashes half, γ = 0.1,"
  note "so each operator may hold open jobs worth at most 1000 × 0.5 / 1.1 = 454:"
  { "$bin/vouch-verifier" security --url "$vurl" || true; } | sed 's/^/    /'
  stake_before=$(curl -fsS "$vurl/v1/registry" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({o["operator"]: o["stake_value"] for o in d["operators"]}))')

  wport=$((vport + 1))
  say "Starting the watcher (vouch-verifier watch): it hears every receipt, re-runs each one (sample rate 1) and disputes a wrong one with restaker 1's deposit as bond; status on http://127.0.0.1:$wport/v1/watch"
  nohup "$bin/vouch-verifier" watch --verifier-url "$vurl" --p2p-listen "/ip4/127.0.0.1/tcp/$((p2p + 4))" \
    --p2p-bootstrap "$boot" --no-mdns --challenger-key "$state/restaker1/verifier.pem" \
    --bond-asset eth --bond-amount 10 --sample-rate 1 --listen "127.0.0.1:$wport" \
    --data-dir "$state/watcher" >>"$state/watcher.log" 2>&1 &
  echo $! >"$state/watcher.pid"
  wait_http "http://127.0.0.1:$wport" "$state/watcher.log" "the watcher"
  note "waiting for the nodes to read the registry and form the gossip mesh …"
  for _ in $(seq 1 150); do
    ready=0
    for i in 1 2 3; do
      n=$(curl -fsS "http://127.0.0.1:$((port + i - 1))/v1/peers" | json 'len(d["registry"]["operators"]) == 3 and len(d["receipts_mesh"]) > 0')
      [ "$n" = True ] && ready=$((ready + 1))
    done
    [ "$ready" = 3 ] && break
    sleep 0.2
  done
  [ "$ready" = 3 ] || { echo "the nodes did not all join the network; see bash scripts/devnet.sh logs" >&2; exit 1; }
  sleep 2

  say "1. A client submits a job: count the words of a sentence in vouch/wc:dev"
  sub=$(curl -fsS -X POST "$url/v1/jobs" -H 'content-type: application/json' \
    -d '{"image":"vouch/wc:dev","input":"verifiable compute, vouched for\n","nonce":"'"demo-$(date +%s%N)"'"}')
  id=$(echo "$sub" | json 'd["job_id"]')
  note "job id:       $id"
  note "image tag vouch/wc:dev resolved to $(echo "$sub" | json 'd["spec"]["image"]')"
  job=$(curl -fsS "$url/v1/jobs/$id?wait_ms=30000")
  echo "$job" >"$state/last-job.json"
  curl -fsS "$url/v1/jobs/$id/output" -o "$state/last-output.bin"
  note "status:       $(echo "$job" | json 'd["status"]')"
  note "output:       $(cat "$state/last-output.bin")"
  note "receipt:      sequence $(echo "$job" | json 'd["receipt"]["sequence"]'), output $(echo "$job" | json 'd["receipt"]["output_digest"]')"
  note "signature:    $(echo "$job" | json 'd["receipt"]["signature"][:32]')…"

  say "2. The client checks the receipt with only the operator's public key"
  "$bin/vouch-node" receipt verify --file "$state/last-job.json" --operator "$operator" --output "$state/last-output.bin" | sed 's/^/    /'
  if python3 -c 'import cryptography' 2>/dev/null; then
    note "and independently, in Python, from proto/SPEC.md alone:"
    python3 proto/tools/vouch_verify.py job --file "$state/last-job.json" --output-file "$state/last-output.bin" --operator "$operator" | sed 's/^/    /'
  fi

  say "3. Verifiable inference through the OpenAI API (model vouch-tiny-1, warm)"
  req='{"model":"vouch-tiny-1","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Tell me about verifiable computing."}],"max_tokens":48,"temperature":0.8,"seed":7}'
  echo "$req" >"$state/last-chat-request.json"
  curl -fsS "$url/v1/chat/completions" -H 'content-type: application/json' -d "$req" >"$state/last-chat.json"
  note "answer:        $(json 'd["choices"][0]["message"]["content"]' <"$state/last-chat.json")"
  note "usage:         $(json 'd["usage"]' <"$state/last-chat.json")"
  note "signed model:  $(json 'd["vouch"]["receipt"]["image"]' <"$state/last-chat.json")"
  note "trace:         $(json 'd["vouch"]["receipt"]["trace_len"]' <"$state/last-chat.json") token leaves under root $(json 'd["vouch"]["receipt"]["trace_root"][:16]' <"$state/last-chat.json")…"
  if python3 -c 'import cryptography' 2>/dev/null; then
    model_image=$(curl -fsS "$url/v1/models" | json 'd["data"][0]["vouch"]["image"]')
    note "checked independently in Python, against the model image GET /v1/models names:"
    python3 proto/tools/vouch_verify.py chat --response "$state/last-chat.json" --request "$state/last-chat-request.json" \
      --operator "$operator" --model-image "$model_image" | sed 's/^/    /'
  else
    "$bin/vouch-verifier" check <<<"$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["vouch"]; print(json.dumps({"receipt": d["receipt"], "spec": d["spec"]}))' "$state/last-chat.json")" | sed 's/^/    /'
  fi

  say "4. Gossip: every node and the verifier saw that receipt"
  for i in 2 3; do
    seen=0
    for _ in $(seq 1 50); do
      seen=$(curl -fsS "http://127.0.0.1:$((port + i - 1))/v1/jobs/$id/receipts" | json 'len(d["receipts"])')
      [ "$seen" -ge 1 ] && break; sleep 0.1
    done
    note "node $i: $seen receipt(s) for job ${id:0:16}…"
  done
  note "verifier: $(curl -fsS "$vurl/v1/receipts?limit=1000" | json 'd["heard"]') receipt(s) heard so far"

  say "5. A replicated job (replicas: 3): each operator runs it, commits to its signed result, then reveals"
  rid=$(curl -fsS -X POST "$url/v1/jobs" -H 'content-type: application/json' \
    -d '{"image":"vouch/wc:dev","input":"three operators, one answer\n","replicas":3,"nonce":"'"demo-$(date +%s%N)"'"}' | json 'd["job_id"]')
  note "job id: $rid"
  for _ in $(seq 1 300); do
    phase=$(curl -fsS "$url/v1/jobs/$rid/replication" | json 'd["phase"]')
    [ "$phase" = complete ] && break; sleep 0.2
  done
  rep=$(curl -fsS "$url/v1/jobs/$rid/replication")
  echo "$rep" >"$state/last-replication.json"
  echo "$rep" | json '"\n".join("    %s… %s: output %s" % (o["operator"][:16], o["status"], (o["receipt"] or {}).get("output_digest", "-")[:24]) for o in d["operators"])'
  note "outcome: $(echo "$rep" | json 'd["outcome"]'); disagreeing: $(echo "$rep" | json '[o[:16] for o in d["disagreeing"]]')"
  note "the dishonest operator 3 (${op3:0:16}…) is caught by its own signed, revealed receipt"

  say "6. The watcher heard operator 3's receipt, re-ran the job in its own Docker and got another answer: it disputes the receipt, bonding 10 ETH-units of restaker 1; the verifier re-runs the job twice and rules"
  stake() { curl -fsS "$vurl/v1/operators/$1" | json '"stake %s, jailed %s" % (d["slashable_stake"].get("eth", "0"), d["jailed"])'; }
  watch_url="http://127.0.0.1:$wport/v1/watch"
  dstatus=""
  for _ in $(seq 1 600); do
    dstatus=$(curl -fsS "$watch_url" | json 'next((x["status"] for x in d["recent_disputes"] if x["operator"] == "'"$op3"'"), "")')
    case "$dstatus" in ""|pending) sleep 0.2 ;; *) break ;; esac
  done
  curl -fsS "$watch_url" | json '"heard %d receipts, re-ran %d: %d matched, %d did not (skipped: %s)" % (d["heard"], d["reexecuted"], d["matched"], d["mismatched"], d["skipped"] or "none")' | sed 's/^/    /'
  did=$(curl -fsS "$watch_url" | json 'next(x["dispute"] for x in d["recent_disputes"] if x["operator"] == "'"$op3"'")')
  curl -fsS "$vurl/v1/disputes/$did" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["verdict"]))' >"$state/last-verdict.json"
  note "dispute ${did:0:16}…: $dstatus — $(json 'd["reason"]' <"$state/last-verdict.json")"
  [ "$dstatus" = slashed ] || { echo "expected the watcher's dispute to slash operator 3, got '$dstatus'" >&2; exit 1; }
  note "receipt claimed output $(json 'd["receipt"]["output_digest"][:24]' <"$state/last-verdict.json")…, both re-runs gave $(json 'd["runs"][0]["output_digest"][:24]' <"$state/last-verdict.json")…"
  note "now: operator 3 $(stake "$op3"); operator 1 $(stake "$op1")"
  note "(half of operator 3's stake is slashed: 10% of it is the bounty, paid to the watcher's key, restaker 1, whose"
  note " deposit is delegated to operator 1; the rest is burned; operator 3 is jailed)"
  note "a second challenger (restaker 2, with the CLI) reporting the same receipt:"
  python3 - "$state/last-replication.json" "$op3" "$url/v1/jobs/$rid" >"$state/dispute-job.json" <<'PY'
import json, sys, urllib.request
rep = json.load(open(sys.argv[1]))
job = json.load(urllib.request.urlopen(sys.argv[3]))
bad = next(o for o in rep["operators"] if o["operator"] == sys.argv[2])
print(json.dumps({"spec": job["spec"], "receipt": bad["receipt"]}))
PY
  "$bin/vouch-verifier" dispute result --url "$vurl" --challenger-key "$state/restaker2/verifier.pem" \
    --job "$state/dispute-job.json" --node "$url" --bond-asset eth --bond-amount 10 >"$state/second-verdict.json"
  note "verdict: $(json 'd["outcome"]' <"$state/second-verdict.json") (one offence is slashed once; restaker 2's bond is returned)"
  note "the slash is gossiped as a signed verdict; the nodes drop operator 3 from their registry:"
  for _ in $(seq 1 50); do
    n=$(curl -fsS "$url/v1/peers" | json 'len(d["registry"]["operators"])')
    [ "$n" = 2 ] && break; sleep 0.2
  done
  note "node 1 now accepts gossip from $n operators"
  note "security figures after the slash: operator 3 is jailed (cap 0) and only the honest stake backs the service"
  { "$bin/vouch-verifier" security --url "$vurl" || true; } | sed 's/^/    /'
  # The story's promise, checked: the dishonest operator slashed and jailed, the honest
  # operators' stake exactly what it was.
  python3 - "$vurl" "$op1" "$op2" "$op3" "$stake_before" <<'PY' || { echo "devnet check failed" >&2; exit 1; }
import json, sys, urllib.request
vurl, op1, op2, op3, before = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
reg = {o["operator"]: o for o in json.load(urllib.request.urlopen(vurl + "/v1/registry"))["operators"]}
assert reg[op3]["jailed_by_slash"] and not reg[op3]["active"], reg[op3]
assert int(reg[op3]["stake_value"]) < int(before[op3]), (reg[op3], before[op3])
# Nothing taken from the honest operators (operator 1's stake grows by the bounty paid to
# restaker 1, who delegates to it).
for op in (op1, op2):
    assert int(reg[op]["stake_value"]) >= int(before[op]) and reg[op]["active"], (reg[op], before[op])
    assert not reg[op]["jailed_by_slash"], reg[op]
print("    checked: operator 3 slashed (stake %s -> %s) and jailed; nothing taken from operators 1 and 2 (%s -> %s, %s -> %s)"
      % (before[op3], reg[op3]["stake_value"], before[op1], reg[op1]["stake_value"], before[op2], reg[op2]["stake_value"]))
PY

  say "7. A hostile workload: a memory hog is stopped by the sandbox and gets no receipt"
  hid=$(curl -fsS -X POST "$url/v1/jobs" -H 'content-type: application/json' \
    -d '{"image":"vouch/hostile-memhog:dev","limits":{"memory_bytes":67108864},"nonce":"'"demo-$(date +%s%N)"'"}' | json 'd["job_id"]')
  hjob=$(curl -fsS "$url/v1/jobs/$hid?wait_ms=30000")
  note "status: $(echo "$hjob" | json 'd["status"]') — $(echo "$hjob" | json 'd.get("reason")')"
  note "health after: $(curl -fsS "$url/healthz")"

  say "8. Bad input gets a clear error"
  note "$(curl -sS -X POST "$url/v1/jobs" -H 'content-type: application/json' -d '{"image":"vouch/not-here:dev"}')"

  say "The network is running"
  cat <<EOT
    node APIs:     $url, http://127.0.0.1:$((port + 1)), http://127.0.0.1:$((port + 2))   (jobs: POST /v1/jobs; peers: GET /v1/peers)
    verifier:      $vurl        (explorer: open it in a browser; GET /v1/registry, /v1/security, /v1/disputes, /v1/receipts, /v1/events)
    watcher:       http://127.0.0.1:$wport/v1/watch
    OpenAI API:    $url/v1        (base_url for any OpenAI SDK; model vouch-tiny-1)
    metrics:       $url/metrics
    logs:          bash scripts/devnet.sh logs     ($state/*.log)
    stop / reset:  bash scripts/devnet.sh stop  |  bash scripts/devnet.sh reset

    try:
      curl -s -X POST $url/v1/jobs -H 'content-type: application/json' \\
           -d '{"image":"vouch/jsonx:dev","command":["pick","a.b"],"input":"{\"a\":{\"b\":[1,2]}}"}'
      curl -s "$url/v1/jobs/<job_id>?wait_ms=10000" | $bin/vouch-node receipt verify --operator $operator
EOT
}

case "${1:-up}" in
  up) up ;;
  stop) stop ;;
  logs) tail -F "$state"/*.log ;;
  reset) stop; rm -rf "$state"; echo "removed $state" ;;
  check-stopped) check_stopped ;;
  *) echo "usage: $0 [up|stop|logs|reset|check-stopped]" >&2; exit 2 ;;
esac
