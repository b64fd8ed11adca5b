//! Quantization arithmetic (per-channel symmetric int8 weights, asymmetric uint8 activations,
//! int32 biases) and the layers the int8 recipes quantize.

use crate::onnx::{GraphProto, NodeProto};
use crate::variants::graph::{float_weight, initializer, label};

/// Int8 weights use the symmetric range [-127, 127]: -128 is left out so that a weight and its
/// negation quantize to opposite values, as ONNX Runtime's quantizer does.
pub const WEIGHT_QMAX: f32 = 127.0;

/// A weight tensor quantized per output channel: `w ≈ q · scale[channel]`, zero point 0.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedWeight {
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
}

/// Quantizes `values` (of `shape`) per slice along `axis`, symmetric, rounding half to even as
/// ONNX `QuantizeLinear` does. A channel of zeros gets scale 1 (any scale represents it).
pub fn quantize_per_channel(shape: &[usize], values: &[f32], axis: usize) -> QuantizedWeight {
    let channels = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let channel_of = |i: usize| (i / inner) % channels;
    let mut amax = vec![0f32; channels];
    for (i, &v) in values.iter().enumerate() {
        let c = channel_of(i);
        amax[c] = amax[c].max(v.abs());
    }
    let scales: Vec<f32> = amax
        .iter()
        .map(|&m| if m > 0.0 { m / WEIGHT_QMAX } else { 1.0 })
        .collect();
    let values = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            (v / scales[channel_of(i)])
                .round_ties_even()
                .clamp(-WEIGHT_QMAX, WEIGHT_QMAX) as i8
        })
        .collect();
    QuantizedWeight { values, scales }
}

/// Scale and zero point of an asymmetric uint8 activation covering `[lo, hi]` widened to hold
/// 0 (so that zero padding and ReLU outputs are exact).
pub fn activation_params(lo: f32, hi: f32) -> (f32, u8) {
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zero_point = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as u8;
    (scale, zero_point)
}

/// An int32 bias in the accumulator's scale `input_scale · weight_scale[c]`.
pub fn quantize_bias(
    bias: &[f32],
    input_scale: f32,
    weight_scales: &[f32],
) -> (Vec<i32>, Vec<f32>) {
    let scales: Vec<f32> = weight_scales.iter().map(|w| w * input_scale).collect();
    let values = bias
        .iter()
        .zip(&scales)
        .map(|(b, s)| {
            (b / s)
                .round_ties_even()
                .clamp(i32::MIN as f32, i32::MAX as f32) as i32
        })
        .collect();
    (values, scales)
}

/// A layer with float weights held by an initializer, which the int8 recipes can quantize.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// Index of the node in the prepared graph.
    pub node: usize,
    pub label: String,
    pub op: String,
    /// The weight initializer.
    pub weight: String,
    pub weight_shape: Vec<usize>,
    /// The axis of the weight that indexes output channels.
    pub channel_axis: usize,
}

/// Conv, Gemm (not transposing its input) and MatMul nodes whose second input is a float
/// initializer and whose first is not, in graph order.
pub fn layers(graph: &GraphProto) -> Vec<Layer> {
    graph
        .node
        .iter()
        .enumerate()
        .filter_map(|(i, _)| layer_at(graph, i))
        .collect()
}

/// The layer at node `index`, when that node is one.
pub fn layer_at(graph: &GraphProto, index: usize) -> Option<Layer> {
    let node: &NodeProto = graph.node.get(index)?;
    if !node.is_standard() || node.input.len() < 2 {
        return None;
    }
    if initializer(graph, &node.input[0]).is_some() {
        return None;
    }
    let (shape, _) = float_weight(graph, &node.input[1])?;
    let channel_axis = match (node.op_type(), shape.len()) {
        ("Conv", 3..=5) => 0,
        ("Gemm", 2) if node.attr_i("transA").unwrap_or(0) == 0 => {
            if node.attr_i("transB").unwrap_or(0) == 1 {
                0
            } else {
                1
            }
        }
        ("MatMul", 2) => 1,
        _ => return None,
    };
    Some(Layer {
        node: index,
        label: label(node),
        op: node.op_type().to_string(),
        weight: node.input[1].clone(),
        weight_shape: shape,
        channel_axis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_come_back_within_half_a_step_per_channel() {
        // Two channels of very different ranges: per-channel scales keep the small one precise.
        let shape = [2, 3];
        let values = [0.5, -1.0, 0.25, 0.001, -0.003, 0.002];
        let q = quantize_per_channel(&shape, &values, 0);
        assert_eq!(q.scales, vec![1.0 / 127.0, 0.003 / 127.0]);
        for (i, &v) in values.iter().enumerate() {
            let s = q.scales[i / 3];
            let back = q.values[i] as f32 * s;
            assert!(
                (back - v).abs() <= s / 2.0 * 1.0001,
                "{v} -> {back} (step {s})"
            );
        }
        assert_eq!(
            q.values[1], -127,
            "the largest magnitude maps to the end of the range"
        );
        // Along axis 1 (MatMul [K, N] weights: one scale per column).
        let q = quantize_per_channel(&[2, 2], &[1.0, 0.05, -0.6, 0.2], 1);
        assert_eq!(q.scales, vec![1.0 / 127.0, 0.2 / 127.0]);
        assert_eq!(q.values, vec![127, 32, -76, 127]);
        let zeros = quantize_per_channel(&[1, 2], &[0.0, 0.0], 0);
        assert_eq!((zeros.values, zeros.scales), (vec![0, 0], vec![1.0]));
    }

    #[test]
    fn activation_ranges_hold_zero_exactly() {
        let (s, z) = activation_params(0.0, 6.0);
        assert_eq!((s, z), (6.0 / 255.0, 0));
        let (s, z) = activation_params(-1.0, 3.0);
        assert_eq!(s, 4.0 / 255.0);
        assert_eq!(
            z, 64,
            "0 is the integer 64: it quantizes and dequantizes exactly"
        );
        let (s, z) = activation_params(2.0, 4.0);
        assert_eq!((s, z), (4.0 / 255.0, 0), "the range is widened to hold 0");
        assert_eq!(activation_params(0.0, 0.0), (1.0, 0));
    }

    #[test]
    fn biases_use_the_accumulator_scale() {
        let (q, s) = quantize_bias(&[0.5, -0.25], 0.1, &[0.01, 0.05]);
        assert_eq!(s, vec![0.1 * 0.01, 0.1 * 0.05]);
        assert_eq!(q, vec![500, -50]);
    }
}
