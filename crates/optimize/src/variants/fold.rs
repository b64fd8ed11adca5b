//! Folds inference-mode BatchNormalization into the Conv before it, as ONNX Runtime does at
//! load time for fp32 models. The precision recipes need it done in the file: a quantized or
//! float16 weight can no longer be folded by the runtime, and a BatchNormalization between a
//! Conv and its activation stops ONNX Runtime from fusing QDQ groups into integer kernels.

use crate::onnx::GraphProto;
use crate::variants::graph::{Names, consumers, float_weight, is_graph_output, set_float_weight};

/// Folds every `Conv -> BatchNormalization` pair whose Conv output feeds only the
/// normalization and whose weights are float initializers; returns how many were folded.
pub(crate) fn fold_batch_norms(graph: &mut GraphProto) -> usize {
    let mut names = Names::of(graph);
    let mut removed = vec![false; graph.node.len()];
    let mut folded = 0;
    let readers = consumers(graph);
    for (bn_index, bn) in graph.node.clone().into_iter().enumerate() {
        if bn.op_type() != "BatchNormalization"
            || !bn.is_standard()
            || bn.input.len() != 5
            || bn.attr_i("training_mode").unwrap_or(0) != 0
            || bn.output.iter().skip(1).any(|o| !o.is_empty())
        {
            continue;
        }
        let x = &bn.input[0];
        let Some(conv_index) = graph.node.iter().position(|n| n.output.first() == Some(x)) else {
            continue;
        };
        let conv = graph.node[conv_index].clone();
        if conv.op_type() != "Conv"
            || !conv.is_standard()
            || readers.get(x).map(Vec::len) != Some(1)
            || is_graph_output(graph, x)
        {
            continue;
        }
        let params: Option<Vec<Vec<f32>>> = bn.input[1..]
            .iter()
            .map(|name| float_weight(graph, name).map(|(_, v)| v))
            .collect();
        let (Some(params), Some((w_shape, mut w))) = (params, float_weight(graph, &conv.input[1]))
        else {
            continue;
        };
        // A Conv weight has its output channels first; a scalar is no Conv weight.
        let Some(&out) = w_shape.first() else {
            continue;
        };
        if params.iter().any(|p| p.len() != out) {
            continue;
        }
        let bias = match conv.input.get(2).filter(|b| !b.is_empty()) {
            Some(b) => match float_weight(graph, b) {
                Some((_, v)) if v.len() == out => v,
                _ => continue,
            },
            None => vec![0.0; out],
        };
        let epsilon = bn.attr_f("epsilon").unwrap_or(1e-5);
        let (gamma, beta, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
        let per_channel = w.len() / out;
        let mut new_bias = vec![0f32; out];
        for c in 0..out {
            let s = gamma[c] / (var[c] + epsilon).sqrt();
            w[c * per_channel..(c + 1) * per_channel]
                .iter_mut()
                .for_each(|v| *v *= s);
            new_bias[c] = (bias[c] - mean[c]) * s + beta[c];
        }
        // New initializers: the originals may be shared with other nodes.
        let w_name = names.fresh(&format!("{}.folded", conv.input[1]));
        let b_name = names.fresh(&format!("{}.folded_bias", conv.input[1]));
        set_float_weight(graph, &w_name, &w_shape, &w);
        set_float_weight(graph, &b_name, &[out], &new_bias);
        let node = &mut graph.node[conv_index];
        node.input.truncate(1);
        node.input.push(w_name);
        node.input.push(b_name);
        node.output[0] = bn.output[0].clone();
        removed[bn_index] = true;
        folded += 1;
    }
    let mut index = 0;
    graph.node.retain(|_| {
        index += 1;
        !removed[index - 1]
    });
    drop_unused_initializers(graph);
    folded
}

/// Removes initializers no node reads and that are not graph inputs or outputs.
pub(crate) fn drop_unused_initializers(graph: &mut GraphProto) {
    let readers = consumers(graph);
    let inputs: std::collections::HashSet<String> =
        graph.input.iter().map(|v| v.name().to_string()).collect();
    let outputs: std::collections::HashSet<String> =
        graph.output.iter().map(|v| v.name().to_string()).collect();
    graph.initializer.retain(|t| {
        readers.contains_key(t.name()) || inputs.contains(t.name()) || outputs.contains(t.name())
    });
}
