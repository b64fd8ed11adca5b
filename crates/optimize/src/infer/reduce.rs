//! Reductions along axes (`ReduceSum`, `ReduceMean`..., `ArgMax`, `ArgMin`) and `TopK`, which
//! keeps k elements along one.

use super::{Ctx, Fact, Inferred, Inputs, Rules, axis};
use crate::onnx::DataType;

pub(super) fn rules(op: &str) -> Option<Rules> {
    let shapes = match op {
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => reduce,
        "ArgMax" | "ArgMin" => arg_extremum,
        "TopK" => top_k,
        _ => return None,
    };
    Some(Rules::shaping(shapes))
}

fn reduce(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let axes = cx.ints_arg(1, "axes")?.unwrap_or_default();
    let keep = cx.node.attr_i("keepdims").unwrap_or(1) != 0;
    let noop = cx.node.attr_i("noop_with_empty_axes").unwrap_or(0) != 0;
    Ok(vec![Fact::new(
        reduce_shape(x, &axes, keep, noop)?,
        cx.elem(0),
    )])
}

fn arg_extremum(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let keep = cx.node.attr_i("keepdims").unwrap_or(1) != 0;
    let out = reduce_shape(x, &[cx.node.attr_i("axis").unwrap_or(0)], keep, false)?;
    Ok(vec![Fact::new(out, Some(DataType::Int64))])
}

fn top_k(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let k = match cx.name(1) {
        Some(_) => *cx.ints(1)?.first().ok_or("empty k")?,
        None => cx.node.attr_i("k").ok_or("no k")?,
    };
    let a = axis(cx.node.attr_i("axis").unwrap_or(-1), x.len())?;
    let mut out = x.to_vec();
    out[a] = k.max(0) as usize;
    Ok(vec![
        Fact::new(out.clone(), cx.elem(0)),
        Fact::new(out, Some(DataType::Int64)),
    ])
}

/// The shape after reducing `axes` (all axes when empty and `noop` is false).
fn reduce_shape(x: &[usize], axes: &[i64], keepdims: bool, noop: bool) -> Inferred<Vec<usize>> {
    if axes.is_empty() && noop {
        return Ok(x.to_vec());
    }
    let axes: Vec<usize> = if axes.is_empty() {
        (0..x.len()).collect()
    } else {
        axes.iter()
            .map(|&a| axis(a, x.len()))
            .collect::<Inferred<_>>()?
    };
    Ok(x.iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect())
}
