//! Operators whose outputs are values known before any data flows: `Constant`,
//! `ConstantOfShape`, `Range`, and `Shape` and `Size` of a sized input. Their values seed the
//! folding of the shape arithmetic exporters emit.

use super::{Ctx, Fact, Inferred, Inputs, MAX_FOLDED, Rules, Values};
use crate::onnx::{DataType, NodeProto};

pub(super) fn rules(op: &str) -> Option<Rules> {
    let shapes = match op {
        "Constant" => constant,
        "ConstantOfShape" => constant_of_shape,
        "Range" => range,
        "Shape" => shape,
        "Size" => size,
        _ => return None,
    };
    Some(Rules::shaping(shapes))
}

fn constant(cx: &Ctx) -> Inferred<Vec<Fact>> {
    Ok(vec![constant_value(cx.node)?])
}

/// The value of a `Constant`, from whichever value attribute it has.
fn constant_value(node: &NodeProto) -> Inferred<Fact> {
    if let Some(t) = node.attr_t("value") {
        let fact = Fact::of_tensor(t, None);
        return if fact.shape.is_some() {
            Ok(fact)
        } else {
            Err("invalid value tensor".into())
        };
    }
    if let Some(s) = node
        .attr("sparse_value")
        .and_then(|a| a.sparse_tensor.as_ref())
    {
        let shape = crate::onnx::dims_to_shape(&s.dims)?;
        return Ok(Fact::new(
            shape,
            s.values.as_ref().and_then(|v| v.elem_type().ok()),
        ));
    }
    if let Some(f) = node.attr_f("value_float") {
        return Ok(Fact::with_values(
            vec![],
            Some(DataType::Float),
            Some(Values::Float(vec![f as f64])),
        ));
    }
    if let Some(i) = node.attr_i("value_int") {
        return Ok(Fact::with_values(
            vec![],
            Some(DataType::Int64),
            Some(Values::Int(vec![i])),
        ));
    }
    if let Some(v) = node.attr_floats("value_floats") {
        let values = Values::Float(v.iter().map(|&f| f as f64).collect());
        return Ok(Fact::with_values(
            vec![v.len()],
            Some(DataType::Float),
            Some(values),
        ));
    }
    if let Some(v) = node.attr_ints("value_ints") {
        return Ok(Fact::with_values(
            vec![v.len()],
            Some(DataType::Int64),
            Some(Values::Int(v.to_vec())),
        ));
    }
    if node.attr("value_string").is_some() {
        return Ok(Fact::new(vec![], Some(DataType::String)));
    }
    if let Some(a) = node.attr("value_strings") {
        return Ok(Fact::new(vec![a.strings.len()], Some(DataType::String)));
    }
    Err("Constant without a value attribute".into())
}

fn constant_of_shape(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let shape: Vec<usize> = cx.ints(0)?.iter().map(|&d| d.max(0) as usize).collect();
    let fill = cx.node.attr_t("value").map(|t| Fact::of_tensor(t, None));
    let elem = fill.as_ref().map_or(Some(DataType::Float), |f| f.elem);
    let n: usize = shape.iter().product();
    let values = match fill.and_then(|f| f.values) {
        Some(v) if v.len() == 1 && n <= MAX_FOLDED => Some(v.pick(&vec![0; n])),
        None if n <= MAX_FOLDED => Some(Values::Float(vec![0.0; n])),
        _ => None,
    };
    Ok(vec![Fact::with_values(shape, elem, values)])
}

fn range(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let v = |i| cx.values(i).map(|v| v.floats().first().copied());
    let (Some(start), Some(limit), Some(delta)) = (v(0)?, v(1)?, v(2)?) else {
        return Err("Range arguments must be scalars".into());
    };
    if delta == 0.0 {
        return Err("Range with delta 0".into());
    }
    let n = ((limit - start) / delta).ceil().max(0.0) as usize;
    let values = (n <= MAX_FOLDED).then(|| {
        let v = (0..n).map(|i| start + i as f64 * delta);
        match cx.values(0) {
            Ok(Values::Int(_)) => Values::Int(v.map(|x| x as i64).collect()),
            _ => Values::Float(v.collect()),
        }
    });
    Ok(vec![Fact::with_values(vec![n], cx.elem(0), values)])
}

fn shape(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let r = x.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(cx.node.attr_i("start").unwrap_or(0));
    let end = clamp(cx.node.attr_i("end").unwrap_or(r)).max(start);
    let dims: Vec<i64> = x[start..end].iter().map(|&d| d as i64).collect();
    Ok(vec![Fact::with_values(
        vec![dims.len()],
        Some(DataType::Int64),
        Some(Values::Int(dims)),
    )])
}

fn size(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let n = cx.shape(0)?.iter().product::<usize>() as i64;
    Ok(vec![Fact::with_values(
        vec![],
        Some(DataType::Int64),
        Some(Values::Int(vec![n])),
    )])
}
