#!/usr/bin/env python3
"""Recomputes chipbench's task-level accuracy with numpy, independently of its Rust decoders.

    chipbench optimize zoo:NAME --variant RECIPE --out v.onnx --dump-outputs dump.json
    python3 scripts/check-task-accuracy.py dump.json [more.json ...]

Each dump holds the fp32 model's and the variant's outputs on the accuracy check's samples, the
zoo catalog's decoding and the accuracy chipbench computed from them. This script decodes the same
outputs its own way (top-k, greedy CTC and edit distance, thresholds, PicoDet boxes with NMS and
IoU matching) and compares every figure with chipbench's: they must agree to 1e-9 (they are ratios
of counts). Exit status 1 when any differs, 2 on a bad file.
"""

import json
import sys

import numpy as np


def tensors(samples, names, name):
    """The output `name` of every sample, as float32 arrays of their shapes."""
    i = names.index(name)
    return [np.asarray(s[i]["values"], dtype=np.float32).reshape(s[i]["shape"]) for s in samples]


def fraction(part, whole):
    return 1.0 if whole == 0 else part / whole


def top_k(reference, actual, d):
    rows = top1 = topk = 0
    for r, a in zip(reference, actual):
        classes = max(r.shape[-1] if r.ndim else 1, 1)
        for rr, aa in zip(r.reshape(-1, classes), a.reshape(-1, classes)):
            expected = int(np.argmax(rr))  # the first of equal maxima, as chipbench
            order = np.argsort(-aa, kind="stable")[: max(d["k"], 1)]
            rows += 1
            top1 += int(order[0] == expected)
            topk += int(expected in order)
    return {"top1_agreement": fraction(top1, rows), "topk_agreement": fraction(topk, rows), "k": d["k"]}


def ctc(scores, blank):
    labels, previous = [], None
    for best in np.argmax(scores, axis=-1):
        if best != previous and best != blank:
            labels.append(int(best))
        previous = best
    return labels


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a):
        diagonal, row[0] = row[0], i + 1
        for j, y in enumerate(b):
            diagonal, row[j + 1] = row[j + 1], min(diagonal + (x != y), row[j] + 1, row[j + 1] + 1)
    return row[len(b)]


def ctc_greedy(reference, actual, d):
    strings = exact = edits = length = 0
    for r, a in zip(reference, actual):
        if d["time_axis"] == 0:  # [time, batch, classes] -> [batch, time, classes]
            r, a = r.transpose(1, 0, 2), a.transpose(1, 0, 2)
        for rr, aa in zip(r, a):
            x, y = ctc(rr, d["blank"]), ctc(aa, d["blank"])
            strings += 1
            exact += int(x == y)
            edits += edit_distance(x, y)
            length += len(x)
    cer = float(edits > 0) if length == 0 else edits / length
    return {"exact_match": fraction(exact, strings), "cer": cer}


def threshold(reference, actual, d):
    t = np.float32(d["threshold"])
    same = sum(int(np.sum((r > t) == (a > t))) for r, a in zip(reference, actual))
    n = sum(r.size for r in reference)
    return {"decision_agreement": fraction(same, n)}


def iou(a, b):
    w = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    h = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    area = lambda r: max(r[2] - r[0], 0.0) * max(r[3] - r[1], 0.0)
    union = area(a) + area(b) - w * h
    return 0.0 if union <= 0 else w * h / union


def picodet_boxes(scores, boxes, d):
    """Boxes [(class, score, [x0, y0, x1, y1])] of one image, PicoDet's post-processing."""
    candidates = []
    for s, b, stride in zip(scores, boxes, d["strides"]):
        classes = s.shape[-1]
        s = s.reshape(-1, classes)
        bins = b.size // s.shape[0] // 4
        b = b.reshape(-1, 4, bins)
        width = -(-d["input_size"][1] // stride)
        for c in np.argsort(-s.max(axis=1), kind="stable")[:1000]:
            centre = np.array([(c % width + 0.5) * stride, (c // width + 0.5) * stride])
            logits = b[c].astype(np.float64)
            weights = np.exp(logits - logits.max(axis=1, keepdims=True))
            side = (weights * np.arange(bins)).sum(axis=1) / weights.sum(axis=1) * stride
            box = [centre[0] - side[0], centre[1] - side[1], centre[0] + side[2], centre[1] + side[3]]
            candidates.append((s[c], box))
    kept = []
    for cls in range(scores[0].shape[-1]):
        found = [(cls, float(sc[cls]), box) for sc, box in candidates if sc[cls] > np.float32(d["score_threshold"])]
        found.sort(key=lambda x: -x[1])
        mine = []
        for det in found:
            if len(mine) < 100 and all(iou(k[2], det[2]) <= d["iou_threshold"] for k in mine):
                mine.append(det)
        kept.extend(mine)
    return kept


def picodet(reference_samples, actual_samples, names, d):
    tp = fp = fn = found = 0
    for r, a in zip(reference_samples, actual_samples):
        decode = lambda sample: picodet_boxes(
            [tensors([sample], names, n)[0] for n in d["scores"]],
            [tensors([sample], names, n)[0] for n in d["boxes"]],
            d,
        )
        expected, got = decode(r), decode(a)
        found += len(expected)
        taken = [False] * len(expected)
        for cls, _, box in sorted(got, key=lambda x: -x[1]):
            best = None
            for i, (ecls, _, ebox) in enumerate(expected):
                if taken[i] or ecls != cls:
                    continue
                v = iou(ebox, box)
                if v >= 0.5 and (best is None or v >= best[1]):
                    best = (i, v)
            if best is None:
                fp += 1
            else:
                taken[best[0]] = True
                tp += 1
        fn += taken.count(False)
    p, r = fraction(tp, tp + fp), fraction(tp, tp + fn)
    return {
        "reference_boxes": found,
        "precision": p,
        "recall": r,
        "f1": 0.0 if p + r == 0 else 2 * p * r / (p + r),
    }


def recompute(dump):
    d, names = dump["decoding"], dump["output_names"]
    kind = d["kind"]
    if kind == "picodet":
        return picodet(dump["reference"], dump["actual"], names, d)
    reference = tensors(dump["reference"], names, d["output"])
    actual = tensors(dump["actual"], names, d["output"])
    return {"top-k": top_k, "ctc-greedy": ctc_greedy, "threshold": threshold}[kind](reference, actual, d)


def check(path):
    with open(path) as f:
        dump = json.load(f)
    task = dump["accuracy"].get("task")
    if dump.get("decoding") is None or task is None:
        print(f"{path}: no task accuracy to check (not a zoo model with a decoding)", file=sys.stderr)
        sys.exit(2)
    ours = recompute(dump)
    ok = task["samples"] == len(dump["reference"])
    lines = [f"{dump['model']} {dump['variant']} ({task['decoding']}, {task['samples']} samples):"]
    for key, value in ours.items():
        theirs = task.get(key)
        agree = theirs is not None and abs(theirs - value) <= 1e-9
        ok &= agree
        lines.append(f"  {key:<18} chipbench {theirs}  numpy {value}  {'agree' if agree else 'DIFFER'}")
    print("\n".join(lines))
    return ok


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    results = [check(p) for p in sys.argv[1:]]
    sys.exit(0 if all(results) else 1)
