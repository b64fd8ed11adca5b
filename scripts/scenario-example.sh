#!/usr/bin/env bash
# The README's scenario example, measured on this host and printed as Markdown tables: ONNX
# Runtime's CPU provider (ort:cpu) running mobilenet-v2-0.5 offline at batch 1, 4, 16 and
# concurrency 1, 2 (one intra-op thread per session), then the peak query rate of every suite
# model under p99 = 10 ms (server scenario, --find-peak, one worker at ONNX Runtime's default
# threads). Each figure is a chipbench measurement; the tables name the CPU from the run's host
# record. About 5 minutes on a 2-core host (a probe lasts 2 s at the least, 30 s at the most: a
# search halving to rates whose 459 queries take longer ends there, with that reason).
#
# Usage: scripts/scenario-example.sh [OUT_DIR]
#   CHIPBENCH=path/to/chipbench uses that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CHIPBENCH:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin="${CARGO_TARGET_DIR:-target}/release/chipbench"
fi
out=${1:-$(mktemp -d -t scenario-example.XXXXXX)}
common=(--quiet --no-history --backend ort:cpu)

"$bin" bench "${common[@]}" --model mobilenet-v2-0.5 --threads 1 --scenario offline \
  --batch 1,4,16 --concurrency 1,2 --min-query-duration 3s --out "$out/offline" || true
"$bin" bench "${common[@]}" --scenario server --latency-bound p99=10ms --find-peak \
  --min-query-duration 2s --cell-timeout 30s --out "$out/peak" || true

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]

def load(name):
    try:
        with open(f"{out}/{name}/run.json") as f:
            return json.load(f)
    except OSError as e:
        sys.exit(f"{out}/{name}/run.json: {e} (the run failed; see above)")

offline, peak = load("offline"), load("peak")
host = offline["host"]
print(f"Measured on this host: {host['cpu_brand']}, {host['logical_cores']} logical cores, "
      f"{offline['started_at']} (chipbench {offline['tool_version']}; figures of one run, "
      "as noisy as the host was then).\n")
print("ort:cpu, mobilenet-v2-0.5, offline, one intra-op thread per session:\n")
print("| batch | concurrency | samples/s (95 % CI) | p50 / p99 ms per query | CPU ms per sample | sessions' memory |")
print("|---|---|---|---|---|---|")
for c in offline["cells"]:
    s = c.get("scenario_run")
    if c["status"] != "ok" or not s:
        print(f"| {c.get('scenario_point', '?')} | | failed: {c.get('error')} | | | |")
        continue
    t, q = s["throughput"], s["query_latency_ms"]
    mem, cpu = s.get("sessions_memory_bytes"), c.get("cpu_ms_per_inference")
    print(f"| {s['batch']} | {s['concurrency']} | {t['samples_per_s']:.0f} "
          f"({t['ci95'][0]:.0f}–{t['ci95'][1]:.0f}) | {q['p50']:.2f} / {q['p99']:.2f} | "
          f"{'-' if cpu is None else f'{cpu:.2f}'} | {'-' if mem is None else f'{mem / 2**20:.0f} MiB'} |")
print("\nPeak QPS under p99 = 10 ms (server, Poisson arrivals, one worker at ONNX Runtime's default "
      "threads, --find-peak: bracketing then bisection to 2 %, each probe at least 459 queries and 2 s):\n")
print("| model | peak QPS (p99 ≤ 10 ms) | first INVALID | cells | search ended |")
print("|---|---|---|---|---|")
fmt = lambda q: "none" if q is None else f"{q:g}"
for p in peak.get("peaks", []):
    ended = f"within {p['tolerance'] * 100:g} %" if p["converged"] else f"not converged: {p['stopped']}"
    print(f"| {p['model']} | {fmt(p['valid_qps'])} | {fmt(p['invalid_qps'])} | {len(p['cells'])} | {ended} |")
PY
echo
echo "runs: $out/offline/run.json, $out/peak/run.json"
