//! Pruning: unstructured magnitude pruning, 2:4 semi-structured pruning, and structured
//! pruning of output channels with the graph surgery that makes the model really smaller.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::infer::Inference;
use crate::onnx::{GraphProto, NodeProto};
use crate::variants::graph::{
    Names, consumers, float_weight, initializer, is_graph_output, label, set_float_weight,
};
use crate::variants::quant::{Layer, layer_at, layers};

/// What pruning did to one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrunedLayer {
    pub node: String,
    pub op: String,
    pub weight: String,
    /// Zeros / elements of the weight after pruning; `None` when the layer was left alone.
    pub sparsity: Option<f64>,
    /// Why the layer was left alone.
    pub skipped: Option<String>,
}

/// Zeros in `values`.
fn zeros(values: &[f32]) -> usize {
    values.iter().filter(|v| **v == 0.0).count()
}

/// Each layer's weight loses its `round(sparsity · n)` smallest-magnitude elements (ties
/// broken by position, so the result is deterministic and exact).
pub(crate) fn unstructured(graph: &mut GraphProto, sparsity: f64) -> Vec<PrunedLayer> {
    let mut done = HashSet::new();
    let mut report = Vec::new();
    for layer in layers(graph) {
        if !done.insert(layer.weight.clone()) {
            continue;
        }
        let (shape, mut values) =
            float_weight(graph, &layer.weight).expect("layers have float weights");
        let k = (sparsity * values.len() as f64).round() as usize;
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| values[a].abs().total_cmp(&values[b].abs()).then(a.cmp(&b)));
        for &i in &order[..k.min(values.len())] {
            values[i] = 0.0;
        }
        set_float_weight(graph, &layer.weight, &shape, &values);
        report.push(pruned(
            &layer,
            Some(zeros(&values) as f64 / values.len() as f64),
            None,
        ));
    }
    report
}

fn pruned(layer: &Layer, sparsity: Option<f64>, skipped: Option<String>) -> PrunedLayer {
    PrunedLayer {
        node: layer.label.clone(),
        op: layer.op.clone(),
        weight: layer.weight.clone(),
        sparsity,
        skipped,
    }
}

/// The axis of a layer's weight that runs along its input: a Conv's input channels, the `K` of
/// a matrix product.
pub fn input_axis(graph: &GraphProto, layer: &Layer) -> usize {
    let n = &graph.node[layer.node];
    match layer.op.as_str() {
        "Conv" => 1,
        "Gemm" if n.attr_i("transB").unwrap_or(0) == 1 => 1,
        _ => 0,
    }
}

/// In every group of four consecutive weights along the input axis, the two of smallest
/// magnitude become zero. Layers whose input axis is not a multiple of 4 long (depthwise
/// convolutions, a first convolution over 3 colour channels) are left alone and reported.
pub(crate) fn two_of_four(graph: &mut GraphProto) -> Vec<PrunedLayer> {
    let mut done = HashSet::new();
    let mut report = Vec::new();
    for layer in layers(graph) {
        if !done.insert(layer.weight.clone()) {
            continue;
        }
        let axis = input_axis(graph, &layer);
        let (shape, mut values) =
            float_weight(graph, &layer.weight).expect("layers have float weights");
        let length = shape[axis];
        if length % 4 != 0 {
            let why = format!(
                "its input dimension (axis {axis} of weight {:?}) is {length} long, not a multiple of 4",
                shape
            );
            report.push(pruned(&layer, None, Some(why)));
            continue;
        }
        let inner: usize = shape[axis + 1..].iter().product();
        let outer: usize = shape[..axis].iter().product();
        for o in 0..outer {
            for i in 0..inner {
                for g in (0..length).step_by(4) {
                    let idx: Vec<usize> =
                        (g..g + 4).map(|d| (o * length + d) * inner + i).collect();
                    let mut order = idx.clone();
                    order.sort_by(|&a, &b| {
                        values[a].abs().total_cmp(&values[b].abs()).then(a.cmp(&b))
                    });
                    values[order[0]] = 0.0;
                    values[order[1]] = 0.0;
                }
            }
        }
        set_float_weight(graph, &layer.weight, &shape, &values);
        report.push(pruned(
            &layer,
            Some(zeros(&values) as f64 / values.len() as f64),
            None,
        ));
    }
    report
}

/// A weight input whose slice along `axis` follows a pruned channel group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChannelSlice {
    /// Index of the reading node in the graph (channel pruning adds and removes no node).
    pub node: usize,
    pub input: usize,
    pub axis: usize,
    /// Whether the node consumes the channels (the next layer's input channels): zeroing this
    /// slice alone silences the removed channels.
    pub sink: bool,
}

/// The output channels removed from one layer, and every weight sliced with them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelGroup {
    pub node: String,
    pub op: String,
    pub channels_before: usize,
    /// Removed channel indices, in the layer's original numbering.
    pub removed: Vec<usize>,
    pub slices: Vec<ChannelSlice>,
}

/// Structured pruning: each Conv (ungrouped), Gemm and MatMul loses the
/// [`channels_to_remove`] of its `M` output channels with the smallest L1 norm, when everything its channels reach
/// can follow: BatchNormalization parameters, biases, element-wise operators, pools,
/// depthwise convolutions (which lose the same channels and pass them on) and, at the end,
/// the input channels of the next Conv/Gemm/MatMul. Channels that reach a residual `Add`
/// fed by another layer, a reshape, or a graph output are left alone, with the reason.
pub(crate) fn channels(
    graph: &mut GraphProto,
    ratio: f64,
    inference: &Inference,
) -> (Vec<ChannelGroup>, Vec<PrunedLayer>) {
    let mut groups = Vec::new();
    let mut skipped = Vec::new();
    // Node indices stay valid (no node is added or removed), but weights change as earlier
    // layers slice the input channels of later ones: each layer is read afresh.
    for index in 0..graph.node.len() {
        let Some(layer) = layer_at(graph, index) else {
            continue;
        };
        let n = &graph.node[index];
        if n.op_type() == "Conv" && n.attr_i("group").unwrap_or(1) != 1 {
            continue;
        }
        let out_channels = layer.weight_shape[layer.channel_axis];
        let plan = match reach(graph, &layer, out_channels, inference) {
            Ok(plan) => plan,
            Err(why) => {
                skipped.push(pruned(&layer, None, Some(why)));
                continue;
            }
        };
        let k = channels_to_remove(out_channels, ratio);
        if k == 0 {
            skipped.push(pruned(
                &layer,
                None,
                Some(format!(
                    "{out_channels} channels: none to remove at this ratio"
                )),
            ));
            continue;
        }
        let (shape, values) =
            float_weight(graph, &layer.weight).expect("layers have float weights");
        let norms = channel_l1(&shape, &values, layer.channel_axis);
        let mut order: Vec<usize> = (0..out_channels).collect();
        order.sort_by(|&a, &b| norms[a].total_cmp(&norms[b]).then(a.cmp(&b)));
        let mut removed: Vec<usize> = order[..k].to_vec();
        removed.sort_unstable();
        let keep: Vec<usize> = (0..out_channels)
            .filter(|c| removed.binary_search(c).is_err())
            .collect();
        if let Err(why) = apply(graph, &plan, &keep) {
            skipped.push(pruned(&layer, None, Some(why)));
            continue;
        }
        groups.push(ChannelGroup {
            node: layer.label.clone(),
            op: layer.op.clone(),
            channels_before: out_channels,
            removed,
            slices: plan.slices,
        });
    }
    (groups, skipped)
}

/// Kept channel counts are multiples of this when the layer's count is: vectorized kernels
/// work on blocks of 8 or 16 channels, and ONNX Runtime's CPU provider ran the suite's
/// MobileNetV2 pruned to unaligned counts at half the speed of the unpruned model (2.5 ms
/// against 1.3 ms, one thread), while the aligned one is faster.
pub const CHANNEL_ALIGNMENT: usize = 8;

/// How many of `channels` output channels `prune-channels:ratio` removes: `round(ratio · M)`,
/// adjusted so that the kept count is the nearest multiple of [`CHANNEL_ALIGNMENT`] (never 0)
/// when `M` is a multiple of it; at least one channel is always kept.
pub fn channels_to_remove(channels: usize, ratio: f64) -> usize {
    let exact = ((ratio * channels as f64).round() as usize).min(channels - 1);
    if !channels.is_multiple_of(CHANNEL_ALIGNMENT) {
        return exact;
    }
    let kept = channels - exact;
    let aligned =
        ((kept as f64 / CHANNEL_ALIGNMENT as f64).round() as usize).max(1) * CHANNEL_ALIGNMENT;
    channels - aligned.min(channels)
}

struct ReachPlan {
    slices: Vec<ChannelSlice>,
    /// Depthwise convolutions whose `group` follows the channel count.
    depthwise: Vec<usize>,
}

/// Everything the output channels of `layer` reach, or why they cannot be removed.
fn reach(
    graph: &GraphProto,
    layer: &Layer,
    channels: usize,
    inference: &Inference,
) -> Result<ReachPlan, String> {
    let readers = consumers(graph);
    let producer = &graph.node[layer.node];
    let rank_of = |v: &str| inference.shapes.get(v).map(Vec::len);
    let out = producer.output[0].clone();
    let axis = match layer.op.as_str() {
        "Conv" | "Gemm" => 1,
        _ => rank_of(&out).ok_or("the rank of its output is unknown")? - 1,
    };
    let mut slices = vec![ChannelSlice {
        node: layer.node,
        input: 1,
        axis: layer.channel_axis,
        sink: false,
    }];
    if let Some(b) = producer.input.get(2).filter(|b| !b.is_empty()) {
        match float_weight(graph, b) {
            Some((shape, _)) if shape == [channels] => slices.push(ChannelSlice {
                node: layer.node,
                input: 2,
                axis: 0,
                sink: false,
            }),
            Some((shape, _)) if shape.iter().product::<usize>() == 1 => {}
            _ => {
                return Err(format!(
                    "its bias '{b}' is not one value per output channel"
                ));
            }
        }
    }
    let mut depthwise = Vec::new();
    let mut group: HashSet<String> = HashSet::from([out.clone()]);
    let mut frontier = vec![out];
    let mut visited: HashSet<usize> = HashSet::new();
    let mut pending: Vec<String> = Vec::new();
    let per_channel_constant = |name: &str, rank: usize| -> Option<Option<usize>> {
        // Some(None): a scalar-like constant; Some(Some(a)): a vector to slice along a.
        let t = initializer(graph, name)?;
        let shape = t.shape().ok()?;
        if shape.iter().product::<usize>() == 1 {
            return Some(None);
        }
        let offset = rank.checked_sub(shape.len())?;
        let position = axis.checked_sub(offset)?;
        let fits = shape
            .iter()
            .enumerate()
            .all(|(i, &d)| if i == position { d == channels } else { d == 1 });
        fits.then_some(Some(position))
    };
    while let Some(value) = frontier.pop() {
        if is_graph_output(graph, &value) {
            return Err(format!("its channels reach the graph output '{value}'"));
        }
        for &c in readers.get(&value).into_iter().flatten() {
            let n: &NodeProto = &graph.node[c];
            let where_ = format!("{} node '{}'", n.op_type(), label(n));
            if !n.is_standard() {
                return Err(format!("its channels reach {where_}"));
            }
            if !visited.insert(c) {
                continue;
            }
            let position = n
                .input
                .iter()
                .position(|i| *i == value)
                .expect("a reader reads it");
            let rank = rank_of(&value).unwrap_or(0);
            let mut passes_on = true;
            match n.op_type() {
                "BatchNormalization" if axis == 1 && position == 0 => {
                    for i in 1..n.input.len() {
                        if float_weight(graph, &n.input[i]).map(|(s, _)| s) != Some(vec![channels])
                        {
                            return Err(format!(
                                "{where_} has parameters that are not per channel"
                            ));
                        }
                        slices.push(ChannelSlice {
                            node: c,
                            input: i,
                            axis: 0,
                            sink: false,
                        });
                    }
                }
                "Relu" | "LeakyRelu" | "Sigmoid" | "Tanh" | "Erf" | "HardSigmoid" | "HardSwish"
                | "Identity" | "Neg" | "Abs" | "Clip" | "Dropout" => {
                    for other in n.input.iter().skip(1).filter(|i| !i.is_empty()) {
                        if per_channel_constant(other, rank) != Some(None) {
                            return Err(format!("{where_} has a bound that is not a constant"));
                        }
                    }
                }
                "Add" | "Sub" | "Mul" | "Div" => {
                    for (i, other) in n.input.iter().enumerate().filter(|(i, _)| *i != position) {
                        if group.contains(other) {
                            continue;
                        }
                        if initializer(graph, other).is_some() {
                            match per_channel_constant(other, rank) {
                                Some(None) => {}
                                Some(Some(a)) => slices.push(ChannelSlice {
                                    node: c,
                                    input: i,
                                    axis: a,
                                    sink: false,
                                }),
                                None => {
                                    return Err(format!(
                                        "{where_} reads a constant that does not broadcast per channel"
                                    ));
                                }
                            }
                        } else {
                            pending.push(other.clone());
                        }
                    }
                }
                "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" if axis == 1 => {}
                "Flatten" if axis == 1 && n.attr_i("axis").unwrap_or(1) == 1 => {
                    let flat = inference
                        .shapes
                        .get(&value)
                        .is_some_and(|s| s.len() >= 2 && s[2..].iter().all(|&d| d == 1));
                    if !flat {
                        return Err(format!(
                            "{where_} mixes its channels with spatial positions"
                        ));
                    }
                }
                "Conv" if position == 0 && axis == 1 => {
                    let groups = n.attr_i("group").unwrap_or(1) as usize;
                    let (w_shape, _) = float_weight(graph, &n.input[1])
                        .ok_or_else(|| format!("{where_} has no constant weights"))?;
                    if groups == 1 {
                        slices.push(ChannelSlice {
                            node: c,
                            input: 1,
                            axis: 1,
                            sink: true,
                        });
                        passes_on = false;
                    } else if groups == channels
                        && w_shape.first() == Some(&channels)
                        && w_shape.get(1) == Some(&1)
                    {
                        slices.push(ChannelSlice {
                            node: c,
                            input: 1,
                            axis: 0,
                            sink: false,
                        });
                        if n.input.get(2).is_some_and(|b| !b.is_empty()) {
                            slices.push(ChannelSlice {
                                node: c,
                                input: 2,
                                axis: 0,
                                sink: false,
                            });
                        }
                        depthwise.push(c);
                    } else {
                        return Err(format!(
                            "its channels reach a grouped convolution ({where_})"
                        ));
                    }
                }
                "Gemm"
                    if position == 0
                        && axis == 1
                        && n.attr_i("transA").unwrap_or(0) == 0
                        && float_weight(graph, &n.input[1]).is_some() =>
                {
                    let trans_b = n.attr_i("transB").unwrap_or(0) == 1;
                    slices.push(ChannelSlice {
                        node: c,
                        input: 1,
                        axis: if trans_b { 1 } else { 0 },
                        sink: true,
                    });
                    passes_on = false;
                }
                "MatMul"
                    if position == 0
                        && rank >= 1
                        && axis == rank - 1
                        && float_weight(graph, &n.input[1]).is_some_and(|(s, _)| s.len() == 2) =>
                {
                    slices.push(ChannelSlice {
                        node: c,
                        input: 1,
                        axis: 0,
                        sink: true,
                    });
                    passes_on = false;
                }
                _ => return Err(format!("its channels reach {where_}")),
            }
            if passes_on {
                let out = n.output[0].clone();
                if group.insert(out.clone()) {
                    frontier.push(out);
                }
            }
        }
    }
    if let Some(stranger) = pending.iter().find(|p| !group.contains(*p)) {
        return Err(format!(
            "its channels are combined with '{stranger}', which other layers produce (a residual connection)"
        ));
    }
    Ok(ReachPlan { slices, depthwise })
}

/// L1 norm of each slice of `values` along `axis`.
fn channel_l1(shape: &[usize], values: &[f32], axis: usize) -> Vec<f64> {
    let channels = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut norms = vec![0f64; channels];
    for (i, v) in values.iter().enumerate() {
        norms[(i / inner) % channels] += v.abs() as f64;
    }
    norms
}

/// The elements of `values` whose index along `axis` is in `keep`.
pub(crate) fn keep_along(
    shape: &[usize],
    values: &[f32],
    axis: usize,
    keep: &[usize],
) -> (Vec<usize>, Vec<f32>) {
    let length = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let mut out = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &k in keep {
            let start = (o * length + k) * inner;
            out.extend_from_slice(&values[start..start + inner]);
        }
    }
    let mut new_shape = shape.to_vec();
    new_shape[axis] = keep.len();
    (new_shape, out)
}

/// Slices every weight of the plan; a weight also read outside the plan gets a copy for the
/// plan's nodes.
fn apply(graph: &mut GraphProto, plan: &ReachPlan, keep: &[usize]) -> Result<(), String> {
    // Every weight is checked before any is cut, so that a refusal leaves the graph whole.
    let needed = keep.iter().max().map_or(0, |k| k + 1);
    for s in &plan.slices {
        let name = graph.node[s.node]
            .input
            .get(s.input)
            .cloned()
            .unwrap_or_default();
        match float_weight(graph, &name) {
            Some((shape, _)) if shape.get(s.axis).is_some_and(|&n| n >= needed) => {}
            _ => {
                return Err(format!(
                    "'{name}' is not a float weight with {needed} channels on axis {}",
                    s.axis
                ));
            }
        }
    }
    let readers = consumers(graph);
    let mut names = Names::of(graph);
    let mut by_weight: HashMap<(String, usize), Vec<&ChannelSlice>> = HashMap::new();
    for s in &plan.slices {
        let name = graph.node[s.node].input[s.input].clone();
        by_weight.entry((name, s.axis)).or_default().push(s);
    }
    let mut entries: Vec<_> = by_weight.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for ((name, axis), slices) in entries {
        let (shape, values) = float_weight(graph, &name).expect("checked above");
        let (new_shape, new_values) = keep_along(&shape, &values, axis, keep);
        let slicing: HashSet<usize> = slices.iter().map(|s| s.node).collect();
        let shared = readers
            .get(&name)
            .is_some_and(|r| r.iter().any(|n| !slicing.contains(n)));
        let target = if shared {
            names.fresh(&format!("{name}.pruned"))
        } else {
            name.clone()
        };
        set_float_weight(graph, &target, &new_shape, &new_values);
        for s in slices {
            graph.node[s.node].input[s.input] = target.clone();
        }
    }
    for &d in &plan.depthwise {
        for a in graph.node[d]
            .attribute
            .iter_mut()
            .filter(|a| a.name() == "group")
        {
            a.i = Some(keep.len() as i64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_the_fraction_asked_for_rounded_to_aligned_kept_counts() {
        assert_eq!(channels_to_remove(48, 0.3), 16, "keeps 32 rather than 34");
        assert_eq!(channels_to_remove(96, 0.3), 32, "keeps 64 rather than 67");
        assert_eq!(
            channels_to_remove(144, 0.3),
            40,
            "keeps 104 rather than 101"
        );
        assert_eq!(channels_to_remove(8, 0.3), 0, "keeps the one block of 8");
        assert_eq!(
            channels_to_remove(10, 0.3),
            3,
            "unaligned layers lose exactly round(R·M)"
        );
        assert_eq!(channels_to_remove(3, 0.9), 2, "one channel always stays");
    }

    #[test]
    fn keeps_slices_along_any_axis() {
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let (shape, kept) = keep_along(&[2, 3, 2], &values, 1, &[0, 2]);
        assert_eq!(shape, vec![2, 2, 2]);
        assert_eq!(kept, vec![0.0, 1.0, 4.0, 5.0, 6.0, 7.0, 10.0, 11.0]);
        assert_eq!(
            channel_l1(&[2, 2], &[1.0, -2.0, 3.0, 0.5], 1),
            vec![4.0, 2.5]
        );
    }
}
