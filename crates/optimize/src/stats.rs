//! What a model costs: parameters, weight bytes, multiply-accumulates, operators.
//!
//! **What counts as a weight.** Constant data is every initializer and sparse initializer, and
//! every tensor held by a `Constant` node (`value`, `value_floats`, `value_ints`,
//! `sparse_value`), in the main graph and in subgraphs. Of it:
//! - tensors of at most one element (epsilons, `Clip` bounds, per-tensor scales and zero points)
//!   and int64 tensors of rank 0 or 1 (the shapes, axes, pads and indices ONNX always types as
//!   int64) are arguments, not weights, and count nowhere;
//! - tensors used only as the scale or zero-point inputs of quantization operators count in
//!   `weight_bytes` but not in `params`, so an int8 variant has the params of its fp32 source;
//!   the packed weight of ONNX Runtime's `MatMulNBits` counts its `K x N` values as params (not
//!   its bytes), so a weight-only variant has its source's params in either representation;
//! - everything else counts in both. A sparse tensor counts its stored values as params, and
//!   its values and indices as bytes.
//!
//! **MACs** are those of Conv, ConvTranspose, Gemm, MatMul, their integer and QLinear forms,
//! ONNX Runtime's `MatMulNBits`, and LSTM/GRU/RNN, at the bound input shapes. Other operators (element-wise, pooling,
//! normalization) count zero. When a node that multiplies cannot be sized — its input shapes
//! are unknown, it sits inside control flow, it is an operator outside the standard domain, or
//! it is one whose count is not implemented (Einsum, Attention) — `macs` is `None` and
//! `macs_unknown` says which node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use chipbench_core::TensorInfo;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::infer::{Inference, Unresolved, infer_shapes};
use crate::onnx::{DataType, GraphProto, ModelProto, NodeProto, SparseTensorProto, TensorProto};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelStats {
    /// Elements of the weight tensors (see the module documentation for what counts).
    pub params: u64,
    /// Bytes the weights and per-channel quantization parameters take as stored (sub-byte types
    /// packed).
    pub weight_bytes: u64,
    /// Params by ONNX element type (`float`, `int8`, `float16`...).
    pub params_by_type: BTreeMap<String, u64>,
    /// Multiply-accumulates of one inference at the bound input shapes; `None` when a node that
    /// multiplies could not be sized.
    pub macs: Option<u64>,
    /// Why `macs` is `None`: the first node that could not be counted, and the cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macs_unknown: Option<String>,
    /// Nodes per operator type, subgraphs included; operators outside the default domain are
    /// prefixed with it (`com.microsoft.FusedConv`).
    pub op_histogram: BTreeMap<String, u64>,
    /// Nodes of the main graph whose output shapes could not be inferred, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shape_issues: Vec<String>,
}

impl ModelStats {
    /// Statistics of a model file, with its inputs bound to `inputs`.
    pub fn of_file(path: &Path, inputs: &[TensorInfo]) -> Result<ModelStats> {
        let model = crate::model::load(path)?;
        Ok(ModelStats::of(
            &model,
            inputs,
            Some(crate::model::model_dir(path)),
        ))
    }

    /// Statistics of a model, with its inputs bound to `inputs`; `model_dir` is where external
    /// data is read from, when the model has any.
    pub fn of(model: &ModelProto, inputs: &[TensorInfo], model_dir: Option<&Path>) -> ModelStats {
        let inference = infer_shapes(model, inputs, model_dir);
        ModelStats::with_inference(model, &inference)
    }

    /// Statistics from shapes already inferred (callers that also need the shapes infer once).
    pub fn with_inference(model: &ModelProto, inference: &Inference) -> ModelStats {
        let mut stats = ModelStats {
            params: 0,
            weight_bytes: 0,
            params_by_type: BTreeMap::new(),
            macs: None,
            macs_unknown: None,
            op_histogram: BTreeMap::new(),
            shape_issues: inference.unresolved.iter().map(|u| u.to_string()).collect(),
        };
        let Some(graph) = model.graph.as_ref() else {
            stats.macs_unknown = Some("the model has no graph".into());
            return stats;
        };
        let mut roles = Roles::default();
        collect_quant_params(graph, &mut roles.quant_params);
        walk_nodes(graph, &mut |node| {
            if let ("com.microsoft", "MatMulNBits", Some(b)) =
                (node.domain(), node.op_type(), node.input.get(1))
            {
                let values = node.attr_i("K").unwrap_or(0) * node.attr_i("N").unwrap_or(0);
                roles.packed.insert(b.as_str(), values.max(0) as u64);
            }
        });
        count_weights(graph, &roles, &mut stats);
        count_ops(graph, &mut stats.op_histogram);
        match count_macs(graph, inference) {
            Ok(macs) => stats.macs = Some(macs),
            Err(why) => stats.macs_unknown = Some(why),
        }
        stats
    }
}

/// What some constants are, for the counts.
#[derive(Default)]
struct Roles<'a> {
    /// Scale and zero-point inputs of quantization operators.
    quant_params: HashSet<&'a str>,
    /// Packed weights, with the number of values they hold.
    packed: HashMap<&'a str, u64>,
}

/// Names used as scale or zero-point inputs of quantization operators, by input position.
fn collect_quant_params<'a>(graph: &'a GraphProto, names: &mut HashSet<&'a str>) {
    let mut used_otherwise = HashSet::new();
    walk_nodes(graph, &mut |node| {
        let positions: &[usize] = match node.op_type() {
            "QuantizeLinear" | "DequantizeLinear" => &[1, 2],
            "QLinearConv" | "QLinearMatMul" => &[1, 2, 4, 5, 6, 7],
            "MatMulInteger" | "ConvInteger" => &[2, 3],
            "MatMulNBits" if node.domain() == "com.microsoft" => &[2, 3],
            "DynamicQuantizeLinear" => &[],
            _ => {
                used_otherwise.extend(node.input.iter().map(String::as_str));
                return;
            }
        };
        for (i, input) in node.input.iter().enumerate() {
            if positions.contains(&i) {
                names.insert(input.as_str());
            } else {
                used_otherwise.insert(input.as_str());
            }
        }
    });
    names.retain(|n| !used_otherwise.contains(n));
}

fn walk_nodes<'a>(graph: &'a GraphProto, f: &mut impl FnMut(&'a NodeProto)) {
    for node in &graph.node {
        f(node);
        for sub in node.subgraphs() {
            walk_nodes(sub, f);
        }
    }
}

/// Whether a constant of this type and shape is a weight rather than an argument.
fn is_weight(dtype: DataType, dims: &[i64]) -> bool {
    let elements: i64 = dims.iter().product();
    elements > 1 && !(dtype == DataType::Int64 && dims.len() <= 1)
}

fn add_weight(
    stats: &mut ModelStats,
    name: &str,
    dtype: DataType,
    dims: &[i64],
    bytes: u64,
    roles: &Roles,
) {
    if !is_weight(dtype, dims) {
        return;
    }
    stats.weight_bytes += bytes;
    if !roles.quant_params.contains(name) {
        let stored = || dims.iter().map(|&d| d.max(0) as u64).product::<u64>();
        let n = roles.packed.get(name).copied().unwrap_or_else(stored);
        stats.params += n;
        *stats.params_by_type.entry(type_name(dtype)).or_default() += n;
    }
}

fn add_dense(stats: &mut ModelStats, t: &TensorProto, quant: &Roles) {
    let Ok(dtype) = t.elem_type() else { return };
    let bytes = match dtype {
        DataType::String => t.string_data.iter().map(|s| s.len() as u64).sum(),
        _ => dtype.bytes_for(t.element_count()).unwrap_or(0),
    };
    add_weight(stats, t.name(), dtype, &t.dims, bytes, quant);
}

fn add_sparse(stats: &mut ModelStats, s: &SparseTensorProto, quant: &Roles) {
    let (Some(values), Some(indices)) = (&s.values, &s.indices) else {
        return;
    };
    let Ok(dtype) = values.elem_type() else {
        return;
    };
    if !is_weight(dtype, &s.dims) {
        return;
    }
    let stored = values.element_count();
    let bytes = dtype.bytes_for(stored).unwrap_or(0)
        + indices
            .elem_type()
            .ok()
            .and_then(|t| t.bytes_for(indices.element_count()))
            .unwrap_or(0);
    stats.weight_bytes += bytes;
    if !quant.quant_params.contains(values.name()) {
        stats.params += stored;
        *stats.params_by_type.entry(type_name(dtype)).or_default() += stored;
    }
}

fn count_weights(graph: &GraphProto, quant: &Roles, stats: &mut ModelStats) {
    for t in &graph.initializer {
        add_dense(stats, t, quant);
    }
    for s in &graph.sparse_initializer {
        add_sparse(stats, s, quant);
    }
    for node in &graph.node {
        if node.op_type() == "Constant" && node.is_standard() {
            let name = node.output.first().map_or("", String::as_str);
            if let Some(t) = node.attr_t("value") {
                // The node's output, not the tensor's own name, is what other nodes read.
                let named = TensorProto {
                    name: Some(name.to_string()),
                    ..t.clone()
                };
                add_dense(stats, &named, quant);
            } else if let Some(v) = node.attr_floats("value_floats") {
                let n = v.len() as u64;
                add_weight(stats, name, DataType::Float, &[n as i64], n * 4, quant);
            } else if let Some(v) = node.attr_ints("value_ints") {
                let n = v.len() as u64;
                add_weight(stats, name, DataType::Int64, &[n as i64], n * 8, quant);
            } else if let Some(s) = node
                .attr("sparse_value")
                .and_then(|a| a.sparse_tensor.as_ref())
            {
                add_sparse(stats, s, quant);
            }
        }
        for sub in node.subgraphs() {
            count_weights(sub, quant, stats);
        }
    }
}

fn count_ops(graph: &GraphProto, histogram: &mut BTreeMap<String, u64>) {
    walk_nodes(graph, &mut |node| {
        *histogram.entry(node.qualified_op()).or_default() += 1
    });
}

fn type_name(dtype: DataType) -> String {
    dtype.name().to_string()
}

/// Operators that multiply and accumulate.
fn multiplies(node: &NodeProto) -> bool {
    !node.is_standard()
        || matches!(
            node.op_type(),
            "Conv"
                | "ConvInteger"
                | "QLinearConv"
                | "ConvTranspose"
                | "DeformConv"
                | "Gemm"
                | "MatMul"
                | "MatMulInteger"
                | "QLinearMatMul"
                | "Einsum"
                | "Attention"
                | "LSTM"
                | "GRU"
                | "RNN"
        )
        || node.subgraphs().any(|g| g.node.iter().any(multiplies))
}

fn count_macs(graph: &GraphProto, inference: &Inference) -> std::result::Result<u64, String> {
    let mut total = 0u64;
    for node in graph.node.iter().filter(|n| multiplies(n)) {
        total += inference
            .macs(node)
            .map_err(|why| Unresolved::at(node, why).to_string())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::GraphBuilder;
    use crate::infer::tests::bound;
    use crate::onnx::AttributeProto as A;

    #[test]
    fn counts_a_small_conv_net_by_hand() {
        // x [1,3,32,32] → Conv 3→8 3x3 pad 1 (+bias) → BN → Relu → depthwise 3x3 stride 2
        // → Conv 1x1 8→16 → GAP → Flatten → Gemm 16→10.
        let mut g = GraphBuilder::new("convnet");
        g.input("x", DataType::Float, &["batch", "3", "32", "32"]);
        g.weight("w1", &[8, 3, 3, 3], &[0.1; 216]);
        g.weight("b1", &[8], &[0.0; 8]);
        for p in ["scale", "bias", "mean", "var"] {
            g.weight(p, &[8], &[1.0; 8]);
        }
        g.weight("wd", &[8, 1, 3, 3], &[0.1; 72]);
        g.weight("w2", &[16, 8, 1, 1], &[0.1; 128]);
        g.weight("fc", &[10, 16], &[0.1; 160]);
        g.weight("fcb", &[10], &[0.0; 10]);
        g.ints("unused_shape", &[1, -1]);
        g.weight("eps", &[], &[1e-5]);
        g.node(
            "Conv",
            "c1",
            &["x", "w1", "b1"],
            vec![A::ints("pads", &[1, 1, 1, 1])],
        );
        g.node(
            "BatchNormalization",
            "bn",
            &["c1", "scale", "bias", "mean", "var"],
            vec![],
        );
        g.node("Relu", "r", &["bn"], vec![]);
        g.node(
            "Conv",
            "dw",
            &["r", "wd"],
            vec![
                A::int("group", 8),
                A::ints("strides", &[2, 2]),
                A::ints("pads", &[1, 1, 1, 1]),
            ],
        );
        g.node("Conv", "pw", &["dw", "w2"], vec![]);
        g.node("GlobalAveragePool", "gap", &["pw"], vec![]);
        g.node("Flatten", "flat", &["gap"], vec![]);
        g.node(
            "Gemm",
            "logits",
            &["flat", "fc", "fcb"],
            vec![A::int("transB", 1)],
        );
        g.output("logits", DataType::Float, &["batch", "10"]);
        let model = g.into_model().unwrap();
        let stats = ModelStats::of(&model, &[bound("x", &[2, 3, 32, 32])], None);
        assert_eq!(stats.params, 216 + 8 + 4 * 8 + 72 + 128 + 160 + 10);
        assert_eq!(stats.weight_bytes, stats.params * 4);
        let conv1 = 2 * 8 * 32 * 32 * 27;
        let depthwise = 2 * 8 * 16 * 16 * 9;
        let pointwise = 2 * 16 * 16 * 16 * 8;
        let gemm = 2 * 16 * 10;
        assert_eq!(stats.macs, Some(conv1 + depthwise + pointwise + gemm));
        assert_eq!(stats.op_histogram["Conv"], 3);
        assert!(stats.shape_issues.is_empty());
    }

    #[test]
    fn counts_batched_and_broadcast_matmuls_and_recurrences() {
        let mut g = GraphBuilder::new("g");
        g.input("q", DataType::Float, &["batch", "2", "128", "64"]);
        g.input("k", DataType::Float, &["batch", "2", "64", "128"]);
        g.node("MatMul", "scores", &["q", "k"], vec![]);
        g.weight("proj", &[64, 32], &[0.1; 2048]);
        g.node("MatMul", "projected", &["q", "proj"], vec![]);
        g.input("seq", DataType::Float, &["7", "batch", "8"]);
        g.weight("W", &[1, 12, 8], &[0.1; 96]);
        g.weight("R", &[1, 12, 4], &[0.1; 48]);
        g.node_with_outputs(
            "GRU",
            "gru",
            &["seq", "W", "R"],
            &["Y", "Y_h"],
            vec![A::int("hidden_size", 4)],
        );
        let model = g.into_model().unwrap();
        let inputs = [
            bound("q", &[3, 2, 128, 64]),
            bound("k", &[3, 2, 64, 128]),
            bound("seq", &[7, 3, 8]),
        ];
        let stats = ModelStats::of(&model, &inputs, None);
        let scores = 3 * 2 * 128 * 128 * 64;
        let projected = 3 * 2 * 128 * 64 * 32;
        let gru = 7 * 3 * (96 + 48);
        assert_eq!(stats.macs, Some(scores + projected + gru));
    }

    #[test]
    fn macs_are_unknown_rather_than_guessed() {
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Float, &["batch", "4"]);
        g.weight("w", &[4, 4], &[0.1; 16]);
        g.node("MatMul", "y", &["x", "w"], vec![]);
        g.output("y", DataType::Float, &["batch", "4"]);
        let model = g.into_model().unwrap();
        let stats = ModelStats::of(&model, &[], None);
        assert_eq!(stats.macs, None);
        assert_eq!(
            stats.macs_unknown.as_deref(),
            Some("node 'y' (MatMul): the shape of 'x' is unknown")
        );
        assert_eq!(stats.params, 16, "params do not need shapes");
        assert_eq!(
            ModelStats::of(&model, &[bound("x", &[5, 4])], None).macs,
            Some(5 * 16)
        );

        let custom = crate::fixtures::custom_op();
        let stats = ModelStats::of(&custom, &[bound("x", &[2, 4])], None);
        assert_eq!(stats.macs, None);
        let why = stats.macs_unknown.unwrap();
        assert!(
            why.contains("com.example.Frobnicate") && why.contains("outside the standard"),
            "{why}"
        );
        assert_eq!(stats.op_histogram["com.example.Frobnicate"], 1);

        // A multiplication downstream of a node that could not be sized names that node.
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Float, &["batch", "4"]);
        g.node("NonZero", "nz", &["x"], vec![]);
        g.node("Cast", "nzf", &["nz"], vec![A::int("to", 1)]);
        g.weight("w", &[4, 4], &[0.1; 16]);
        g.node("MatMul", "y", &["nzf", "w"], vec![]);
        let stats = ModelStats::of(&g.into_model().unwrap(), &[bound("x", &[2, 4])], None);
        assert_eq!(
            stats.macs_unknown.as_deref(),
            Some(
                "node 'y' (MatMul): the shape of 'nzf' is unknown, because of node 'nz' (NonZero): the output shape depends on the data"
            )
        );
    }

    #[test]
    fn counts_weights_held_by_constant_nodes() {
        let model = crate::fixtures::constant_weights();
        let stats = ModelStats::of(&model, &[bound("x", &[2, 4])], None);
        // W [4,3] from `value`, b [3] from `value_floats`; the scalar `value_float` and the
        // int64 shape from `value_ints` are arguments.
        assert_eq!(stats.params, 12 + 3);
        assert_eq!(stats.weight_bytes, 15 * 4);
        assert_eq!(
            stats.params_by_type,
            BTreeMap::from([("float".to_string(), 15)])
        );
        assert_eq!(stats.macs, Some(2 * 4 * 3));
    }

    #[test]
    fn keeps_quantization_parameters_out_of_params() {
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Float, &["1", "8"]);
        g.initializer(TensorProto::from_raw(
            "wq",
            DataType::Int8,
            &[8, 4],
            vec![1; 32],
        ));
        g.weight("w_scale", &[4], &[0.1; 4]);
        g.initializer(TensorProto::from_raw(
            "w_zp",
            DataType::Int8,
            &[4],
            vec![0; 4],
        ));
        g.weight("x_scale", &[], &[0.1]);
        g.node(
            "DequantizeLinear",
            "w",
            &["wq", "w_scale", "w_zp"],
            vec![A::int("axis", 1)],
        );
        g.node("MatMul", "y", &["x", "w"], vec![]);
        let model = g.into_model().unwrap();
        let stats = ModelStats::of(&model, &[], None);
        assert_eq!(stats.params, 32);
        assert_eq!(
            stats.params_by_type,
            BTreeMap::from([("int8".to_string(), 32)])
        );
        assert_eq!(stats.weight_bytes, 32 + 16 + 4);
        assert_eq!(stats.macs, Some(8 * 4));
    }

    #[test]
    fn counts_integer_and_qlinear_forms() {
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Uint8, &["1", "4", "8", "8"]);
        g.initializer(TensorProto::from_raw(
            "w",
            DataType::Int8,
            &[6, 4, 3, 3],
            vec![1; 216],
        ));
        for (name, dt) in [
            ("xs", DataType::Float),
            ("ws", DataType::Float),
            ("ys", DataType::Float),
        ] {
            g.initializer(TensorProto::from_raw(
                name,
                dt,
                &[],
                1f32.to_le_bytes().to_vec(),
            ));
        }
        for name in ["xz", "yz"] {
            g.initializer(TensorProto::from_raw(name, DataType::Uint8, &[], vec![0]));
        }
        g.initializer(TensorProto::from_raw("wz", DataType::Int8, &[], vec![0]));
        let q = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"];
        g.node(
            "QLinearConv",
            "qconv",
            &q,
            vec![A::ints("pads", &[1, 1, 1, 1])],
        );
        g.node("ConvInteger", "iconv", &["x", "w"], vec![]);
        g.input("a", DataType::Uint8, &["3", "5"]);
        g.initializer(TensorProto::from_raw(
            "b",
            DataType::Int8,
            &[5, 2],
            vec![1; 10],
        ));
        g.node("MatMulInteger", "imm", &["a", "b"], vec![]);
        let model = g.into_model().unwrap();
        let inference = infer_shapes(&model, &[], None);
        assert_eq!(inference.shapes["qconv"], vec![1, 6, 8, 8]);
        assert_eq!(inference.elem_types["qconv"], DataType::Uint8);
        assert_eq!(inference.shapes["iconv"], vec![1, 6, 6, 6]);
        assert_eq!(inference.elem_types["iconv"], DataType::Int32);
        let stats = ModelStats::with_inference(&model, &inference);
        let per_output = 4 * 9;
        assert_eq!(
            stats.macs,
            Some(6 * 64 * per_output + 6 * 36 * per_output + 3 * 5 * 2)
        );
        assert_eq!(stats.params, 216 + 10);
    }

    #[test]
    fn blocks_macs_inside_control_flow() {
        let model = crate::fixtures::loop_model();
        let stats = ModelStats::of(&model, &[bound("x", &[2, 3])], None);
        // The loop body only multiplies element-wise, so nothing is blocked.
        assert_eq!(stats.macs, Some(0));
        // A loop whose body multiplies matrices blocks the count: its trip count is data.
        let mut model = crate::fixtures::loop_model();
        let graph = model.graph.as_mut().unwrap();
        let body = graph.node[2].attribute[0].g.as_mut().unwrap();
        body.node[1].op_type = Some("MatMul".into());
        let stats = ModelStats::of(&model, &[bound("x", &[2, 3])], None);
        assert_eq!(
            stats.macs_unknown.as_deref(),
            Some("node 'y' (Loop): multiplications inside control flow are not counted")
        );
        let lstm = ModelStats::of(
            &crate::fixtures::lstm_model(),
            &[bound("x", &[3, 1, 2])],
            None,
        );
        assert_eq!(lstm.macs, Some(3 * (4 * 2 + 4)));
    }
}
