//! The two int8 forms, built from a prepared fp32 graph and the layers chosen for int8.
//!
//! - **Dynamic**: each chosen layer's input goes through `DynamicQuantizeLinear` (uint8, scale
//!   and zero point computed per inference), its weights are stored as int8 with one scale per
//!   output channel and zero point 0, and the layer becomes `ConvInteger` / `MatMulInteger`
//!   followed by a `Cast` to float, a multiplication by `input_scale · weight_scale[c]` and
//!   the bias. The weight zero point is one scalar 0: ONNX Runtime's CPU `ConvInteger` refuses
//!   per-channel zero points, and symmetric per-channel weights need none.
//! - **Static (QDQ)**: every tensor that enters or leaves a quantized node gets a
//!   `QuantizeLinear -> DequantizeLinear` pair (uint8, asymmetric, range from calibration);
//!   weights are int8 per channel behind a `DequantizeLinear` with `axis`, biases int32 in
//!   the accumulator's scale. A ReLU or `Clip(0, max)` right after a quantized node is folded
//!   into the quantization of its output (a uint8 range starting at 0 clamps exactly like it),
//!   which is the pattern ONNX Runtime fuses into `QLinearConv` / `QLinearMatMul`. Pools and
//!   Adds whose inputs are all quantized are quantized too, so the integer flow is not broken
//!   between layers, and so are the MatMuls and Adds of two activations the caller chooses
//!   ([`activation_ops`]). A layer that reads a MaxPool/AveragePool of float input stays float
//!   ([`StaticPlan::demoted`]).

use std::collections::{HashMap, HashSet};

use crate::onnx::{AttributeProto, DataType, GraphProto, ModelProto, NodeProto, TensorProto};
use crate::variants::fold::drop_unused_initializers;
use crate::variants::graph::{Names, consumers, float_weight, initializer, is_graph_output, node};
use crate::variants::quant::{Layer, activation_params, quantize_bias, quantize_per_channel};

/// Activation-only operators quantized when all their inputs already are.
const PASSTHROUGH: [&str; 4] = ["Add", "MaxPool", "AveragePool", "GlobalAveragePool"];

/// Which nodes and tensors a QDQ model quantizes.
#[derive(Clone, Debug, Default)]
pub(crate) struct StaticPlan {
    compute: HashSet<usize>,
    /// Quantized node -> the ReLU/Clip folded into the quantization of its output.
    fused: HashMap<usize, usize>,
    /// Tensors that get a QuantizeLinear/DequantizeLinear pair, in the names of the prepared
    /// graph, in the order they are produced.
    pub tensors: Vec<String>,
    /// Chosen layers left in float because they read a pool whose input stays float.
    pub demoted: Vec<usize>,
    /// Quantized tensors that take the scale and zero point of another: a MaxPool's output
    /// those of its input. A max of values on one grid is on that grid, and equal parameters
    /// let ONNX Runtime drop the DequantizeLinear/QuantizeLinear around the pool and run it on
    /// uint8 in its NHWC domain (resnet-mini's stem pool: float NCHWc MaxPool with reorders
    /// and Q/DQ around it otherwise).
    pub shared: HashMap<String, String>,
}

/// Pools that ONNX Runtime runs far slower on uint8 in NCHW layout than in float.
const SLOW_INT8_POOLS: [&str; 2] = ["MaxPool", "AveragePool"];

/// Operators on two float activations that int8-static may quantize besides the layers with
/// weights, as ONNX Runtime's quantizer does (it runs them as `QLinearMatMul` and `QLinearAdd`):
/// the MatMuls of attention and residual Adds.
pub(crate) fn activation_ops(graph: &GraphProto, is_float: &dyn Fn(&str) -> bool) -> Vec<usize> {
    let is_activation = |name: &str| !name.is_empty() && initializer(graph, name).is_none();
    graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            n.is_standard()
                && matches!(n.op_type(), "MatMul" | "Add")
                && n.input.len() == 2
                && n.input.iter().all(|s| is_activation(s) && is_float(s))
        })
        .map(|(i, _)| i)
        .collect()
}

/// Plans the QDQ form for `chosen` layers of `graph` and the activation operators `ops` (from
/// [`activation_ops`]). `is_float` says which values are float32.
pub(crate) fn plan_static(
    graph: &GraphProto,
    chosen: &[&Layer],
    ops: &HashSet<usize>,
    is_float: &dyn Fn(&str) -> bool,
) -> StaticPlan {
    let readers = consumers(graph);
    let compute: HashSet<usize> = chosen.iter().map(|l| l.node).collect();
    let mut plan = StaticPlan {
        compute: compute.clone(),
        ..Default::default()
    };
    let mut quantized: HashSet<String> = HashSet::new();
    let mut folded_away: HashSet<usize> = HashSet::new();
    let is_activation = |name: &str| !name.is_empty() && initializer(graph, name).is_none();
    let producers: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    // A pool whose input stays float: quantizing its output makes ONNX Runtime move the
    // QuantizeLinear above the pool and run the pool on uint8 in NCHW layout, many times slower
    // than in float (resnet-mini's stem MaxPool: 196 µs against 4 µs, measured with its
    // profiler). What reads such a pool stays float.
    let from_float_pool = |value: &str, quantized: &HashSet<String>| {
        producers.get(value).is_some_and(|&p| {
            let pool = &graph.node[p];
            SLOW_INT8_POOLS.contains(&pool.op_type()) && !quantized.contains(&pool.input[0])
        })
    };
    for (i, n) in graph.node.iter().enumerate() {
        if folded_away.contains(&i) {
            continue;
        }
        if compute.contains(&i) && from_float_pool(&n.input[0], &quantized) {
            plan.compute.remove(&i);
            plan.demoted.push(i);
            continue;
        }
        let passthrough = !compute.contains(&i)
            && n.is_standard()
            && PASSTHROUGH.contains(&n.op_type())
            && n.input.iter().filter(|s| !s.is_empty()).count()
                == if n.op_type() == "Add" { 2 } else { 1 }
            && n.input
                .iter()
                .all(|s| is_activation(s) && quantized.contains(s));
        let activation_matmul = ops.contains(&i)
            && !compute.contains(&i)
            && n.input
                .iter()
                .all(|s| is_float(s) && !from_float_pool(s, &quantized));
        if !compute.contains(&i) && !passthrough && !activation_matmul {
            continue;
        }
        let inputs = if activation_matmul {
            2
        } else if compute.contains(&i) {
            1
        } else {
            0
        };
        for input in &n.input[..inputs] {
            if quantized.insert(input.clone()) {
                plan.tensors.push(input.clone());
            }
        }
        let mut out = n.output[0].clone();
        if (compute.contains(&i) || n.op_type() == "Add")
            && let Some(a) = foldable_activation(graph, &readers, &out)
        {
            plan.fused.insert(i, a);
            folded_away.insert(a);
            out = graph.node[a].output[0].clone();
        }
        if n.op_type() == "MaxPool" && quantized.contains(&n.input[0]) {
            plan.shared.insert(out.clone(), n.input[0].clone());
        }
        // A graph output stays exactly what the layer computed: ONNX Runtime runs a Gemm or
        // MatMul whose output is not quantized as an integer kernel with a float output.
        if !is_graph_output(graph, &out) && quantized.insert(out.clone()) {
            plan.tensors.push(out);
        }
    }
    plan
}

/// The ReLU or `Clip(0, max)` that alone reads `value`, when its clamping can be left to the
/// quantization of its output.
fn foldable_activation(
    graph: &GraphProto,
    readers: &HashMap<String, Vec<usize>>,
    value: &str,
) -> Option<usize> {
    if is_graph_output(graph, value) {
        return None;
    }
    let [a] = readers.get(value)?.as_slice() else {
        return None;
    };
    let act = &graph.node[*a];
    if !act.is_standard() || is_graph_output(graph, &act.output[0]) {
        return None;
    }
    let clamps_at_zero = match act.op_type() {
        "Relu" => true,
        // Opset 11+: bounds as inputs. The minimum must be exactly 0.
        "Clip" => act
            .input
            .get(1)
            .filter(|m| !m.is_empty())
            .and_then(|m| float_weight(graph, m))
            .is_some_and(|(_, v)| v == [0.0]),
        _ => false,
    };
    clamps_at_zero.then_some(*a)
}

/// Builds the QDQ model. `ranges` holds the calibrated range of every tensor of `plan`.
pub(crate) fn build_static(
    prepared: &ModelProto,
    layers: &[&Layer],
    plan: &StaticPlan,
    ranges: &HashMap<String, (f32, f32)>,
) -> ModelProto {
    let mut model = prepared.clone();
    let graph = model.graph.as_mut().expect("prepared models have a graph");
    let source = graph.clone();
    let mut names = Names::of(&source);
    let by_node: HashMap<usize, &Layer> = layers.iter().map(|l| (l.node, *l)).collect();
    let planned: HashSet<&str> = plan.tensors.iter().map(String::as_str).collect();
    let folded_away: HashSet<usize> = plan.fused.values().copied().collect();

    // The scale of each quantized tensor, for the biases of the layers that read it.
    let mut qparams: HashMap<String, f32> = HashMap::new();
    let mut dequantized: HashMap<String, String> = HashMap::new();
    let mut nodes: Vec<NodeProto> = Vec::new();
    let mut initializers: Vec<TensorProto> = Vec::new();

    let emit_qdq = |t: &str,
                    nodes: &mut Vec<NodeProto>,
                    initializers: &mut Vec<TensorProto>,
                    names: &mut Names,
                    qparams: &mut HashMap<String, f32>,
                    dequantized: &mut HashMap<String, String>| {
        let of = plan.shared.get(t).map_or(t, String::as_str);
        let (lo, hi) = ranges.get(of).copied().unwrap_or((0.0, 0.0));
        let (scale, zp) = activation_params(lo, hi);
        let scale_name = names.fresh(&format!("{t}.scale"));
        let zp_name = names.fresh(&format!("{t}.zero_point"));
        initializers.push(TensorProto::from_f32(&scale_name, &[], &[scale]));
        initializers.push(TensorProto::from_raw(
            &zp_name,
            DataType::Uint8,
            &[],
            vec![zp],
        ));
        let q = names.fresh(&format!("{t}.quantized"));
        let dq = names.fresh(&format!("{t}.dequantized"));
        let q_node = names.fresh(&format!("{t}.QuantizeLinear"));
        let dq_node = names.fresh(&format!("{t}.DequantizeLinear"));
        nodes.push(node(
            "QuantizeLinear",
            &q_node,
            &[t, &scale_name, &zp_name],
            &[&q],
            vec![],
        ));
        nodes.push(node(
            "DequantizeLinear",
            &dq_node,
            &[&q, &scale_name, &zp_name],
            &[&dq],
            vec![],
        ));
        qparams.insert(t.to_string(), scale);
        dequantized.insert(t.to_string(), dq);
    };

    for input in &source.input {
        if planned.contains(input.name()) {
            emit_qdq(
                input.name(),
                &mut nodes,
                &mut initializers,
                &mut names,
                &mut qparams,
                &mut dequantized,
            );
        }
    }
    let mut weight_dq: HashMap<String, (String, Vec<f32>)> = HashMap::new();
    for (i, original) in source.node.iter().enumerate() {
        if folded_away.contains(&i) {
            continue;
        }
        let mut n = original.clone();
        for input in n.input.iter_mut() {
            if let Some(dq) = dequantized.get(input.as_str()) {
                *input = dq.clone();
            }
        }
        if let Some(layer) = by_node.get(&i).filter(|_| plan.compute.contains(&i)) {
            let (dq, weight_scales) = weight_dq
                .entry(layer.weight.clone())
                .or_insert_with(|| {
                    quantize_weight_qdq(&source, layer, &mut names, &mut nodes, &mut initializers)
                })
                .clone();
            n.input[1] = dq;
            let input_scale = qparams.get(&original.input[0]).copied();
            if let (Some(input_scale), Some(bias)) = (
                input_scale,
                quantizable_bias(&source, original, weight_scales.len()),
            ) {
                let (values, scales) = quantize_bias(&bias.1, input_scale, &weight_scales);
                let q_name = names.fresh(&format!("{}.quantized", bias.0));
                let s_name = names.fresh(&format!("{}.scale", bias.0));
                let dq_name = names.fresh(&format!("{}.dequantized", bias.0));
                let dq_node = names.fresh(&format!("{}.DequantizeLinear", bias.0));
                let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                initializers.push(TensorProto::from_raw(
                    &q_name,
                    DataType::Int32,
                    &[values.len()],
                    bytes,
                ));
                initializers.push(TensorProto::from_f32(&s_name, &[scales.len()], &scales));
                nodes.push(node(
                    "DequantizeLinear",
                    &dq_node,
                    &[&q_name, &s_name],
                    &[&dq_name],
                    vec![AttributeProto::int("axis", 0)],
                ));
                n.input[2] = dq_name;
            }
        }
        if let Some(&a) = plan.fused.get(&i) {
            n.output[0] = source.node[a].output[0].clone();
        }
        let outputs = n.output.clone();
        nodes.push(n);
        for o in outputs.iter().filter(|o| planned.contains(o.as_str())) {
            emit_qdq(
                o,
                &mut nodes,
                &mut initializers,
                &mut names,
                &mut qparams,
                &mut dequantized,
            );
        }
    }
    graph.node = nodes;
    graph.initializer.extend(initializers);
    drop_unused_initializers(graph);
    model
}

/// Int8 weight initializer, per-channel scales and zero points, and the DequantizeLinear that
/// reads them; returns the DequantizeLinear's output and the scales.
fn quantize_weight_qdq(
    graph: &GraphProto,
    layer: &Layer,
    names: &mut Names,
    nodes: &mut Vec<NodeProto>,
    initializers: &mut Vec<TensorProto>,
) -> (String, Vec<f32>) {
    let (shape, values) = float_weight(graph, &layer.weight).expect("layers have float weights");
    let q = quantize_per_channel(&shape, &values, layer.channel_axis);
    let w = &layer.weight;
    let q_name = names.fresh(&format!("{w}.quantized"));
    let s_name = names.fresh(&format!("{w}.scale"));
    let z_name = names.fresh(&format!("{w}.zero_point"));
    let dq = names.fresh(&format!("{w}.dequantized"));
    let dq_node = names.fresh(&format!("{w}.DequantizeLinear"));
    let channels = q.scales.len();
    initializers.push(TensorProto::from_raw(
        &q_name,
        DataType::Int8,
        &shape,
        q.values.iter().map(|&v| v as u8).collect(),
    ));
    initializers.push(TensorProto::from_f32(&s_name, &[channels], &q.scales));
    initializers.push(TensorProto::from_raw(
        &z_name,
        DataType::Int8,
        &[channels],
        vec![0; channels],
    ));
    nodes.push(node(
        "DequantizeLinear",
        &dq_node,
        &[&q_name, &s_name, &z_name],
        &[&dq],
        vec![AttributeProto::int("axis", layer.channel_axis as i64)],
    ));
    (dq, q.scales)
}

/// The float bias of a Conv (input 2) or Gemm (input 2, one value per output, `beta` 1), which
/// can be stored as int32.
fn quantizable_bias(
    graph: &GraphProto,
    n: &NodeProto,
    channels: usize,
) -> Option<(String, Vec<f32>)> {
    let name = n.input.get(2).filter(|b| !b.is_empty())?;
    if n.op_type() == "Gemm" && n.attr_f("beta").unwrap_or(1.0) != 1.0 {
        return None;
    }
    let (shape, values) = float_weight(graph, name)?;
    (shape == [channels]).then(|| (name.clone(), values))
}

/// Builds the dynamic int8 model for `chosen` layers.
pub(crate) fn build_dynamic(prepared: &ModelProto, chosen: &[&Layer]) -> ModelProto {
    let mut model = prepared.clone();
    let graph = model.graph.as_mut().expect("prepared models have a graph");
    let source = graph.clone();
    let mut names = Names::of(&source);
    let by_node: HashMap<usize, &Layer> = chosen.iter().map(|l| (l.node, *l)).collect();
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    let weight_zero = names.fresh("int8_weight_zero_point");
    initializers.push(TensorProto::from_raw(
        &weight_zero,
        DataType::Int8,
        &[],
        vec![0],
    ));
    // One DynamicQuantizeLinear per quantized input value: (quantized, scale, zero point).
    let mut quantized_inputs: HashMap<String, [String; 3]> = HashMap::new();
    // Each quantized weight by (weight, op, channel axis, Gemm alpha's bits): its int8
    // initializer, its scales' initializer and their shape.
    type WeightUse = (String, String, usize, u32);
    let mut quantized_weights: HashMap<WeightUse, (String, String, Vec<usize>)> = HashMap::new();
    for (i, original) in source.node.iter().enumerate() {
        let Some(layer) = by_node.get(&i) else {
            nodes.push(original.clone());
            continue;
        };
        let x = &original.input[0];
        let [xq, xs, xz] = quantized_inputs
            .entry(x.clone())
            .or_insert_with(|| {
                let outs = [
                    names.fresh(&format!("{x}.quantized")),
                    names.fresh(&format!("{x}.scale")),
                    names.fresh(&format!("{x}.zero_point")),
                ];
                let name = names.fresh(&format!("{x}.DynamicQuantizeLinear"));
                nodes.push(node(
                    "DynamicQuantizeLinear",
                    &name,
                    &[x],
                    &[&outs[0], &outs[1], &outs[2]],
                    vec![],
                ));
                outs
            })
            .clone();
        let op = original.op_type();
        let out = &original.output[0];
        let alpha = if op == "Gemm" {
            original.attr_f("alpha").unwrap_or(1.0)
        } else {
            1.0
        };
        // A weight several layers share (an unrolled recurrent cell reads one matrix per time
        // step) is stored once: one int8 copy per use made a variant larger than its fp32 source.
        let key = (
            layer.weight.clone(),
            op.to_string(),
            layer.channel_axis,
            alpha.to_bits(),
        );
        let (w_name, ws_name, scale_shape) = quantized_weights
            .entry(key)
            .or_insert_with(|| {
                let (shape, values) =
                    float_weight(&source, &layer.weight).expect("layers have float weights");
                let q = quantize_per_channel(&shape, &values, layer.channel_axis);
                // MatMulInteger wants B as [K, N]: a Gemm with transB stores [N, K].
                let (stored_shape, stored): (Vec<usize>, Vec<i8>) =
                    if op == "Gemm" && layer.channel_axis == 0 {
                        let (n, k) = (shape[0], shape[1]);
                        let mut t = vec![0i8; n * k];
                        for r in 0..n {
                            for c in 0..k {
                                t[c * n + r] = q.values[r * k + c];
                            }
                        }
                        (vec![k, n], t)
                    } else {
                        (shape.clone(), q.values.clone())
                    };
                let w_name = names.fresh(&format!("{}.quantized", layer.weight));
                initializers.push(TensorProto::from_raw(
                    &w_name,
                    DataType::Int8,
                    &stored_shape,
                    stored.iter().map(|&v| v as u8).collect(),
                ));
                let scales: Vec<f32> = q.scales.iter().map(|s| s * alpha).collect();
                // Per-channel scales broadcast on the channel axis of the output: [M, 1, 1] for a
                // 2-D Conv's [N, M, H, W], [N] for the last axis of a matrix product.
                let scale_shape: Vec<usize> = if op == "Conv" {
                    std::iter::once(scales.len())
                        .chain(std::iter::repeat_n(1, shape.len() - 2))
                        .collect()
                } else {
                    vec![scales.len()]
                };
                let ws_name = names.fresh(&format!("{}.scale", layer.weight));
                initializers.push(TensorProto::from_f32(&ws_name, &scale_shape, &scales));
                (w_name, ws_name, scale_shape)
            })
            .clone();
        let int32 = names.fresh(&format!("{out}.int32"));
        let integer_node = names.fresh(&format!(
            "{}.integer",
            crate::variants::graph::label(original)
        ));
        let (integer_op, attrs) = if op == "Conv" {
            ("ConvInteger", original.attribute.clone())
        } else {
            ("MatMulInteger", vec![])
        };
        nodes.push(node(
            integer_op,
            &integer_node,
            &[&xq, &w_name, &xz, &weight_zero],
            &[&int32],
            attrs,
        ));
        let as_float = names.fresh(&format!("{out}.float"));
        nodes.push(node(
            "Cast",
            &names.fresh(&format!("{out}.Cast")),
            &[&int32],
            &[&as_float],
            vec![AttributeProto::int("to", DataType::Float as i64)],
        ));
        let scale = names.fresh(&format!("{out}.scale"));
        nodes.push(node(
            "Mul",
            &names.fresh(&format!("{out}.scale_product")),
            &[&xs, &ws_name],
            &[&scale],
            vec![],
        ));
        let bias = dynamic_bias(
            &source,
            original,
            &scale_shape,
            &mut names,
            &mut initializers,
        );
        let scaled = if bias.is_some() {
            names.fresh(&format!("{out}.scaled"))
        } else {
            out.clone()
        };
        nodes.push(node(
            "Mul",
            &names.fresh(&format!("{out}.rescale")),
            &[&as_float, &scale],
            &[&scaled],
            vec![],
        ));
        if let Some(bias) = bias {
            nodes.push(node(
                "Add",
                &names.fresh(&format!("{out}.bias")),
                &[&scaled, &bias],
                &[out],
                vec![],
            ));
        }
    }
    graph.node = nodes;
    graph.initializer.extend(initializers);
    drop_unused_initializers(graph);
    model
}

/// The bias added after the rescaling: a Conv's bias reshaped to broadcast on the channel axis,
/// a Gemm's `beta · C`.
fn dynamic_bias(
    graph: &GraphProto,
    n: &NodeProto,
    scale_shape: &[usize],
    names: &mut Names,
    initializers: &mut Vec<TensorProto>,
) -> Option<String> {
    let name = n.input.get(2).filter(|b| !b.is_empty())?;
    match n.op_type() {
        "Conv" => {
            let (_, values) = float_weight(graph, name)?;
            let new = names.fresh(&format!("{name}.broadcast"));
            initializers.push(TensorProto::from_f32(&new, scale_shape, &values));
            Some(new)
        }
        "Gemm" => {
            let beta = n.attr_f("beta").unwrap_or(1.0);
            if beta == 1.0 {
                return Some(name.clone());
            }
            let (shape, values) = float_weight(graph, name)?;
            let new = names.fresh(&format!("{name}.beta"));
            let scaled: Vec<f32> = values.iter().map(|v| v * beta).collect();
            initializers.push(TensorProto::from_f32(&new, &shape, &scaled));
            Some(new)
        }
        _ => None,
    }
}
