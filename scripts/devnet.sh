#!/usr/bin/env bash
# The main job: a local Vouch network, end to end.
#
#   bash scripts/devnet.sh [up]   build everything, start the network, run the narrated demo,
#                                 leave it running and print URLs and example commands
#   bash scripts/devnet.sh stop   stop it (state is kept in .devnet/)
#   bash scripts/devnet.sh logs   follow the logs
#   bash scripts/devnet.sh reset  stop it and delete its state
#
# Environment: VOUCH_DEVNET_PORT (default 8080), VOUCH_PROFILE (release | debug, default release).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
state="$repo/.devnet"
port="${VOUCH_DEVNET_PORT:-8080}"
profile="${VOUCH_PROFILE:-release}"
url="http://127.0.0.1:$port"
bin="${CARGO_TARGET_DIR:-$repo/target}/$profile"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }

stop() {
  if [ -f "$state/node1.pid" ]; then
    pid=$(cat "$state/node1.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      echo "stopped vouch-node (pid $pid)"
    fi
    rm -f "$state/node1.pid"
  fi
}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }

up() {
  stop
  mkdir -p "$state"
  say "Building vouch-node and vouch-verifier ($profile)"
  if [ "$profile" = release ]; then cargo build --release -p vouch-node -p vouch-verifier
  else cargo build -p vouch-node -p vouch-verifier; fi
  say "Building workload images (static binaries in FROM scratch images; nothing is pulled)"
  bash images/build.sh

  say "Operator key"
  if [ ! -f "$state/node1/operator.pem" ]; then
    "$bin/vouch-node" keys generate --data-dir "$state/node1" >/dev/null
    note "generated $state/node1/operator.pem (PKCS#8 PEM, mode 0600)"
  fi
  operator=$("$bin/vouch-node" keys show --data-dir "$state/node1")
  note "operator public key: $operator"

  say "Starting vouch-node on $url"
  nohup "$bin/vouch-node" run --data-dir "$state/node1" --listen "127.0.0.1:$port" --network vouch-devnet \
    >>"$state/node1.log" 2>&1 &
  echo $! >"$state/node1.pid"
  for _ in $(seq 1 100); do curl -fsS "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "$url/healthz" >/dev/null || { tail -20 "$state/node1.log"; echo "vouch-node did not start" >&2; exit 1; }
  note "health: $(curl -fsS "$url/healthz")"

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

  say "4. A hostile workload: a memory hog is stopped by the sandbox and gets no receipt"
  hid=$(curl -fsS -X POST "$url/v1/jobs" -H 'content-type: application/json' \
    -d '{"image":"vouch/hostile-memhog:dev","limits":{"memory_bytes":67108864},"nonce":"'"demo-$(date +%s%N)"'"}' | json 'd["job_id"]')
  hjob=$(curl -fsS "$url/v1/jobs/$hid?wait_ms=30000")
  note "status: $(echo "$hjob" | json 'd["status"]') — $(echo "$hjob" | json 'd.get("reason")')"
  note "health after: $(curl -fsS "$url/healthz")"

  say "5. Bad input gets a clear error"
  note "$(curl -sS -X POST "$url/v1/jobs" -H 'content-type: application/json' -d '{"image":"vouch/not-here:dev"}')"

  say "The network is running"
  cat <<EOT
    node API:      $url           (jobs: POST /v1/jobs, GET /v1/jobs/{id}?wait_ms=…)
    OpenAI API:    $url/v1        (base_url for any OpenAI SDK; model vouch-tiny-1)
    metrics:       $url/metrics
    logs:          bash scripts/devnet.sh logs     ($state/node1.log)
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
  *) echo "usage: $0 [up|stop|logs|reset]" >&2; exit 2 ;;
esac
