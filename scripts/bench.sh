#!/usr/bin/env bash
# Every benchmark in one command. Writes target/bench/report.md (Markdown, the source of
# BENCHMARKS.md) and target/bench/report.json. Each figure is measured next to its baseline
# in the same run; ratios, not absolute times, are what carries over between machines.
#
#   bash scripts/bench.sh            # full run (about 9 minutes on 2 cores)
#   BENCH_QUICK=1 bash scripts/bench.sh   # fewer samples, for a smoke check
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="$repo/target/bench"
mkdir -p "$out"
quick="${BENCH_QUICK:-}"

echo "==> building images and the bench tool" >&2
bash images/build.sh >&2
cargo build --release -p vouch-node --bins >&2

crit=(-- --warm-up-time 1 --measurement-time "${quick:+1}${quick:-4}")
echo "==> criterion: receipt signing and verification" >&2
cargo bench -p vouch-proto --bench receipts "${crit[@]}" >&2
echo "==> criterion: one-token recomputation vs full generation" >&2
cargo bench -p vouch-inference --bench step_vs_full "${crit[@]}" >&2

echo "==> end to end: jobs and inference through vouch-node" >&2
if [ -n "$quick" ]; then
  "${CARGO_TARGET_DIR:-$repo/target}/release/vouch-bench" --suite all --runs 8 --jobs 8 --requests 8 --memory-requests 100,300,1000 --cold-requests 3 --json "$out/node.json" >"$out/node.md"
else
  "${CARGO_TARGET_DIR:-$repo/target}/release/vouch-bench" --suite all --runs 30 --jobs 24 --requests 40 --json "$out/node.json" >"$out/node.md"
fi

echo "==> gossip: 25-node loopback network (vouch-net)" >&2
cargo bench -p vouch-net --bench gossip -- ${quick:+--quick} --json "$out/gossip.json" >"$out/gossip.md"

echo "==> verifier: durable ledger events/s, equivocation checks, disputes vs one execution, one-token vs full disputes" >&2
cargo bench -p vouch-verifier --bench verifier -- ${quick:+--quick} --json "$out/verifier.json" >"$out/verifier.md"

echo "==> verifier memory and start-up against ledger size (1k / 10k / 100k events)" >&2
cargo bench -p vouch-verifier --bench memory -- ${quick:+--quick} --json "$out/verifier-memory.json" >"$out/verifier-memory.md"

python3 scripts/bench_report.py "${CARGO_TARGET_DIR:-$repo/target}/criterion" "$out/node.json" "$out/node.md" \
  --section gossip "Gossip: 25-node loopback network" "$out/gossip.json" "$out/gossip.md" \
  --section verifier "Verifier: ledger events/s, equivocation proofs, wrong-result and one-token disputes" "$out/verifier.json" "$out/verifier.md" \
  --section verifier_memory "Verifier: memory and start-up against ledger size" "$out/verifier-memory.json" "$out/verifier-memory.md" \
  >"$out/report.md"
echo "==> wrote $out/report.md and $out/report.json" >&2
cat "$out/report.md"
