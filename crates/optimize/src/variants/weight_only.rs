//! Weight-only quantization (`int8-weight`, `int4-weight`): the weights of MatMul layers in
//! blocks of [`BLOCK`] consecutive values along the input dimension, each block with a symmetric
//! scale of its own (largest magnitude / 127 for 8 bits, / 7 for 4 bits); activations stay float.
//!
//! Representation: standard `DequantizeLinear` on the weights, which every engine runs. The
//! blocks of a `[K, N]` weight are laid out as the rows of an int8 `[N * K/BLOCK, BLOCK]`
//! tensor (row `n * K/BLOCK + b` holds `W[b*BLOCK.., n]`), so one per-axis scale per row is one
//! scale per block; `Reshape` to `[N, K]` and `Transpose` give the float `[K, N]` weight back.
//! 4-bit values are stored one per int8 byte: the file is not smaller than 8-bit's (ONNX
//! Runtime's packed `MatMulNBits` is not built here).

use crate::onnx::{AttributeProto as A, DataType, GraphProto, NodeProto, TensorProto};

use super::KeptLayer;

/// Values per block along a weight's input dimension.
pub const BLOCK: usize = 32;

/// A `[K, N]` weight quantized in blocks: `values` in the row layout the module describes,
/// `scales` one per row.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockQuantized {
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
}

/// The largest quantized magnitude of `bits` (symmetric: -max..=max).
pub fn max_level(bits: u32) -> f32 {
    ((1i32 << (bits - 1)) - 1) as f32
}

/// Quantizes `w` (`[k, n]`, row-major, `k` a multiple of [`BLOCK`]) to `bits` per value.
pub fn quantize(w: &[f32], k: usize, n: usize, bits: u32) -> BlockQuantized {
    let blocks = k / BLOCK;
    let level = max_level(bits);
    let mut values = Vec::with_capacity(k * n);
    let mut scales = Vec::with_capacity(blocks * n);
    for col in 0..n {
        for b in 0..blocks {
            let block = (0..BLOCK).map(|i| w[(b * BLOCK + i) * n + col]);
            let largest = block.clone().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if largest > 0.0 { largest / level } else { 1.0 };
            scales.push(scale);
            values.extend(block.map(|v| (v / scale).round().clamp(-level, level) as i8));
        }
    }
    BlockQuantized { values, scales }
}

/// The float `[k, n]` weight `q` stands for, as `DequantizeLinear` computes it.
pub fn dequantize(q: &BlockQuantized, k: usize, n: usize) -> Vec<f32> {
    let blocks = k / BLOCK;
    let mut w = vec![0f32; k * n];
    for col in 0..n {
        for b in 0..blocks {
            let row = col * blocks + b;
            for i in 0..BLOCK {
                w[(b * BLOCK + i) * n + col] = q.values[row * BLOCK + i] as f32 * q.scales[row];
            }
        }
    }
    w
}

/// Quantizes the weight of every MatMul whose second input is a float `[K, N]` initializer with
/// `K` a multiple of [`BLOCK`]; returns the layers converted and the MatMuls left in float with
/// the reason.
pub fn convert(graph: &mut GraphProto, bits: u32) -> (Vec<String>, Vec<KeptLayer>) {
    let mut converted = Vec::new();
    let mut kept = Vec::new();
    let mut prologue = Vec::new();
    for index in 0..graph.node.len() {
        let node = &graph.node[index];
        if node.op_type() != "MatMul" {
            continue;
        }
        let keep = |reason: &str| KeptLayer {
            node: node.name().to_string(),
            op: "MatMul".into(),
            reason: reason.into(),
        };
        let weight = node.input.get(1).cloned().unwrap_or_default();
        let Some(init) = graph.initializer.iter().find(|t| t.name() == weight) else {
            kept.push(keep("its weight is computed, not an initializer"));
            continue;
        };
        let float = init.data_type == Some(DataType::Float as i32);
        let (k, n) = match init.dims[..] {
            [k, n] if float && k > 0 && n > 0 && (k as usize).is_multiple_of(BLOCK) => {
                (k as usize, n as usize)
            }
            _ => {
                kept.push(keep(&format!(
                    "its weight is not a float [K, N] with K a multiple of {BLOCK}"
                )));
                continue;
            }
        };
        let Ok(values) = init.to_f32() else {
            kept.push(keep("its weight's data cannot be read"));
            continue;
        };
        let q = quantize(&values, k, n, bits);
        let rows = n * k / BLOCK;
        let names = |suffix: &str| format!("{weight}.{suffix}");
        let bytes = q.values.iter().map(|&v| v as u8).collect();
        graph.initializer.push(TensorProto::from_raw(
            &names("quantized"),
            DataType::Int8,
            &[rows, BLOCK],
            bytes,
        ));
        graph
            .initializer
            .push(TensorProto::from_f32(&names("scale"), &[rows], &q.scales));
        graph.initializer.push(TensorProto::from_raw(
            &names("zero_point"),
            DataType::Int8,
            &[rows],
            vec![0; rows],
        ));
        graph.initializer.push(TensorProto::from_i64(
            &names("columns_shape"),
            &[2],
            &[n as i64, k as i64],
        ));
        let node = |op: &str, name: String, inputs: &[String], attrs: Vec<A>| NodeProto {
            input: inputs.to_vec(),
            output: vec![name.clone()],
            name: Some(name),
            op_type: Some(op.into()),
            attribute: attrs,
            ..Default::default()
        };
        prologue.push(node(
            "DequantizeLinear",
            names("dequantized_blocks"),
            &[names("quantized"), names("scale"), names("zero_point")],
            vec![A::int("axis", 0)],
        ));
        prologue.push(node(
            "Reshape",
            names("dequantized_columns"),
            &[names("dequantized_blocks"), names("columns_shape")],
            vec![],
        ));
        prologue.push(node(
            "Transpose",
            names("dequantized"),
            &[names("dequantized_columns")],
            vec![A::ints("perm", &[1, 0])],
        ));
        graph.node[index].input[1] = names("dequantized");
        converted.push(graph.node[index].name().to_string());
    }
    // The dequantization reads initializers only: it can run before every other node.
    graph.node.splice(0..0, prologue);
    super::fold::drop_unused_initializers(graph);
    (converted, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_to_within_half_a_step_and_keep_their_layout() {
        let (k, n) = (64, 3);
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        for bits in [4, 8] {
            let q = quantize(&w, k, n, bits);
            assert_eq!((q.values.len(), q.scales.len()), (k * n, n * 2));
            let back = dequantize(&q, k, n);
            for (i, (a, b)) in w.iter().zip(&back).enumerate() {
                let row = (i % n) * (k / BLOCK) + (i / n) / BLOCK;
                assert!(
                    (a - b).abs() <= q.scales[row] / 2.0 * (1.0 + 1e-6),
                    "{bits}: {a} {b}"
                );
            }
            let level = max_level(bits) as i8;
            assert!(q.values.iter().all(|v| (-level..=level).contains(v)));
        }
    }
}
