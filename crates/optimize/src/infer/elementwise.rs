//! Operators that keep their input's shape or broadcast their inputs' shapes: activations and
//! other element-wise maps, casts, arithmetic, comparisons, `Where` and `Expand`.

use super::{Ctx, Fact, Inferred, Inputs, MAX_FOLDED, Rules, Values};
use crate::onnx::DataType;

pub(super) fn rules(op: &str) -> Option<Rules> {
    let shapes = match op {
        "Identity" | "Dropout" => identity,
        op if SHAPE_PRESERVING.contains(&op) => same_as_input,
        "IsNaN" | "IsInf" => predicate,
        "Cast" | "CastLike" => cast,
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "BitShift" | "BitwiseAnd" | "BitwiseOr"
        | "BitwiseXor" | "And" | "Or" | "Xor" | "Equal" | "Less" | "LessOrEqual" | "Greater"
        | "GreaterOrEqual" | "Max" | "Min" | "Sum" | "Mean" | "Where" => broadcasting,
        "Expand" => expand,
        _ => return None,
    };
    Some(Rules::shaping(shapes))
}

/// Operators whose one output has the shape and type of their first input.
#[rustfmt::skip]
const SHAPE_PRESERVING: &[&str] = &[
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Sqrt",
    "Exp", "Log", "Abs", "Neg", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos",
    "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Softplus",
    "Softsign", "Elu", "Selu", "Celu", "Gelu", "Mish", "ThresholdedRelu", "Shrink", "Clip",
    "Softmax", "LogSoftmax", "Hardmax", "LRN", "InstanceNormalization", "GroupNormalization",
    "MeanVarianceNormalization", "LpNormalization", "CumSum", "Trilu", "ReverseSequence", "Not",
    "BitwiseNot",
];

fn identity(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let mut fact = cx.same_as(0)?;
    fact.values = cx.fact(0)?.values.clone();
    let mask = Fact::new(cx.shape(0)?.to_vec(), Some(DataType::Bool));
    Ok(vec![fact, mask])
}

fn same_as_input(cx: &Ctx) -> Inferred<Vec<Fact>> {
    // PRelu's slope broadcasts to X (or, before opset 7, runs along channels): Y is shaped like
    // X either way.
    Ok(vec![cx.same_as(0)?])
}

fn predicate(cx: &Ctx) -> Inferred<Vec<Fact>> {
    Ok(vec![Fact::new(cx.shape(0)?.to_vec(), Some(DataType::Bool))])
}

fn cast(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let to = if cx.node.op_type() == "Cast" {
        DataType::from_code(cx.node.attr_i("to").ok_or("no 'to' attribute")? as i32)
            .map_err(|e| e.to_string())?
    } else {
        cx.elem(1).ok_or("the target type is unknown")?
    };
    let values = cx.fact(0)?.values.as_ref().map(|v| v.cast(to));
    Ok(vec![Fact::with_values(
        cx.shape(0)?.to_vec(),
        Some(to),
        values,
    )])
}

fn broadcasting(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let op = cx.node.op_type();
    let arity = match op {
        "Where" => Some(3),
        "Max" | "Min" | "Sum" | "Mean" => None,
        _ => Some(2),
    };
    if let Some(n) = arity
        && cx.node.input.len() != n
    {
        return Err(format!(
            "{op} takes {n} inputs, this one has {}",
            cx.node.input.len()
        ));
    }
    let shapes: Vec<&[usize]> = (0..cx.node.input.len())
        .map(|i| cx.shape(i))
        .collect::<Inferred<_>>()?;
    let out = broadcast(&shapes)?;
    let elem = match op {
        "And" | "Or" | "Xor" | "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" => {
            Some(DataType::Bool)
        }
        "Where" => cx.elem(1),
        _ => cx.elem(0),
    };
    let values = fold(cx, &out, op);
    Ok(vec![Fact::with_values(out, elem, values)])
}

fn expand(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let shape: Vec<usize> = cx.ints(1)?.iter().map(|&d| d.max(0) as usize).collect();
    Ok(vec![Fact::new(
        broadcast(&[cx.shape(0)?, &shape])?,
        cx.elem(0),
    )])
}

/// Numpy-style broadcasting of several shapes.
pub(super) fn broadcast(shapes: &[&[usize]]) -> Inferred<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    (0..rank)
        .map(|i| {
            let dims = shapes
                .iter()
                .filter_map(|s| (i + s.len()).checked_sub(rank).map(|j| s[j]));
            let mut out = 1;
            for d in dims {
                if d != 1 {
                    if out != 1 && out != d {
                        return Err(format!("shapes {shapes:?} do not broadcast"));
                    }
                    out = d;
                }
            }
            Ok(out)
        })
        .collect()
}

/// Row-major index into a tensor of shape `from` broadcast to `to`, for output position `flat`.
fn broadcast_source(flat: usize, to: &[usize], from: &[usize]) -> usize {
    let mut rem = flat;
    let mut coords = vec![0; to.len()];
    for i in (0..to.len()).rev() {
        coords[i] = rem % to[i].max(1);
        rem /= to[i].max(1);
    }
    let offset = to.len() - from.len();
    from.iter().enumerate().fold(0, |acc, (j, &d)| {
        acc * d + if d == 1 { 0 } else { coords[j + offset] }
    })
}

/// Folds an element-wise operation over inputs whose values are all known.
fn fold(cx: &Ctx, out: &[usize], op: &str) -> Option<Values> {
    let n: usize = out.iter().product();
    if n > MAX_FOLDED {
        return None;
    }
    let args: Vec<(&[usize], &Values)> = (0..cx.node.input.len())
        .map(|i| Some((cx.shape(i).ok()?, cx.values(i).ok()?)))
        .collect::<Option<_>>()?;
    // A damaged model's constant whose values disagree with its shape is left unfolded.
    if args
        .iter()
        .any(|(shape, values)| values.len() != shape.iter().product::<usize>())
    {
        return None;
    }
    let all_int = args.iter().all(|(_, v)| matches!(v, Values::Int(_)));
    let pick = |k: usize, flat: usize| -> (i64, f64) {
        let (shape, values) = args[k];
        let j = broadcast_source(flat, out, shape);
        match values {
            Values::Int(v) => (v[j], v[j] as f64),
            Values::Float(v) => (v[j] as i64, v[j]),
        }
    };
    if op == "Where" {
        let v = (0..n).map(|f| {
            if pick(0, f).0 != 0 {
                pick(1, f)
            } else {
                pick(2, f)
            }
        });
        return Some(if matches!(args[1].1, Values::Int(_)) {
            Values::Int(v.map(|x| x.0).collect())
        } else {
            Values::Float(v.map(|x| x.1).collect())
        });
    }
    let [a, b] = [0, 1];
    if args.len() != 2 {
        return None;
    }
    let cmp = |f: &dyn Fn(f64, f64) -> bool| {
        Values::Int(
            (0..n)
                .map(|i| f(pick(a, i).1, pick(b, i).1) as i64)
                .collect(),
        )
    };
    Some(match op {
        "Equal" => cmp(&|x, y| x == y),
        "Less" => cmp(&|x, y| x < y),
        "Greater" => cmp(&|x, y| x > y),
        "LessOrEqual" => cmp(&|x, y| x <= y),
        "GreaterOrEqual" => cmp(&|x, y| x >= y),
        _ if all_int => {
            let f = |x: i64, y: i64| -> Option<i64> {
                match op {
                    "Add" => x.checked_add(y),
                    "Sub" => x.checked_sub(y),
                    "Mul" => x.checked_mul(y),
                    // ONNX integer division truncates, as Rust's does.
                    "Div" => x.checked_div(y),
                    "Max" => Some(x.max(y)),
                    "Min" => Some(x.min(y)),
                    _ => None,
                }
            };
            Values::Int(
                (0..n)
                    .map(|i| f(pick(a, i).0, pick(b, i).0))
                    .collect::<Option<_>>()?,
            )
        }
        _ => {
            let f = |x: f64, y: f64| match op {
                "Add" => Some(x + y),
                "Sub" => Some(x - y),
                "Mul" => Some(x * y),
                "Div" => Some(x / y),
                "Max" => Some(x.max(y)),
                "Min" => Some(x.min(y)),
                "Pow" => Some(x.powf(y)),
                _ => None,
            };
            Values::Float(
                (0..n)
                    .map(|i| f(pick(a, i).1, pick(b, i).1))
                    .collect::<Option<_>>()?,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasts_numpy_style() {
        assert_eq!(broadcast(&[&[2, 1, 4], &[3, 1]]).unwrap(), vec![2, 3, 4]);
        assert!(broadcast(&[&[2, 3], &[4]]).is_err());
    }
}
