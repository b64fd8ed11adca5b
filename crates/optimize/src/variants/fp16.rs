//! Float16: weights stored and computation done in float16, with `Cast`s at the graph inputs
//! and outputs (callers keep feeding and reading float32) and around the operators kept in
//! float32.

use std::collections::{HashMap, HashSet};

use chipbench_core::TensorInfo;
use half::f16;

use crate::error::{Error, Result};
use crate::infer::infer_shapes;
use crate::onnx::{AttributeProto, DataType, ModelProto, NodeProto, TensorProto};
use crate::variants::graph::{Names, consumers, initializer, label, node};

/// Operators computed in float32: reductions and normalizations whose sums lose precision or
/// overflow in float16 (a LayerNormalization variance, a Softmax denominator), exponentials
/// and powers that overflow at 65504, and operators whose float output type is fixed by an
/// attribute rather than by their inputs.
pub const KEPT_IN_FP32: [&str; 20] = [
    "LayerNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "Softmax",
    "LogSoftmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceProd",
    "Exp",
    "Pow",
    "CumSum",
    "ConstantOfShape",
    "RandomNormal",
    "RandomUniform",
    "Range",
];

/// Inputs that stay float32 whatever the data type: (operator, input index).
const FIXED_FLOAT: [(&str, usize); 3] = [("Resize", 1), ("Resize", 2), ("Upsample", 1)];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Precision {
    F32,
    F16,
}

fn precision_of(n: &NodeProto) -> Precision {
    if !n.is_standard() || n.subgraphs().next().is_some() || KEPT_IN_FP32.contains(&n.op_type()) {
        Precision::F32
    } else {
        Precision::F16
    }
}

/// Converts a prepared model; returns it with the labels of the nodes kept in float32.
pub(crate) fn convert(
    model: &ModelProto,
    bound: &[TensorInfo],
) -> Result<(ModelProto, Vec<(String, String)>)> {
    let mut model = model.clone();
    gemm_as_matmul(model.graph.as_mut().expect("prepared models have a graph"));
    let model = &model;
    let inference = infer_shapes(model, bound, None);
    if let Some(u) = inference.unresolved.first() {
        return Err(Error::unsupported(format!(
            "fp16 needs the element type of every value, and shape inference stopped at {u}"
        )));
    }
    let is_float = |name: &str| inference.elem_types.get(name) == Some(&DataType::Float);
    let mut model = model.clone();
    let graph = model.graph.as_mut().expect("prepared models have a graph");
    let source = graph.clone();
    let mut names = Names::of(&source);
    let readers = consumers(&source);

    // Float initializers: converted in place when only float16 computation reads them, copied
    // when float32 computation reads them too.
    let wanted = |n: &NodeProto, input: &str| -> Option<Precision> {
        let position = n.input.iter().position(|x| x == input)?;
        Some(if FIXED_FLOAT.contains(&(n.op_type(), position)) {
            Precision::F32
        } else {
            precision_of(n)
        })
    };
    let mut f16_name: HashMap<String, String> = HashMap::new();
    let mut new_initializers = Vec::new();
    for t in graph.initializer.iter_mut() {
        if t.elem_type().ok() != Some(DataType::Float) {
            continue;
        }
        let name = t.name().to_string();
        let needs: HashSet<Precision> = readers
            .get(&name)
            .into_iter()
            .flatten()
            .filter_map(|&i| wanted(&source.node[i], &name))
            .collect();
        if !needs.contains(&Precision::F16) {
            continue;
        }
        let converted = to_f16(t)?;
        if needs.contains(&Precision::F32) {
            let copy = names.fresh(&format!("{name}.fp16"));
            new_initializers.push(TensorProto {
                name: Some(copy.clone()),
                ..converted
            });
            f16_name.insert(name.clone(), copy);
        } else {
            *t = converted;
            f16_name.insert(name.clone(), name);
        }
    }
    graph.initializer.extend(new_initializers);
    let initializers: HashSet<String> = graph
        .initializer
        .iter()
        .map(|t| t.name().to_string())
        .collect();

    let mut current: HashMap<String, Precision> = HashMap::new();
    for input in &source.input {
        if is_float(input.name()) && initializer(&source, input.name()).is_none() {
            current.insert(input.name().to_string(), Precision::F32);
        }
    }
    let mut casts: HashMap<(String, Precision), String> = HashMap::new();
    let mut nodes = Vec::new();
    let mut kept = Vec::new();
    for original in &source.node {
        let mut n = original.clone();
        let p = precision_of(&n);
        let is_cast = n.op_type() == "Cast" && n.is_standard();
        if p == Precision::F32 && (0..n.output.len()).any(|i| is_float(&n.output[i])) {
            kept.push((label(&n), n.op_type().to_string()));
        }
        for (position, input) in n.input.iter_mut().enumerate() {
            if input.is_empty() || !is_float(input) || is_cast {
                continue;
            }
            let want = if FIXED_FLOAT.contains(&(original.op_type(), position)) {
                Precision::F32
            } else {
                p
            };
            if initializers.contains(input.as_str()) {
                if want == Precision::F16 {
                    *input = f16_name[input.as_str()].clone();
                }
                continue;
            }
            let have = current
                .get(input.as_str())
                .copied()
                .unwrap_or(Precision::F32);
            if have != want {
                let key = (input.clone(), want);
                let cast = match casts.get(&key) {
                    Some(c) => c.clone(),
                    None => {
                        let suffix = if want == Precision::F16 {
                            "fp16"
                        } else {
                            "fp32"
                        };
                        let out = names.fresh(&format!("{input}.{suffix}"));
                        let to = if want == Precision::F16 {
                            DataType::Float16
                        } else {
                            DataType::Float
                        };
                        nodes.push(cast_node(
                            &names.fresh(&format!("{input}.Cast_{suffix}")),
                            input,
                            &out,
                            to,
                        ));
                        casts.insert(key, out.clone());
                        out
                    }
                };
                *input = cast;
            }
        }
        if is_cast {
            // A cast to float32 inside the float16 graph becomes a cast to float16.
            if n.attr_i("to") == Some(DataType::Float as i64) {
                set_cast_target(&mut n, DataType::Float16);
                current.insert(n.output[0].clone(), Precision::F16);
            }
        } else {
            for out in n.output.iter().filter(|o| is_float(o)) {
                current.insert(out.clone(), p);
            }
        }
        nodes.push(n);
    }
    // Graph outputs stay float32: the float16 value gets a new name and a Cast restores it.
    for output in &source.output {
        let name = output.name();
        if current.get(name) != Some(&Precision::F16) {
            continue;
        }
        let renamed = names.fresh(&format!("{name}.fp16"));
        for n in nodes.iter_mut() {
            for v in n.input.iter_mut().chain(n.output.iter_mut()) {
                if v == name {
                    *v = renamed.clone();
                }
            }
        }
        nodes.push(cast_node(
            &names.fresh(&format!("{name}.Cast_fp32")),
            &renamed,
            name,
            DataType::Float,
        ));
    }
    graph.node = nodes;
    Ok((model, kept))
}

/// Writes `Gemm(A, W, C)` with a constant `W` (no `transA`, `alpha` = `beta` = 1) as
/// `MatMul(A, W') + C`, `W'` stored as `[K, N]`: the same function, which tract 0.23.9 runs in
/// float16 (its float16 Gemm fails to load: "Output mismatch after rewiring expansion") and
/// ONNX Runtime fuses back into a Gemm.
fn gemm_as_matmul(graph: &mut crate::onnx::GraphProto) {
    let mut names = Names::of(graph);
    let mut nodes = Vec::with_capacity(graph.node.len());
    for n in std::mem::take(&mut graph.node) {
        let plain = n.op_type() == "Gemm"
            && n.is_standard()
            && n.attr_i("transA").unwrap_or(0) == 0
            && n.attr_f("alpha").unwrap_or(1.0) == 1.0
            && n.attr_f("beta").unwrap_or(1.0) == 1.0;
        let weight = plain
            .then(|| crate::variants::graph::float_weight(graph, &n.input[1]))
            .flatten();
        let Some((shape, values)) = weight.filter(|(s, _)| s.len() == 2) else {
            nodes.push(n);
            continue;
        };
        let w = if n.attr_i("transB").unwrap_or(0) == 1 {
            let (rows, cols) = (shape[0], shape[1]);
            let t: Vec<f32> = (0..rows * cols)
                .map(|i| values[(i % rows) * cols + i / rows])
                .collect();
            let name = names.fresh(&format!("{}.transposed", n.input[1]));
            graph
                .initializer
                .push(TensorProto::from_f32(&name, &[cols, rows], &t));
            name
        } else {
            n.input[1].clone()
        };
        let out = n.output[0].clone();
        let bias = n.input.get(2).filter(|c| !c.is_empty()).cloned();
        let product = if bias.is_some() {
            names.fresh(&format!("{out}.matmul"))
        } else {
            out.clone()
        };
        nodes.push(node(
            "MatMul",
            &names.fresh(&format!("{}.matmul", label(&n))),
            &[&n.input[0], &w],
            &[&product],
            vec![],
        ));
        if let Some(c) = bias {
            nodes.push(node(
                "Add",
                &names.fresh(&format!("{}.bias", label(&n))),
                &[&product, &c],
                &[&out],
                vec![],
            ));
        }
    }
    graph.node = nodes;
    crate::variants::fold::drop_unused_initializers(graph);
}

fn cast_node(name: &str, input: &str, output: &str, to: DataType) -> NodeProto {
    node(
        "Cast",
        name,
        &[input],
        &[output],
        vec![AttributeProto::int("to", to as i64)],
    )
}

fn set_cast_target(n: &mut NodeProto, to: DataType) {
    for a in n.attribute.iter_mut().filter(|a| a.name() == "to") {
        a.i = Some(to as i64);
    }
}

fn to_f16(t: &TensorProto) -> Result<TensorProto> {
    let values = t.to_f32()?;
    let shape = t.shape()?;
    let bytes = values
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect();
    Ok(TensorProto::from_raw(
        t.name(),
        DataType::Float16,
        &shape,
        bytes,
    ))
}
