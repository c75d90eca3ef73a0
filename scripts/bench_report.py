#!/usr/bin/env python3
"""Turns criterion's estimates and vouch-bench's JSON into one Markdown report (stdout) and
target/bench/report.json, then appends the self-reporting benches (gossip, verifier), each
given as its key in report.json, its title, and the JSON and Markdown files it wrote.

Usage: bench_report.py CRITERION_DIR NODE_JSON NODE_MD [--section KEY TITLE JSON MD]..."""
import json
import os
import re
import sys


def mean_ns(crit: str, *path: str) -> float:
    with open(os.path.join(crit, *path, "new", "estimates.json"), encoding="utf-8") as f:
        return json.load(f)["mean"]["point_estimate"]


def sections(args: list) -> list:
    """(key, title, json path, md path) for every `--section KEY TITLE JSON MD`."""
    out = []
    while args:
        if args[0] != "--section" or len(args) < 5:
            raise SystemExit(f"bench_report.py: expected --section KEY TITLE JSON MD, got {args[:5]}")
        out.append(tuple(args[1:5]))
        args = args[5:]
    return out


def main() -> int:
    crit, node_json, node_md = sys.argv[1:4]
    extra = sections(sys.argv[4:])
    with open(node_json, encoding="utf-8") as f:
        node = json.load(f)
    sign = mean_ns(crit, "receipts", "sign")
    verify = mean_ns(crit, "receipts", "decode_and_verify_strict")
    batch = mean_ns(crit, "receipts", "verify_batch_64") / 64
    full256 = mean_ns(crit, "step_vs_full", "full", "256")
    step256 = mean_ns(crit, "step_vs_full", "step_last", "256")
    full1024 = mean_ns(crit, "step_vs_full", "full", "1024")
    step1024 = mean_ns(crit, "step_vs_full", "step_last", "1024")
    report = {
        "receipts_per_core_per_s": {"sign": 1e9 / sign, "verify_strict": 1e9 / verify, "verify_batch_64": 1e9 / batch},
        "one_token_vs_full": {"256": step256 / full256, "1024": step1024 / full1024},
        "node": node,
    }
    for key, _, path, _ in extra:
        with open(path, encoding="utf-8") as f:
            report[key] = json.load(f)
    with open(os.path.join(os.path.dirname(node_json), "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print("# Vouch benchmarks\n")
    print("Produced by `bash scripts/bench.sh`. Every figure stands beside its baseline from the same run.\n")
    with open(node_md, encoding="utf-8") as f:
        print(f.read().replace("## ", "### "))
    print("### Receipt signing and verification (criterion, one core)\n")
    print("| operation | per receipt | receipts/s per core | vs strict single verify |")
    print("|---|---|---|---|")
    for name, ns in [("sign", sign), ("decode + strict verify (single)", verify), ("batch verify, 64 at a time", batch)]:
        print(f"| {name} | {ns / 1000:.1f} µs | {1e9 / ns:,.0f} | {verify / ns:.2f}× |")
    print("\nStrict single verification is what `SignedReceipt::verify` and the verifier use; batch verification is the candidate fast path for gossip validation.\n")
    print("### One-token recomputation vs full generation (vouch-tiny-1, criterion)\n")
    print("| generated tokens | full generation | one token (`step`) | step / full | target |")
    print("|---|---|---|---|---|")
    print(f"| 256 | {full256 / 1e6:.1f} ms | {step256 / 1e3:.0f} µs | 1/{full256 / step256:.0f} | ≤ 1/20 |")
    print(f"| 1024 | {full1024 / 1e6:.1f} ms | {step1024 / 1e3:.0f} µs | 1/{full1024 / step1024:.0f} | — |")
    for _, title, _, path in extra:
        with open(path, encoding="utf-8") as f:
            md = f.read()
        # The bench's own title becomes a subheading under the section's.
        print(f"\n## {title}\n")
        print(re.sub(r"(?m)^## ", "### ", md).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
