//! Mutations of ONNX files: byte-wise (bit flips, interesting bytes, truncation, a range
//! removed or repeated, a splice with another input) and through the protobuf structure (a
//! declared dimension, an attribute's integers, a tensor's dims or data, an operator's type, a
//! node's inputs), so that most mutants still decode and reach shape inference and the variants.

use chipbench_optimize::ModelProto;
use chipbench_optimize::onnx::tensor_shape_proto::dimension::Value as DimValue;
use chipbench_optimize::onnx::type_proto::Value as TypeValue;
use chipbench_optimize::onnx::{GraphProto, ValueInfoProto};
use prost::Message;
use rand::Rng;
use rand::seq::IndexedRandom;

/// Values that break arithmetic on shapes: empty, negative, overflowing.
const DIMS: [i64; 10] = [0, 1, -1, -7, 2, 3, 255, 1 << 31, i64::MAX, i64::MIN];
/// Operators a node may turn into, among those shape inference and the variants handle.
const OPS: [&str; 16] = [
    "Conv",
    "MatMul",
    "Gemm",
    "Add",
    "Relu",
    "Reshape",
    "Transpose",
    "Concat",
    "Gather",
    "Expand",
    "Slice",
    "Softmax",
    "Split",
    "Unsqueeze",
    "QuantizeLinear",
    "Flatten",
];

/// A mutant of `input`; `other` is spliced in now and then.
pub fn mutate(input: &[u8], other: &[u8], rng: &mut impl Rng) -> Vec<u8> {
    if rng.random_bool(0.7)
        && let Ok(mut model) = ModelProto::decode(input)
        && let Some(graph) = model.graph.as_mut()
    {
        for _ in 0..rng.random_range(1..=3) {
            structural(graph, rng);
        }
        return model.encode_to_vec();
    }
    bytes(input, other, rng)
}

fn structural(graph: &mut GraphProto, rng: &mut impl Rng) {
    match rng.random_range(0..7) {
        0 => {
            let values: Vec<&mut ValueInfoProto> = graph
                .input
                .iter_mut()
                .chain(graph.output.iter_mut())
                .chain(graph.value_info.iter_mut())
                .collect();
            if let Some(value) = pick_mut(values, rng)
                && let Some(TypeValue::TensorType(t)) =
                    value.r#type.as_mut().and_then(|t| t.value.as_mut())
                && let Some(shape) = t.shape.as_mut()
            {
                match shape.dim.len() {
                    0 => shape.dim.push(Default::default()),
                    n => {
                        let dim = &mut shape.dim[rng.random_range(0..n)];
                        dim.value = Some(if rng.random_bool(0.8) {
                            DimValue::DimValue(*DIMS.choose(rng).unwrap())
                        } else {
                            DimValue::DimParam("batch".into())
                        });
                    }
                }
            }
        }
        1 => {
            if let Some(node) = pick_mut(graph.node.iter_mut().collect(), rng)
                && let Some(attribute) = pick_mut(node.attribute.iter_mut().collect(), rng)
            {
                match attribute.ints.len() {
                    0 => attribute.i = Some(*DIMS.choose(rng).unwrap()),
                    n => attribute.ints[rng.random_range(0..n)] = *DIMS.choose(rng).unwrap(),
                }
            }
        }
        2 => {
            if let Some(tensor) = pick_mut(graph.initializer.iter_mut().collect(), rng) {
                match tensor.dims.len() {
                    0 => tensor.dims.push(*DIMS.choose(rng).unwrap()),
                    n => tensor.dims[rng.random_range(0..n)] = *DIMS.choose(rng).unwrap(),
                }
            }
        }
        3 => {
            if let Some(tensor) = pick_mut(graph.initializer.iter_mut().collect(), rng)
                && let Some(raw) = tensor.raw_data.as_mut()
            {
                let keep = rng.random_range(0..=raw.len());
                raw.truncate(keep);
            }
        }
        4 => {
            if let Some(node) = pick_mut(graph.node.iter_mut().collect(), rng) {
                node.op_type = Some(OPS.choose(rng).unwrap().to_string());
            }
        }
        5 => {
            let names: Vec<String> = graph
                .node
                .iter()
                .flat_map(|n| n.output.iter().chain(&n.input))
                .cloned()
                .collect();
            if let Some(node) = pick_mut(graph.node.iter_mut().collect(), rng) {
                match (node.input.len(), names.choose(rng)) {
                    (0, Some(name)) => node.input.push(name.clone()),
                    (n, Some(name)) if rng.random_bool(0.5) => {
                        node.input[rng.random_range(0..n)] = name.clone()
                    }
                    (n, _) if n > 0 => {
                        node.input.remove(rng.random_range(0..n));
                    }
                    _ => {}
                }
            }
        }
        _ => {
            if !graph.node.is_empty() {
                let i = rng.random_range(0..graph.node.len());
                if rng.random_bool(0.5) {
                    graph.node.remove(i);
                } else {
                    let copy = graph.node[i].clone();
                    graph.node.push(copy);
                }
            }
        }
    }
}

fn bytes(input: &[u8], other: &[u8], rng: &mut impl Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    if out.is_empty() {
        return other.to_vec();
    }
    match rng.random_range(0..6) {
        0 => {
            let i = rng.random_range(0..out.len());
            out[i] ^= 1 << rng.random_range(0..8);
        }
        1 => {
            let i = rng.random_range(0..out.len());
            out[i] = *[0u8, 0xff, 0x7f, 0x80, 0x01].choose(rng).unwrap();
        }
        2 => out.truncate(rng.random_range(0..out.len())),
        3 => {
            let start = rng.random_range(0..out.len());
            let end = rng.random_range(start..=out.len().min(start + 64));
            out.drain(start..end);
        }
        4 => {
            let start = rng.random_range(0..out.len());
            let end = rng.random_range(start..=out.len().min(start + 64));
            let copy = out[start..end].to_vec();
            let at = rng.random_range(0..=out.len());
            out.splice(at..at, copy);
        }
        _ => {
            let cut = rng.random_range(0..=out.len());
            let from = rng.random_range(0..=other.len());
            out.truncate(cut);
            out.extend_from_slice(&other[from..]);
        }
    }
    out
}

fn pick_mut<'a, T>(mut items: Vec<&'a mut T>, rng: &mut impl Rng) -> Option<&'a mut T> {
    if items.is_empty() {
        return None;
    }
    let i = rng.random_range(0..items.len());
    Some(items.swap_remove(i))
}
