//! Operators that move, select or repeat elements without computing new ones: reshapes,
//! transposes, concatenation and splitting, slicing and gathering, padding, tiling and resizing.
//! On the 1-D shape vectors exporters build around `Reshape` they also carry the values along.

use super::{Ctx, Fact, Inferred, Inputs, Rules, Values, axis};

pub(super) fn rules(op: &str) -> Option<Rules> {
    let shapes = match op {
        "Flatten" => flatten,
        "Reshape" => reshape,
        "Transpose" => transpose,
        "Concat" => concat,
        "Slice" => slice,
        "Split" => split,
        "Squeeze" => squeeze,
        "Unsqueeze" => unsqueeze,
        "Gather" => gather,
        "GatherElements" => gather_elements,
        "Tile" => tile,
        "Pad" => pad,
        "Resize" | "Upsample" => resize,
        "DepthToSpace" | "SpaceToDepth" => depth_space,
        _ => return None,
    };
    Some(Rules::shaping(shapes))
}

fn flatten(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let a = cx.node.attr_i("axis").unwrap_or(1);
    let a = if a < 0 { a + x.len() as i64 } else { a };
    if !(0..=x.len() as i64).contains(&a) {
        return Err(format!("axis {a} out of range for {x:?}"));
    }
    let (head, tail) = x.split_at(a as usize);
    Ok(vec![Fact::new(
        vec![head.iter().product(), tail.iter().product()],
        cx.elem(0),
    )])
}

fn reshape(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let target = if cx.opset >= 5 {
        cx.ints(1)?
    } else {
        cx.node
            .attr_ints("shape")
            .ok_or("no shape attribute")?
            .to_vec()
    };
    let allow_zero = cx.node.attr_i("allowzero").unwrap_or(0) != 0;
    let total: usize = x.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            0 if !allow_zero => out.push(*x.get(i).ok_or("0 copies a dimension the input lacks")?),
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(1);
            }
            d if d >= 0 => out.push(d as usize),
            _ => return Err(format!("invalid target shape {target:?}")),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer_at {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {x:?} to {target:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!("cannot reshape {x:?} to {target:?}"));
    }
    let values = cx.fact(0)?.values.clone();
    Ok(vec![Fact::with_values(out, cx.elem(0), values)])
}

fn transpose(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let perm: Vec<usize> = match cx.node.attr_ints("perm") {
        Some(p) => p
            .iter()
            .map(|&a| axis(a, x.len()))
            .collect::<Inferred<_>>()?,
        None => (0..x.len()).rev().collect(),
    };
    if perm.len() != x.len() {
        return Err(format!("perm {perm:?} for shape {x:?}"));
    }
    Ok(vec![Fact::new(
        perm.iter().map(|&p| x[p]).collect(),
        cx.elem(0),
    )])
}

fn concat(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let shapes: Vec<&[usize]> = (0..cx.node.input.len())
        .map(|i| cx.shape(i))
        .collect::<Inferred<_>>()?;
    let first = shapes.first().ok_or("Concat without inputs")?;
    let a = axis(
        cx.node.attr_i("axis").ok_or("no axis attribute")?,
        first.len(),
    )?;
    let mut out = first.to_vec();
    out[a] = 0;
    for s in &shapes {
        if s.len() != first.len()
            || s.iter()
                .zip(first.iter())
                .enumerate()
                .any(|(i, (x, y))| i != a && x != y)
        {
            return Err(format!(
                "Concat of mismatched shapes {shapes:?} on axis {a}"
            ));
        }
        out[a] += s[a];
    }
    // Shape vectors are concatenated 1-D tensors.
    let values = (first.len() == 1)
        .then(|| {
            let parts: Vec<&Values> = (0..cx.node.input.len())
                .map(|i| cx.values(i).ok())
                .collect::<Option<_>>()?;
            if parts.iter().all(|v| matches!(v, Values::Int(_))) {
                Some(Values::Int(parts.iter().flat_map(|v| v.ints()).collect()))
            } else {
                Some(Values::Float(
                    parts.iter().flat_map(|v| v.floats()).collect(),
                ))
            }
        })
        .flatten();
    Ok(vec![Fact::with_values(out, cx.elem(0), values)])
}

/// Start and length along one axis of a Slice, with the ONNX clamping rules.
fn slice_range(dim: usize, start: i64, end: i64, step: i64) -> Inferred<(i64, usize)> {
    let d = dim as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (start, end) = (norm(start), norm(end));
    let (begin, len) = match step {
        0 => return Err("Slice step 0".into()),
        s if s > 0 => {
            let (b, e) = (start.clamp(0, d), end.clamp(0, d));
            (b, if e > b { (e - b + s - 1) / s } else { 0 })
        }
        s => {
            let (b, e) = (start.clamp(0, d - 1), end.clamp(-1, d - 1));
            (b, if b > e { (b - e - s - 1) / -s } else { 0 })
        }
    };
    Ok((begin, len as usize))
}

fn slice(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let (starts, ends, axes, steps) = if cx.opset >= 10 {
        (cx.ints(1)?, cx.ints(2)?, cx.opt_ints(3)?, cx.opt_ints(4)?)
    } else {
        let attr = |n: &str| cx.node.attr_ints(n).map(<[i64]>::to_vec);
        (
            attr("starts").ok_or("no starts")?,
            attr("ends").ok_or("no ends")?,
            attr("axes"),
            None,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    let mut out = x.to_vec();
    let mut ranges: Vec<(i64, usize, i64)> = x.iter().map(|&d| (0, d, 1)).collect();
    for i in 0..starts.len() {
        let a = axis(axes[i], x.len())?;
        let (start, len) = slice_range(x[a], starts[i], ends[i], steps[i])?;
        out[a] = len;
        ranges[a] = (start, len, steps[i]);
    }
    let values = cx.values(0).ok().filter(|_| x.len() == 1).map(|v| {
        let (start, len, step) = ranges[0];
        v.pick(
            &(0..len as i64)
                .map(|j| (start + j * step) as usize)
                .collect::<Vec<_>>(),
        )
    });
    Ok(vec![Fact::with_values(out, cx.elem(0), values)])
}

fn split(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let a = axis(cx.node.attr_i("axis").unwrap_or(0), x.len())?;
    let outputs = cx.node.output.len();
    let sizes = match cx.ints_arg(1, "split")? {
        Some(sizes) => sizes.iter().map(|&s| s.max(0) as usize).collect(),
        None => {
            let parts = cx
                .node
                .attr_i("num_outputs")
                .map_or(outputs, |n| n.max(1) as usize);
            if parts == 0 {
                return Err("Split without outputs".into());
            }
            // Equal parts, the last one smaller when the axis does not divide (opset 18 rule).
            let chunk = x[a].div_ceil(parts);
            (0..parts)
                .map(|i| chunk.min(x[a].saturating_sub(i * chunk)))
                .collect::<Vec<_>>()
        }
    };
    if sizes.iter().sum::<usize>() != x[a] || sizes.len() != outputs {
        return Err(format!("Split of {x:?} on axis {a} into {sizes:?}"));
    }
    Ok(sizes
        .into_iter()
        .map(|s| {
            let mut out = x.to_vec();
            out[a] = s;
            Fact::new(out, cx.elem(0))
        })
        .collect())
}

fn squeeze(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let axes = cx.ints_arg(1, "axes")?;
    let out = match axes {
        None => x.iter().copied().filter(|&d| d != 1).collect(),
        Some(axes) => {
            let axes: Vec<usize> = axes
                .iter()
                .map(|&a| axis(a, x.len()))
                .collect::<Inferred<_>>()?;
            if let Some(&a) = axes.iter().find(|&&a| x[a] != 1) {
                return Err(format!("Squeeze of axis {a}, of size {}", x[a]));
            }
            x.iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect()
        }
    };
    Ok(vec![Fact::with_values(
        out,
        cx.elem(0),
        cx.fact(0)?.values.clone(),
    )])
}

fn unsqueeze(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let axes = cx.ints_arg(1, "axes")?.ok_or("no axes")?;
    let rank = x.len() + axes.len();
    let axes: Vec<usize> = axes
        .iter()
        .map(|&a| axis(a, rank))
        .collect::<Inferred<_>>()?;
    let mut rest = x.iter();
    let out = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                Some(1)
            } else {
                rest.next().copied()
            }
        })
        .collect::<Option<Vec<_>>>()
        .ok_or("repeated axes")?;
    Ok(vec![Fact::with_values(
        out,
        cx.elem(0),
        cx.fact(0)?.values.clone(),
    )])
}

fn gather(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let (data, indices) = (cx.shape(0)?, cx.shape(1)?);
    if data.is_empty() {
        return Err("Gather from a scalar".into());
    }
    let a = axis(cx.node.attr_i("axis").unwrap_or(0), data.len())?;
    let mut out = data[..a].to_vec();
    out.extend_from_slice(indices);
    out.extend_from_slice(&data[a + 1..]);
    let values = (data.len() == 1)
        .then(|| {
            let (v, idx) = (cx.values(0).ok()?, cx.ints(1).ok()?);
            let d = data[0] as i64;
            let idx: Vec<usize> = idx
                .iter()
                .map(|&i| if i < 0 { i + d } else { i })
                .map(|i| usize::try_from(i).ok().filter(|&i| i < data[0]))
                .collect::<Option<_>>()?;
            Some(v.pick(&idx))
        })
        .flatten();
    Ok(vec![Fact::with_values(out, cx.elem(0), values)])
}

fn gather_elements(cx: &Ctx) -> Inferred<Vec<Fact>> {
    Ok(vec![Fact::new(cx.shape(1)?.to_vec(), cx.elem(0))])
}

fn tile(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let (x, reps) = (cx.shape(0)?, cx.ints(1)?);
    if reps.len() != x.len() {
        return Err(format!("Tile of {x:?} by {reps:?}"));
    }
    Ok(vec![Fact::new(
        x.iter()
            .zip(&reps)
            .map(|(&d, &r)| d * r.max(0) as usize)
            .collect(),
        cx.elem(0),
    )])
}

fn pad(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let pads = cx.ints_arg(1, "pads")?.ok_or("no pads")?;
    let axes: Vec<usize> = match cx.name(3) {
        Some(_) => cx
            .ints(3)?
            .iter()
            .map(|&a| axis(a, x.len()))
            .collect::<Inferred<_>>()?,
        None => (0..x.len()).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    let mut out: Vec<i64> = x.iter().map(|&d| d as i64).collect();
    for (i, &a) in axes.iter().enumerate() {
        out[a] += pads[i] + pads[i + axes.len()];
    }
    let out = out.into_iter().map(|d| d.max(0) as usize).collect();
    Ok(vec![Fact::new(out, cx.elem(0))])
}

fn resize(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let (scales_at, sizes_at) = if cx.node.op_type() == "Upsample" {
        (1, usize::MAX)
    } else {
        (2, 3)
    };
    if cx.name(sizes_at).is_some() {
        let sizes: Vec<usize> = cx
            .ints(sizes_at)?
            .iter()
            .map(|&d| d.max(0) as usize)
            .collect();
        if sizes.len() != x.len() {
            return Err(format!("Resize of {x:?} to sizes {sizes:?}"));
        }
        return Ok(vec![Fact::new(sizes, cx.elem(0))]);
    }
    let scales = cx.values(scales_at)?.floats();
    if scales.len() != x.len() {
        return Err(format!("Resize of {x:?} by scales {scales:?}"));
    }
    let out = x
        .iter()
        .zip(&scales)
        .map(|(&d, &s)| (d as f64 * s).floor() as usize)
        .collect();
    Ok(vec![Fact::new(out, cx.elem(0))])
}

fn depth_space(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let op = cx.node.op_type();
    let x = cx.shape(0)?;
    let b = cx.node.attr_i("blocksize").ok_or("no blocksize")?.max(1) as usize;
    if x.len() != 4 {
        return Err(format!("{op} of {x:?}"));
    }
    let out = if op == "DepthToSpace" {
        vec![x[0], x[1] / (b * b), x[2] * b, x[3] * b]
    } else {
        vec![x[0], x[1] * b * b, x[2] / b, x[3] / b]
    };
    Ok(vec![Fact::new(out, cx.elem(0))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::GraphBuilder;
    use crate::infer::infer_shapes;
    use crate::infer::tests::bound;
    use crate::onnx::{AttributeProto as A, DataType, TensorProto};

    #[test]
    fn folds_the_shape_arithmetic_of_exported_transformers() {
        // Shape → Gather(0) → Unsqueeze → Concat with constants → Reshape, as torch exports it.
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Float, &["batch", "seq", "128"]);
        g.node("Shape", "s", &["x"], vec![]);
        g.initializer(TensorProto::from_i64("zero", &[], &[0]));
        g.node("Gather", "b", &["s", "zero"], vec![A::int("axis", 0)]);
        g.ints("axes0", &[0]);
        g.node("Unsqueeze", "b1", &["b", "axes0"], vec![]);
        g.ints("rest", &[-1, 2, 64]);
        g.node("Concat", "target", &["b1", "rest"], vec![A::int("axis", 0)]);
        g.node("Reshape", "r", &["x", "target"], vec![]);
        g.node(
            "Transpose",
            "t",
            &["r"],
            vec![A::ints("perm", &[0, 2, 1, 3])],
        );
        g.ints("zero_copy", &[0, 0, 128]);
        g.node(
            "Transpose",
            "tb",
            &["t"],
            vec![A::ints("perm", &[0, 2, 1, 3])],
        );
        g.node("Reshape", "back", &["tb", "zero_copy"], vec![]);
        g.ints("starts", &[1]);
        g.ints("ends", &[i64::MAX]);
        g.node("Slice", "tail", &["s", "starts", "ends"], vec![]);
        g.node(
            "Cast",
            "tail_f",
            &["tail"],
            vec![A::int("to", DataType::Float as i64)],
        );
        g.node("Mul", "scaled", &["tail", "tail"], vec![]);
        g.node("ConstantOfShape", "zeros", &["tail"], vec![]);
        let model = g.into_model().unwrap();
        let inf = infer_shapes(&model, &[bound("x", &[3, 10, 128])], None);
        assert!(inf.unresolved.is_empty(), "{:?}", inf.unresolved);
        assert_eq!(inf.shapes["r"], vec![3, 10, 2, 64]);
        assert_eq!(inf.shapes["t"], vec![3, 2, 10, 64]);
        assert_eq!(inf.shapes["back"], vec![3, 10, 128]);
        assert_eq!(inf.shapes["tail"], vec![2]);
        assert_eq!(inf.shapes["zeros"], vec![10, 128]);
        assert_eq!(inf.elem_types["tail_f"], DataType::Float);
        assert_eq!(inf.elem_types["s"], DataType::Int64);
    }

    #[test]
    fn follows_opset_13_input_forms_and_older_attribute_forms() {
        let build = |opset13: bool| {
            let mut g = GraphBuilder::new("g");
            g.input("x", DataType::Float, &["4", "6", "1"]);
            if opset13 {
                g.ints("ax", &[2]);
                g.ints("sp", &[2, 4]);
                g.node("Squeeze", "sq", &["x", "ax"], vec![]);
                g.node_with_outputs(
                    "Split",
                    "split",
                    &["sq", "sp"],
                    &["a", "b"],
                    vec![A::int("axis", 1)],
                );
                g.ints("ax0", &[0, -1]);
                g.node("Unsqueeze", "u", &["a", "ax0"], vec![]);
                g.ints("ax1", &[1]);
                g.node("ReduceSum", "r", &["b", "ax1"], vec![A::int("keepdims", 0)]);
            } else {
                g.node("Squeeze", "sq", &["x"], vec![A::ints("axes", &[2])]);
                g.node_with_outputs(
                    "Split",
                    "split",
                    &["sq"],
                    &["a", "b"],
                    vec![A::int("axis", 1), A::ints("split", &[2, 4])],
                );
                g.node("Unsqueeze", "u", &["a"], vec![A::ints("axes", &[0, -1])]);
                g.node(
                    "ReduceSum",
                    "r",
                    &["b"],
                    vec![A::ints("axes", &[1]), A::int("keepdims", 0)],
                );
            }
            let mut model = g.into_model().unwrap();
            model.opset_import[0].version = Some(if opset13 { 13 } else { 11 });
            infer_shapes(&model, &[], None)
        };
        for inf in [build(true), build(false)] {
            assert!(inf.unresolved.is_empty(), "{:?}", inf.unresolved);
            assert_eq!(inf.shapes["sq"], vec![4, 6]);
            assert_eq!(inf.shapes["a"], vec![4, 2]);
            assert_eq!(inf.shapes["b"], vec![4, 4]);
            assert_eq!(inf.shapes["u"], vec![1, 4, 2, 1]);
        }
        assert_eq!(build(true).shapes["r"], vec![4]);
        assert_eq!(build(false).shapes["r"], vec![4]);
    }

    #[test]
    fn slices_with_the_onnx_clamping_rules() {
        assert_eq!(slice_range(10, 1, i64::MAX, 1).unwrap(), (1, 9));
        assert_eq!(slice_range(10, -3, -1, 1).unwrap(), (7, 2));
        assert_eq!(slice_range(10, i64::MAX, i64::MIN, -1).unwrap(), (9, 10));
        assert_eq!(slice_range(10, 0, 10, 3).unwrap(), (0, 4));
        assert_eq!(slice_range(10, 5, 2, 1).unwrap(), (5, 0));
    }
}
