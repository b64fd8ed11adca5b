//! Element-wise maps, pooling, row-wise reductions and normalisations, the data-movement
//! kernels (gather, gather-elements, concat, pad), running sums and resampling.

use std::fmt::Write;

use super::{Builder, compute_type, coordinate_terms, coordinates, grid, literal, sum_terms, zero};
use crate::graph::{Conv, PadMode, Pool, PoolKind, Reducer, RowOp, Rows, Scalar, Step, View};

type Kernel = Result<(String, [u32; 3]), String>;

/// Invocations per workgroup of the one-element-per-invocation kernels.
const LANES: usize = 256;

/// `main` running `body` once per element `o < total`, with `o` declared.
fn per_element(total: usize, lanes: usize, body: &str) -> (String, [u32; 3]) {
    let workgroups = grid(total.div_ceil(lanes));
    let source = format!(
        "@compute @workgroup_size({lanes})\n\
         fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {{\n  \
         let o = (wg.y * {gx}u + wg.x) * {lanes}u + li;\n  if (o >= {total}u) {{ return; }}\n{body}}}\n",
        gx = workgroups[0]
    );
    (source, workgroups)
}

fn output_len(b: &Builder, step: &Step) -> usize {
    b.program.values[step.output].numel()
}

pub(super) fn map(b: &mut Builder, step: &Step) -> Kernel {
    Ok(per_element(output_len(b, step), LANES, "  emit(o, 0.0);\n"))
}

pub(super) fn pool(b: &mut Builder, step: &Step, p: &Pool) -> Kernel {
    let x = &step.inputs[0];
    let [oh_n, ow_n] = p.output_hw;
    let [kh, kw] = p.kernel_hw;
    let [sh, sw] = p.strides;
    let [dh, dw] = p.dilations;
    let [ph, pw] = p.pad_before;
    let [h, w] = p.input_hw;
    let [os0, os1, os2, os3] = p.out_strides;
    let total = p.batch * p.channels * oh_n * ow_n;
    let load = b.load(
        x,
        &format!(
            "{}u + n_img * {}u + c * {}u + u32(ih) * {}u + u32(iw) * {}u",
            x.offset, x.strides[0], x.strides[1], x.strides[2], x.strides[3]
        ),
    );
    let (init, accumulate, finish) = match p.kind {
        PoolKind::Max => (
            "var acc = bitcast<f32>(0xff800000u);".to_string(),
            format!("acc = max(acc, {load});"),
            String::new(),
        ),
        PoolKind::Sum {
            normalize,
            count_include_pad,
        } => {
            let finish = match (normalize, count_include_pad) {
                (false, _) => String::new(),
                (true, true) => format!("acc = acc / {}.0;", kh * kw),
                (true, false) => "acc = acc / f32(max(count, 1u));".to_string(),
            };
            (
                "var acc = 0.0; var count = 0u;".to_string(),
                format!("acc += {load}; count += 1u;"),
                finish,
            )
        }
    };
    let body = format!(
        "  let ow = o % {ow_n}u; let oh = (o / {ow_n}u) % {oh_n}u;\n  \
         let c = (o / {ohw}u) % {ch}u; let n_img = o / {ohwc}u;\n  {init}\n  \
         for (var ky = 0u; ky < {kh}u; ky++) {{\n    for (var kx = 0u; kx < {kw}u; kx++) {{\n      \
         let ih = i32(oh * {sh}u + ky * {dh}u) - {ph}; let iw = i32(ow * {sw}u + kx * {dw}u) - {pw};\n      \
         if (ih < 0 || ih >= {h} || iw < 0 || iw >= {w}) {{ continue; }}\n      {accumulate}\n    }}\n  }}\n  \
         {finish}\n  emit(n_img * {os0}u + c * {os1}u + oh * {os2}u + ow * {os3}u, acc);\n",
        ohw = oh_n * ow_n,
        ch = p.channels,
        ohwc = oh_n * ow_n * p.channels,
    );
    Ok(per_element(total, 64, &body))
}

/// Invocations cooperating on one row.
const ROW_LANES: usize = 64;

/// Combines `red[li]` with `red[li + s]` down to `red[0]`, with barriers, for every `s`.
fn tree(combine: &str) -> String {
    let mut s = String::from("  workgroupBarrier();\n");
    let mut step = ROW_LANES / 2;
    while step > 0 {
        let _ = writeln!(
            s,
            "  if (li < {step}u) {{ let a = red[li]; let b = red[li + {step}u]; red[li] = {combine}; }}\n  workgroupBarrier();"
        );
        step /= 2;
    }
    s
}

pub(super) fn rows(b: &mut Builder, step: &Step, r: &Rows) -> Kernel {
    let x = &step.inputs[0];
    let k = r.kept_rank;
    let kept = View {
        value: x.value,
        offset: 0,
        shape: x.shape[..k].to_vec(),
        strides: x.strides[..k].to_vec(),
    };
    let reduced = View {
        value: x.value,
        offset: 0,
        shape: x.shape[k..].to_vec(),
        strides: x.strides[k..].to_vec(),
    };
    let rows: usize = kept.numel();
    let len: usize = reduced.numel();
    let term = |shape: &[usize], strides: &[usize], at: &str| {
        let v = View {
            value: x.value,
            offset: 0,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
        };
        let (sh, st) = v.simplified();
        sum_terms(0, coordinate_terms(&sh, &st, at))
    };
    let base = format!(
        "{}u + {}",
        x.offset,
        term(&kept.shape, &kept.strides, "row")
    );
    let out_base = term(&kept.shape, &r.out_strides[..k], "row");
    let in_at = term(&reduced.shape, &reduced.strides, "p");
    let out_at = term(&reduced.shape, &r.out_strides[k..], "p");
    let load = b.load(x, "base + idx");
    let read = format!("let idx = {in_at}; let x = {load};");
    let workgroups = grid(rows);
    let mut body = format!(
        "@compute @workgroup_size({ROW_LANES})\n\
         fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {{\n  \
         let row = wg.y * {gx}u + wg.x;\n  if (row >= {rows}u) {{ return; }}\n  \
         let base = {base}; let out_base = {out_base};\n",
        gx = workgroups[0]
    );
    let sweep = |init: &str, update: &str| {
        format!(
            "  {{\n    var acc = {init};\n    for (var p = li; p < {len}u; p += {ROW_LANES}u) {{ {read} {update} }}\n    red[li] = acc;\n  }}\n"
        )
    };
    let shared = match &r.op {
        RowOp::Reduce(Reducer::ArgMax { .. } | Reducer::ArgMin { .. }) => {
            format!(
                "var<workgroup> red: array<f32, {ROW_LANES}>;\nvar<workgroup> red_i: array<i32, {ROW_LANES}>;\n"
            )
        }
        _ => format!("var<workgroup> red: array<f32, {ROW_LANES}>;\n"),
    };
    match &r.op {
        RowOp::Reduce(reducer) => match reducer {
            Reducer::ArgMax { last } | Reducer::ArgMin { last } => {
                let better = if matches!(reducer, Reducer::ArgMax { .. }) {
                    ">"
                } else {
                    "<"
                };
                let (init, tie) = if matches!(reducer, Reducer::ArgMax { .. }) {
                    (
                        "bitcast<f32>(0xff800000u)",
                        if *last { "i2 > i1" } else { "i2 < i1" },
                    )
                } else {
                    (
                        "bitcast<f32>(0x7f800000u)",
                        if *last { "i2 > i1" } else { "i2 < i1" },
                    )
                };
                let keep_equal = if *last { "|| x == best" } else { "" };
                let _ = write!(
                    body,
                    "  var best = {init}; var at = -1;\n  for (var p = li; p < {len}u; p += {ROW_LANES}u) {{ {read} \
                     if (at < 0 || x {better} best {keep_equal}) {{ best = x; at = i32(p); }} }}\n  \
                     red[li] = best; red_i[li] = at;\n  workgroupBarrier();\n"
                );
                let mut step = ROW_LANES / 2;
                while step > 0 {
                    let _ = writeln!(
                        body,
                        "  if (li < {step}u) {{ let v1 = red[li]; let i1 = red_i[li]; let v2 = red[li + {step}u]; let i2 = red_i[li + {step}u];\n    \
                         if (i2 >= 0 && (i1 < 0 || v2 {better} v1 || (v2 == v1 && {tie}))) {{ red[li] = v2; red_i[li] = i2; }} }}\n  workgroupBarrier();"
                    );
                    step /= 2;
                }
                body.push_str("  if (li == 0u) { emit(out_base, red_i[0]); }\n");
            }
            _ => {
                let (init, update, combine) = match reducer {
                    Reducer::Sum => ("0.0", "acc += x;", "a + b"),
                    Reducer::MeanOfSquares => ("0.0", "acc += x * x;", "a + b"),
                    Reducer::Prod => ("1.0", "acc *= x;", "a * b"),
                    Reducer::Max => (
                        "bitcast<f32>(0xff800000u)",
                        "acc = max(acc, x);",
                        "max(a, b)",
                    ),
                    Reducer::Min => (
                        "bitcast<f32>(0x7f800000u)",
                        "acc = min(acc, x);",
                        "min(a, b)",
                    ),
                    Reducer::ArgMax { .. } | Reducer::ArgMin { .. } => {
                        unreachable!("handled above")
                    }
                };
                body.push_str(&sweep(init, update));
                body.push_str(&tree(combine));
                let result = if *reducer == Reducer::MeanOfSquares {
                    format!("red[0] / {len}.0")
                } else {
                    "red[0]".into()
                };
                let _ = writeln!(body, "  if (li == 0u) {{ emit(out_base, {result}); }}");
            }
        },
        RowOp::Softmax { log } => {
            body.push_str(&sweep("bitcast<f32>(0xff800000u)", "acc = max(acc, x);"));
            body.push_str(&tree("max(a, b)"));
            body.push_str("  let top = red[0];\n  workgroupBarrier();\n");
            body.push_str(&sweep("0.0", "acc += exp(x - top);"));
            body.push_str(&tree("a + b"));
            let value = if *log {
                "x - top - log(total)"
            } else {
                "exp(x - top) / total"
            };
            let _ = writeln!(
                body,
                "  let total = red[0];\n  for (var p = li; p < {len}u; p += {ROW_LANES}u) {{ {read} emit(out_base + {out_at}, {value}); }}"
            );
        }
        RowOp::RmsNorm { eps } => {
            body.push_str(&sweep("0.0", "acc += x * x;"));
            body.push_str(&tree("a + b"));
            let _ = writeln!(
                body,
                "  let scale = inverseSqrt(red[0] / {len}.0 + {});\n  \
                 for (var p = li; p < {len}u; p += {ROW_LANES}u) {{ {read} emit(out_base + {out_at}, x * scale); }}",
                literal(crate::graph::Literal::F32(*eps))
            );
        }
    }
    body.push_str("}\n");
    Ok((format!("{shared}{body}"), workgroups))
}

/// Splits `at` into the coordinates of `shape` and sums them with `strides`.
fn offset_of(shape: &[usize], strides: &[usize], at: &str) -> String {
    let v = View {
        value: 0,
        offset: 0,
        shape: shape.to_vec(),
        strides: strides.to_vec(),
    };
    let (sh, st) = v.simplified();
    sum_terms(0, coordinate_terms(&sh, &st, at))
}

pub(super) fn gather(b: &mut Builder, step: &Step, axis: usize) -> Kernel {
    let (data, idx) = (&step.inputs[0], &step.inputs[1]);
    let pre: usize = data.shape[..axis].iter().product();
    let dim = data.shape[axis];
    let post: usize = data.shape[axis + 1..].iter().product();
    let count = idx.numel();
    let total = pre * count * post;
    let index_load = b.load(
        idx,
        &format!(
            "{}u + {}",
            idx.offset,
            offset_of(&idx.shape, &idx.strides, "mid")
        ),
    );
    let index = if b.ty(idx.value).compute() == Scalar::I32 {
        index_load
    } else {
        format!("i32({index_load})")
    };
    let at = format!(
        "{}u + {} + u32(ix) * {}u + {}",
        data.offset,
        offset_of(&data.shape[..axis], &data.strides[..axis], "pre"),
        data.strides[axis],
        offset_of(&data.shape[axis + 1..], &data.strides[axis + 1..], "post")
    );
    let value = b.load(data, &at);
    let body = format!(
        "  let pre = o / {cp}u; let mid = (o / {post}u) % {count}u; let post = o % {post}u;\n  \
         var ix = {index};\n  if (ix < 0) {{ ix += {dim}; }}\n  ix = clamp(ix, 0, {last});\n  emit(o, {value});\n",
        cp = count * post,
        post = post.max(1),
        count = count.max(1),
        last = dim.saturating_sub(1),
    );
    Ok(per_element(total, LANES, &body))
}

pub(super) fn concat(b: &mut Builder, step: &Step, axis: usize) -> Kernel {
    let out_shape = b.program.values[step.output].shape.clone();
    let len = out_shape[axis];
    let inner: usize = out_shape[axis + 1..].iter().product();
    let total: usize = out_shape.iter().product();
    let ty = b.ty(step.inputs[0].value).compute();
    let mut body = format!(
        "  let outer = o / {li}u; let c = (o / {inner}u) % {len}u; let inner = o % {inner}u;\n  var v: {t} = {z};\n",
        li = (len * inner).max(1),
        inner = inner.max(1),
        len = len.max(1),
        t = compute_type(ty),
        z = zero(ty),
    );
    let mut start = 0;
    let mut first = true;
    for view in &step.inputs {
        let size = view.shape[axis];
        if size == 0 {
            continue;
        }
        let end = start + size;
        let at = format!(
            "{}u + {} + (c - {start}u) * {}u + {}",
            view.offset,
            offset_of(&view.shape[..axis], &view.strides[..axis], "outer"),
            view.strides[axis],
            offset_of(&view.shape[axis + 1..], &view.strides[axis + 1..], "inner")
        );
        let load = b.load(view, &at);
        let keyword = if first { "if" } else { "else if" };
        let _ = write!(body, "  {keyword} (c < {end}u) {{ v = {load}; }}");
        first = false;
        start = end;
    }
    body.push_str("\n  emit(o, v);\n");
    Ok(per_element(total, LANES, &body))
}

pub(super) fn pad(b: &mut Builder, step: &Step, pads: &[(usize, usize)], mode: &PadMode) -> Kernel {
    let x = &step.inputs[0];
    let out_shape = b.program.values[step.output].shape.clone();
    let total: usize = out_shape.iter().product();
    let coords = coordinates(&out_shape, "o");
    let mut body = String::new();
    let mut inside = Vec::new();
    let mut terms = vec![format!("{}u", x.offset)];
    for (d, c) in coords.iter().enumerate() {
        let n = x.shape[d] as i64;
        let before = pads[d].0;
        let _ = write!(body, "  var i{d} = i32({c}) - {before};");
        match mode {
            PadMode::Constant(_) => inside.push(format!("i{d} >= 0 && i{d} < {n}")),
            PadMode::Reflect => {
                let _ = write!(
                    body,
                    " if (i{d} < 0) {{ i{d} = -i{d}; }} if (i{d} >= {n}) {{ i{d} = {} - i{d}; }} i{d} = clamp(i{d}, 0, {});",
                    2 * (n - 1),
                    n - 1
                );
            }
            PadMode::Edge => {
                let _ = write!(body, " i{d} = clamp(i{d}, 0, {});", n - 1);
            }
        }
        body.push('\n');
        if x.strides[d] != 0 && x.shape[d] > 1 {
            terms.push(format!("u32(i{d}) * {}u", x.strides[d]));
        }
    }
    let load = b.load(x, &terms.join(" + "));
    match mode {
        PadMode::Constant(value) if !inside.is_empty() => {
            let _ = writeln!(
                body,
                "  if ({}) {{ emit(o, {load}); }} else {{ emit(o, {}); }}",
                inside.join(" && "),
                literal(*value)
            );
        }
        _ => {
            let _ = writeln!(body, "  emit(o, {load});");
        }
    }
    Ok(per_element(total, LANES, &body))
}

/// One axis of a Resize: every output element sums its window of taps, the tap indices and
/// weights read from the plan's tables. Taps of weight zero are skipped, as tract skips them (a
/// non-finite input there stays out of the sum).
pub(super) fn resample(b: &mut Builder, step: &Step, axis: usize, window: usize) -> Kernel {
    let (data, taps, weights) = (&step.inputs[0], &step.inputs[1], &step.inputs[2]);
    let out_shape = b.program.values[step.output].shape.clone();
    let len_out = out_shape[axis];
    let post: usize = out_shape[axis + 1..].iter().product();
    let total: usize = out_shape.iter().product();
    let at = format!(
        "{}u + {} + u32(tap) * {}u + {}",
        data.offset,
        offset_of(&data.shape[..axis], &data.strides[..axis], "pre"),
        data.strides[axis],
        offset_of(&data.shape[axis + 1..], &data.strides[axis + 1..], "post")
    );
    let value = b.load(data, &at);
    let tap = b.load(taps, &format!("{}u + t", taps.offset));
    let weight = b.load(weights, &format!("{}u + t", weights.offset));
    let body = format!(
        "  let post = o % {post}u; let x = (o / {post}u) % {len_out}u; let pre = o / {lp}u;\n  \
         var acc = 0.0;\n  for (var k = 0u; k < {window}u; k++) {{\n    let t = x * {window}u + k;\n    \
         let w = {weight};\n    if (w != 0.0) {{ let tap = {tap}; acc += w * {value}; }}\n  }}\n  emit(o, acc);\n",
        post = post.max(1),
        len_out = len_out.max(1),
        lp = (len_out * post).max(1),
    );
    Ok(per_element(total, LANES, &body))
}

pub(super) fn gather_elements(b: &mut Builder, step: &Step, axis: usize) -> Kernel {
    let (data, idx) = (&step.inputs[0], &step.inputs[1]);
    let out_shape = b.program.values[step.output].shape.clone();
    let total: usize = out_shape.iter().product();
    let coords = coordinates(&out_shape, "o");
    let index_load = b.load(idx, &super::flat_index(idx, "o"));
    let index = if b.ty(idx.value).compute() == Scalar::I32 {
        index_load
    } else {
        format!("i32({index_load})")
    };
    let dim = data.shape[axis];
    let mut terms = vec![format!("{}u", data.offset)];
    for (d, c) in coords.iter().enumerate() {
        if d == axis {
            terms.push(format!("u32(ix) * {}u", data.strides[d]));
        } else if data.strides[d] != 0 && data.shape[d] > 1 {
            terms.push(format!("{c} * {}u", data.strides[d]));
        }
    }
    let value = b.load(data, &terms.join(" + "));
    let body = format!(
        "  var ix = {index};\n  if (ix < 0) {{ ix += {dim}; }}\n  ix = clamp(ix, 0, {last});\n  emit(o, {value});\n",
        last = dim.saturating_sub(1),
    );
    Ok(per_element(total, LANES, &body))
}

/// One invocation per output element sums its prefix (or suffix) along the axis: quadratic in
/// the axis length, with no synchronisation between invocations.
pub(super) fn cumsum(
    b: &mut Builder,
    step: &Step,
    axis: usize,
    exclusive: bool,
    reverse: bool,
) -> Kernel {
    let x = &step.inputs[0];
    let out_shape = b.program.values[step.output].shape.clone();
    let total: usize = out_shape.iter().product();
    let len = out_shape[axis];
    let post: usize = out_shape[axis + 1..].iter().product();
    let ty = b.ty(x.value).compute();
    let at = format!(
        "{}u + {} + j * {}u + {}",
        x.offset,
        offset_of(&x.shape[..axis], &x.strides[..axis], "pre"),
        x.strides[axis],
        offset_of(&x.shape[axis + 1..], &x.strides[axis + 1..], "post")
    );
    let value = b.load(x, &at);
    let (from, to) = match (reverse, exclusive) {
        (false, false) => ("0u".to_string(), "i + 1u".to_string()),
        (false, true) => ("0u".to_string(), "i".to_string()),
        (true, false) => ("i".to_string(), format!("{len}u")),
        (true, true) => ("i + 1u".to_string(), format!("{len}u")),
    };
    let body = format!(
        "  let post = o % {post}u; let i = (o / {post}u) % {len}u; let pre = o / {lp}u;\n  \
         var acc: {t} = {z};\n  for (var j = {from}; j < {to}; j++) {{ acc += {value}; }}\n  emit(o, acc);\n",
        post = post.max(1),
        len = len.max(1),
        lp = (len * post).max(1),
        t = compute_type(ty),
        z = zero(ty),
    );
    Ok(per_element(total, LANES, &body))
}

/// One invocation per output element: the element of rank `i` along the axis is the one with
/// exactly `i` elements before it (better, or equal at a lower index), found by counting: quadratic
/// in the axis length, with no sorting network and no synchronisation.
pub(super) fn top_k(
    b: &mut Builder,
    step: &Step,
    axis: usize,
    largest: bool,
    indices: bool,
) -> Kernel {
    let x = &step.inputs[0];
    let out_shape = b.program.values[step.output].shape.clone();
    let total: usize = out_shape.iter().product();
    let k = out_shape[axis];
    let len = x.shape[axis];
    let post: usize = out_shape[axis + 1..].iter().product();
    let ty = b.ty(x.value).compute();
    let base = format!(
        "{}u + {} + {}",
        x.offset,
        offset_of(&x.shape[..axis], &x.strides[..axis], "pre"),
        offset_of(&x.shape[axis + 1..], &x.strides[axis + 1..], "post")
    );
    let at = |j: &str| format!("base + {j} * {}u", x.strides[axis]);
    let (ve, vj) = (b.load(x, &at("e")), b.load(x, &at("j")));
    let better = if largest { ">" } else { "<" };
    let result = if indices { "i32(e)" } else { "ve" };
    let body = format!(
        "  let post = o % {post}u; let i = (o / {post}u) % {k}u; let pre = o / {kp}u;\n  \
         let base = {base};\n  var found: {t} = {z};\n  \
         for (var e = 0u; e < {len}u; e++) {{\n    let ve = {ve};\n    var rank = 0u;\n    \
         for (var j = 0u; j < {len}u; j++) {{ let vj = {vj}; if (vj {better} ve || (vj == ve && j < e)) {{ rank++; }} }}\n    \
         if (rank == i) {{ found = {result}; }}\n  }}\n  emit(o, found);\n",
        post = post.max(1),
        k = k.max(1),
        kp = (k * post).max(1),
        t = compute_type(if indices { Scalar::I32 } else { ty }),
        z = zero(if indices { Scalar::I32 } else { ty }),
    );
    Ok(per_element(total, LANES, &body))
}

/// One invocation per output element: the element of the data, unless an index tuple points at
/// its slice, in which case the update's element (the last such tuple's).
pub(super) fn scatter_nd(b: &mut Builder, step: &Step) -> Kernel {
    let (data, idx, updates) = (&step.inputs[0], &step.inputs[1], &step.inputs[2]);
    let out_shape = b.program.values[step.output].shape.clone();
    let total: usize = out_shape.iter().product();
    let q = *idx.shape.last().unwrap_or(&0);
    let tuples: usize = idx.shape[..idx.shape.len().saturating_sub(1)]
        .iter()
        .product();
    let inner: usize = out_shape[q..].iter().product();
    let coords = coordinates(&out_shape, "o");
    let original = b.load(data, &super::flat_index(data, "o"));
    let mut matches = Vec::new();
    for (d, c) in coords.iter().enumerate().take(q) {
        let at = format!(
            "{}u + {}",
            idx.offset,
            offset_of(&idx.shape, &idx.strides, &format!("(u * {q}u + {d}u)"))
        );
        let load = b.load(idx, &at);
        let index = if b.ty(idx.value).compute() == Scalar::I32 {
            load
        } else {
            format!("i32({load})")
        };
        matches.push(format!("wrap({index}, {}) == i32({c})", out_shape[d]));
    }
    let update_at = format!(
        "{}u + {}",
        updates.offset,
        offset_of(
            &updates.shape,
            &updates.strides,
            &format!("(u * {}u + o % {}u)", inner.max(1), inner.max(1))
        )
    );
    let update = b.load(updates, &update_at);
    let ty = b.ty(data.value).compute();
    let body = format!(
        "  var v: {t} = {original};\n  for (var u = 0u; u < {tuples}u; u++) {{\n    \
         if ({cond}) {{ v = {update}; }}\n  }}\n  emit(o, v);\n",
        t = compute_type(ty),
        cond = if matches.is_empty() {
            "true".to_string()
        } else {
            matches.join(" && ")
        },
    );
    let helper = "fn wrap(i: i32, n: i32) -> i32 { return select(i, i + n, i < 0); }\n";
    let (source, groups) = per_element(total, LANES, &body);
    Ok((format!("{helper}{source}"), groups))
}

/// A transposed convolution, one invocation per output element gathering the input pixels
/// whose stride-spread kernel window covers it: `iy = (oy + pad - ky * dilation) / stride`
/// where that divides exactly and lands inside the input.
pub(super) fn deconv(b: &mut Builder, step: &Step, c: &Conv) -> Kernel {
    let (x, w) = (&step.inputs[0], &step.inputs[1]);
    let [oh_n, ow_n] = c.output_hw;
    let [kh, kw] = c.kernel_hw;
    let [sh, sw] = c.strides;
    let [dh, dw] = c.dilations;
    let [ph, pw] = c.pad_before;
    let [h, wd] = c.input_hw;
    let [os0, os1, os2, os3] = c.out_strides;
    let in_per_group = c.in_channels / c.groups;
    let out_per_group = c.out_channels / c.groups;
    let total = c.batch * c.out_channels * oh_n * ow_n;
    let x_load = b.load(
        x,
        &format!(
            "{}u + n_img * {}u + (g * {in_per_group}u + i) * {}u + u32(iy) * {}u + u32(ix) * {}u",
            x.offset, x.strides[0], x.strides[1], x.strides[2], x.strides[3]
        ),
    );
    let w_load = b.load(
        w,
        &format!(
            "{}u + oc * {}u + i * {}u + ky * {}u + kx * {}u",
            w.offset, w.strides[0], w.strides[1], w.strides[2], w.strides[3]
        ),
    );
    let body = format!(
        "  let ox = o % {ow_n}u; let oy = (o / {ow_n}u) % {oh_n}u;\n  \
         let oc = (o / {ohw}u) % {co}u; let n_img = o / {ohwc}u; let g = oc / {out_per_group}u;\n  \
         var acc = 0.0;\n  \
         for (var ky = 0u; ky < {kh}u; ky++) {{\n    \
         let ty = i32(oy) + {ph} - i32(ky * {dh}u);\n    \
         if (ty < 0 || ty % {sh} != 0 || ty / {sh} >= {h}) {{ continue; }}\n    let iy = ty / {sh};\n    \
         for (var kx = 0u; kx < {kw}u; kx++) {{\n      \
         let tx = i32(ox) + {pw} - i32(kx * {dw}u);\n      \
         if (tx < 0 || tx % {sw} != 0 || tx / {sw} >= {wd}) {{ continue; }}\n      let ix = tx / {sw};\n      \
         for (var i = 0u; i < {in_per_group}u; i++) {{ acc += {x_load} * {w_load}; }}\n    }}\n  }}\n  \
         emit(n_img * {os0}u + oc * {os1}u + oy * {os2}u + ox * {os3}u, acc);\n",
        ohw = oh_n * ow_n,
        co = c.out_channels,
        ohwc = oh_n * ow_n * c.out_channels,
    );
    Ok(per_element(total, 64, &body))
}
