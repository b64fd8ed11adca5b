#!/usr/bin/env python3
"""Compares chipbench's int8 variants with ONNX Runtime's own quantization tool, on ort:cpu.

For each model and each of K calibration sets (seeded numpy samples saved as .npz, the same
file for both tools):
  - chipbench `optimize --variant int8-static --keep-float none`: every eligible layer in int8,
    like for like with ONNX Runtime's `quantize_static` (QDQ, per-channel int8 weights, uint8
    activations, percentile 99.99, after `quant_pre_process`), which also quantizes everything;
  - chipbench `--variant int8-static` with its default policy (`--keep-float auto`: first and
    last layers and the most sensitive ones in float, for accuracy);
  - `int8-dynamic` against `quantize_dynamic` (per-channel), on the first set only.
Accuracy: every model against the fp32 model on the same seeded evaluation inputs (never the
calibration ones): cosine similarity of the flattened outputs and top-1 (argmax) agreement per
output position, as the mean over the K calibration sets (a single set moves MobileNet's cosine
by about 0.002, as much as the goal's tolerance).
Latency: the models of the first set and the fp32 model in one process, round-robin (one
inference of each per round, in a new seeded random order each round, so drift, other load and
the caches a model finds hit all alike); the median of the per-inference wall times
(time.perf_counter around session.run), and for each ratio of medians a 95 % bootstrap interval
over the rounds (resampled in pairs: one round holds one inference of each model). Figures are
measured in this one run; nothing is estimated.

The goal (issue 4): our int8-static no slower than `quantize_static` (the ratio of medians, or
its interval, reaches down to 1: "same" or "faster") and its cosine no more than 0.002 lower.

usage: scripts/compare-ort-quantization.py [--chipbench target/release/chipbench]
       [--models mobilenet-v2-0.5,resnet-mini,mlp,bert-tiny] [--threads 1] [--rounds 400]
       [--calibration-sets 5] [--eval-inputs 32] [--kernels]
"""
import argparse
import collections
import contextlib
import io
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_dynamic, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The flags that decide how fast int8 and bf16/fp16 run on an x86 CPU (ONNX Runtime's MLAS picks
# its u8s8 kernels from them: AMX, then AVX-512 VNNI, then AVX-VNNI, then AVX2).
ISA_FLAGS = ["avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"]
OURS_NONE = "chipbench int8-static --keep-float none"
OURS_AUTO = "chipbench int8-static (default: auto)"
THEIRS = "onnxruntime quantize_static"
OURS_DYN = "chipbench int8-dynamic"
THEIRS_DYN = "onnxruntime quantize_dynamic"


def host():
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or "unknown CPU", None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return fields.get("model name", "unknown CPU"), set(fields.get("flags", "").split())


def inputs_of(path):
    m = onnx.load(path)
    inits = {t.name for t in m.graph.initializer}
    out = []
    for i in m.graph.input:
        if i.name in inits:
            continue
        t = i.type.tensor_type
        shape = [d.dim_value if d.dim_value > 0 else 1 for d in t.shape.dim]
        out.append((i.name, t.elem_type, shape))
    return out


def sample(rng, inputs):
    feed = {}
    for name, elem, shape in inputs:
        if elem == onnx.TensorProto.INT64:  # token ids: the suite's vocabulary is 2048
            feed[name] = rng.integers(0, 2048, size=shape, dtype=np.int64)
        else:
            feed[name] = rng.standard_normal(shape).astype(np.float32)
    return feed


class Reader(CalibrationDataReader):
    def __init__(self, samples):
        self.it = iter(samples)

    def get_next(self):
        return next(self.it, None)


def accuracy(ref, out):
    a = np.concatenate([r.ravel() for r in ref]).astype(np.float64)
    b = np.concatenate([o.ravel() for o in out]).astype(np.float64)
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    agree = [np.argmax(r, -1) == np.argmax(o, -1) for r, o in zip(ref, out)]
    top1 = float(np.mean(np.concatenate([x.ravel() for x in agree])))
    return cos, top1


def session(path, threads, optimized=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized:
        so.optimized_model_filepath = optimized
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def chipbench(args, name, recipe, npz, out, extra=()):
    subprocess.run([args.chipbench, "optimize", name, "--suite", os.path.join(ROOT, "models"),
                    "--variant", recipe, "--calibration", npz, "--accuracy-samples", "0",
                    "-o", out, *extra], check=True, stdout=subprocess.DEVNULL)


def theirs_static(pre, out, calib):
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its histogram settings
        quantize_static(pre, out, Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": 99.99})


def ratio_ci(ours, theirs, rng, resamples=2000):
    """95 % bootstrap interval of median(ours) / median(theirs), rounds resampled in pairs."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    idx = rng.integers(0, len(ours), size=(resamples, len(ours)))
    r = np.median(ours[idx], axis=1) / np.median(theirs[idx], axis=1)
    return np.percentile(r, 2.5), np.percentile(r, 97.5)


def kernels(path):
    ops = collections.Counter(n.op_type for n in onnx.load(path).graph.node)
    return ", ".join(f"{op} {n}" for op, n in sorted(ops.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chipbench", default=os.path.join(ROOT, "target/release/chipbench"))
    ap.add_argument("--models", default="mobilenet-v2-0.5,resnet-mini,mlp,bert-tiny")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=400)
    ap.add_argument("--calibration-samples", type=int, default=8)
    ap.add_argument("--calibration-sets", type=int, default=5,
                    help="accuracy is the mean over this many seeded calibration sets")
    ap.add_argument("--eval-inputs", type=int, default=32)
    ap.add_argument("--kernels", action="store_true",
                    help="print the operators of ONNX Runtime's optimized graph of each model "
                         "(what it fused into integer kernels)")
    args = ap.parse_args()
    ort.set_default_logger_severity(3)
    cpu, flags = host()
    print(f"host: {cpu}, {os.cpu_count()} logical CPU(s); onnxruntime {ort.__version__}, "
          f"CPU provider, {args.threads} intra-op thread(s)")
    if flags is not None:
        print(f"ISA flags present: {' '.join(f for f in ISA_FLAGS if f in flags) or 'none'}; "
              f"absent: {' '.join(f for f in ISA_FLAGS if f not in flags) or 'none'} "
              "(from /proc/cpuinfo)")
    print(f"{args.rounds} round-robin rounds per model; accuracy over {args.eval_inputs} seeded "
          f"inputs, mean over {args.calibration_sets} calibration set(s) of "
          f"{args.calibration_samples} samples\n")
    work = tempfile.mkdtemp(prefix="chipbench-ortq-")
    rows, summary = [], []
    boot = np.random.default_rng(99)
    for name in args.models.split(","):
        src = os.path.join(ROOT, "models", f"{name}.onnx")
        ins = inputs_of(src)
        pre = os.path.join(work, f"{name}.pre.onnx")
        quant_pre_process(src, pre)
        erng = np.random.default_rng(7)
        evals = [sample(erng, ins) for _ in range(args.eval_inputs)]
        reference = [session(src, args.threads).run(None, x)[0] for x in evals]
        accs = collections.defaultdict(list)
        timed = {"fp32": src}
        for k in range(args.calibration_sets):
            rng = np.random.default_rng(1234 + k)
            calib = [sample(rng, ins) for _ in range(args.calibration_samples)]
            npz = os.path.join(work, f"{name}.calib{k}.npz")
            np.savez(npz, **{n: np.stack([c[n] for c in calib]) for n, _, _ in ins})
            paths = {
                OURS_NONE: os.path.join(work, f"{name}.{k}.ours.none.onnx"),
                OURS_AUTO: os.path.join(work, f"{name}.{k}.ours.auto.onnx"),
                THEIRS: os.path.join(work, f"{name}.{k}.ort.static.onnx"),
            }
            chipbench(args, name, "int8-static", npz, paths[OURS_NONE], ["--keep-float", "none"])
            chipbench(args, name, "int8-static", npz, paths[OURS_AUTO])
            theirs_static(pre, paths[THEIRS], calib)
            if k == 0:
                paths[OURS_DYN] = os.path.join(work, f"{name}.ours.dynamic.onnx")
                chipbench(args, name, "int8-dynamic", npz, paths[OURS_DYN])
                paths[THEIRS_DYN] = os.path.join(work, f"{name}.ort.dynamic.onnx")
                quantize_dynamic(pre, paths[THEIRS_DYN], per_channel=True,
                                 weight_type=QuantType.QInt8)
                timed.update(paths)
            for key, path in paths.items():
                s = session(path, args.threads)
                accs[key].append(accuracy(reference, [s.run(None, x)[0] for x in evals]))
        accs["fp32"].append((1.0, 1.0))

        sessions = {}
        for key, path in timed.items():
            optimized = os.path.join(work, f"{name}.{len(sessions)}.optimized.onnx")
            sessions[key] = session(path, args.threads, optimized if args.kernels else None)
            if args.kernels:
                print(f"{name:<17} {key:<42} ONNX Runtime runs: {kernels(optimized)}")
        times = {k: [] for k in sessions}
        x = evals[0]
        for _ in range(20):
            for s in sessions.values():
                s.run(None, x)
        order = list(sessions.items())
        shuffle = np.random.default_rng(2024)
        for _ in range(args.rounds):
            # A new order every round: a model that always ran right after the same one would
            # always find the caches as that one left them (after the fp32 MLP's 2 MB of
            # weights, the next model ran 5 % slower, whichever it was).
            for i in shuffle.permutation(len(order)):
                k, s = order[i]
                t = time.perf_counter()
                s.run(None, x)
                times[k].append(time.perf_counter() - t)
        base = np.median(times["fp32"])
        for k in sessions:
            cos = np.array([a[0] for a in accs[k]])
            top1 = np.mean([a[1] for a in accs[k]])
            med = np.median(times[k])
            rows.append((name, k, med * 1e3, base / med, cos.mean(),
                         cos.std(ddof=1) if len(cos) > 1 else 0.0, top1,
                         os.path.getsize(timed[k])))
        for ours in (OURS_NONE, OURS_AUTO):
            ratio = np.median(times[ours]) / np.median(times[THEIRS])
            lo, hi = ratio_ci(times[ours], times[THEIRS], boot)
            diffs = np.array([a[0] for a in accs[ours]]) - np.array([a[0] for a in accs[THEIRS]])
            summary.append((name, ours, ratio, lo, hi, diffs.mean(),
                            diffs.std(ddof=1) if len(diffs) > 1 else 0.0,
                            base / np.median(times[ours]), base / np.median(times[THEIRS])))

    print(f"\n{'model':<17} {'variant':<42} {'p50 ms':>8} {'x fp32':>7} {'cosine':>8} "
          f"{'(sd)':>8} {'top-1':>6} {'bytes':>9}")
    for r in rows:
        print(f"{r[0]:<17} {r[1]:<42} {r[2]:8.4f} {r[3]:7.2f} {r[4]:8.5f} ({r[5]:6.5f}) "
              f"{r[6]:6.3f} {r[7]:9d}")
    print("\nours vs quantize_static: latency ratio = our p50 / their p50 (95 % bootstrap interval; "
          "<= 1 is as fast or faster); cosine difference = ours - theirs (mean over the "
          "calibration sets, sd of the paired differences); x fp32 = int8 speedup over fp32, "
          "ours / theirs")
    for name, ours, ratio, lo, hi, d, sd, ours_x, theirs_x in summary:
        # "No worse" in latency: not slower beyond the noise, i.e. the interval reaches 1.
        speed = "faster" if hi < 1.0 else "slower" if lo > 1.0 else "same"
        met = speed != "slower" and d >= -0.002
        print(f"{name:<17} {ours:<42} latency ratio {ratio:.3f} [{lo:.3f}, {hi:.3f}] {speed:<6} "
              f"cosine difference {d:+.5f} (sd {sd:.5f})  x fp32 {ours_x:.2f} / {theirs_x:.2f}  "
              f"goal {'met' if met else 'missed'}")


if __name__ == "__main__":
    sys.exit(main())
