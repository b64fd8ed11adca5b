//! Graph surgery shared by the recipes: fresh names, who produces and who reads a value,
//! weights as initializers, and the preparation every recipe starts from.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::error::{Error, Result};
use crate::onnx::{
    AttributeProto, DataType, GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};

/// Every name used in a graph (values and nodes), so inserted ones never collide.
pub(crate) struct Names {
    taken: HashSet<String>,
}

impl Names {
    pub fn of(graph: &GraphProto) -> Names {
        let mut taken: HashSet<String> = HashSet::new();
        taken.extend(graph.input.iter().map(|v| v.name().to_string()));
        taken.extend(graph.output.iter().map(|v| v.name().to_string()));
        taken.extend(graph.initializer.iter().map(|t| t.name().to_string()));
        for node in &graph.node {
            taken.extend(node.output.iter().cloned());
            taken.insert(node.name().to_string());
        }
        Names { taken }
    }

    /// `base`, or `base_2`, `base_3`... whichever is free first; the name is then taken.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 2;
        while self.taken.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.taken.insert(name.clone());
        name
    }
}

/// For each value, the indices of the nodes that read it (a node reading it twice counts once).
pub(crate) fn consumers(graph: &GraphProto) -> HashMap<String, Vec<usize>> {
    let mut map: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for input in node.input.iter().filter(|s| !s.is_empty()) {
            let list = map.entry(input.clone()).or_default();
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
        // Values read by subgraphs from the enclosing scope are reads too.
        for sub in node.subgraphs() {
            for name in outer_reads(sub) {
                let list = map.entry(name).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
    }
    map
}

fn outer_reads(graph: &GraphProto) -> Vec<String> {
    let mut local: HashSet<&str> = graph.input.iter().map(|v| v.name()).collect();
    local.extend(graph.initializer.iter().map(|t| t.name()));
    let mut reads = Vec::new();
    for node in &graph.node {
        for input in &node.input {
            if !input.is_empty() && !local.contains(input.as_str()) {
                reads.push(input.clone());
            }
        }
        reads.extend(node.subgraphs().flat_map(outer_reads));
        local.extend(node.output.iter().map(String::as_str));
    }
    reads
}

pub(crate) fn is_graph_output(graph: &GraphProto, name: &str) -> bool {
    graph.output.iter().any(|o| o.name() == name)
}

pub(crate) fn initializer<'a>(graph: &'a GraphProto, name: &str) -> Option<&'a TensorProto> {
    graph.initializer.iter().find(|t| t.name() == name)
}

/// A float initializer's shape and values.
pub(crate) fn float_weight(graph: &GraphProto, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
    let t = initializer(graph, name)?;
    if t.elem_type().ok()? != DataType::Float {
        return None;
    }
    let (shape, values) = (t.shape().ok()?, t.to_f32().ok()?);
    // A tensor whose data disagrees with its dims, or holds nothing, is not a weight the
    // transforms can index.
    let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
    (elements > 0 && elements == values.len()).then_some((shape, values))
}

/// Replaces (or adds) a float initializer.
pub(crate) fn set_float_weight(
    graph: &mut GraphProto,
    name: &str,
    shape: &[usize],
    values: &[f32],
) {
    let tensor = TensorProto::from_f32(name, shape, values);
    set_initializer(graph, tensor);
}

pub(crate) fn set_initializer(graph: &mut GraphProto, tensor: TensorProto) {
    match graph
        .initializer
        .iter_mut()
        .find(|t| t.name() == tensor.name())
    {
        Some(slot) => *slot = tensor,
        None => graph.initializer.push(tensor),
    }
}

/// The label of a node in reports: its name, else its first output.
pub(crate) fn label(node: &NodeProto) -> String {
    crate::infer::node_label(node)
}

/// A plain node.
pub(crate) fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(name.to_string()),
        op_type: Some(op.to_string()),
        attribute: attrs,
        ..Default::default()
    }
}

/// The model every recipe starts from: tensor data read into the file (external data included,
/// so the variant is self-contained), float `Constant` nodes of the main graph turned into
/// initializers (exported models often keep their weights that way; an initializer is the
/// same value), and stale `value_info` declarations dropped (the recipes change types and
/// shapes; runtimes infer them again).
pub(crate) fn prepare(model: &ModelProto, model_dir: Option<&Path>) -> Result<ModelProto> {
    let mut model = model.clone();
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| Error::unsupported("the model has no graph"))?;
    for t in graph.initializer.iter_mut() {
        if t.is_external() {
            let dir = model_dir.ok_or_else(|| {
                Error::tensor(
                    t.name(),
                    "external data, but the model's folder is not known",
                )
            })?;
            let bytes = crate::model::tensor_bytes(t, dir)?.into_owned();
            t.external_data.clear();
            t.data_location = None;
            t.raw_data = Some(bytes);
        }
    }
    for node in &graph.node {
        check_arity(node)?;
    }
    let mut kept = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        match constant_as_initializer(&node) {
            Some(tensor) => graph.initializer.push(tensor),
            None => kept.push(node),
        }
    }
    graph.node = kept;
    graph.value_info.clear();
    Ok(model)
}

/// The fewest inputs an operator the transforms rewrite takes (ONNX's own minimum), so that
/// they can name a node's inputs by position.
const MIN_INPUTS: [(&str, usize); 14] = [
    ("Conv", 2),
    ("ConvTranspose", 2),
    ("Gemm", 2),
    ("MatMul", 2),
    ("BatchNormalization", 5),
    ("Add", 2),
    ("Mul", 2),
    ("Relu", 1),
    ("Clip", 1),
    ("MaxPool", 1),
    ("AveragePool", 1),
    ("GlobalAveragePool", 1),
    ("Flatten", 1),
    ("Reshape", 2),
];

/// Refuses a node without outputs, or with fewer inputs than its operator takes.
fn check_arity(node: &NodeProto) -> Result<()> {
    let label = crate::infer::node_label(node);
    if node.output.is_empty() {
        return Err(Error::unsupported(format!(
            "node '{label}' ({}) has no output",
            node.op_type()
        )));
    }
    if node.is_standard()
        && let Some((op, min)) = MIN_INPUTS.iter().find(|(op, _)| *op == node.op_type())
        && node.input.len() < *min
    {
        return Err(Error::unsupported(format!(
            "node '{label}' ({op}) has {} input(s); {op} takes at least {min}",
            node.input.len()
        )));
    }
    Ok(())
}

/// The tensor of a standard `Constant` node holding float data (`value` of a float type,
/// `value_float`, `value_floats`), named like the node's output.
fn constant_as_initializer(node: &NodeProto) -> Option<TensorProto> {
    if node.op_type() != "Constant" || !node.is_standard() || node.output.len() != 1 {
        return None;
    }
    let name = &node.output[0];
    let attr = node.attribute.first()?;
    if node.attribute.len() != 1 {
        return None;
    }
    let mut tensor = match attr.name() {
        "value" => {
            let t = attr.t.clone()?;
            if !t.elem_type().ok()?.is_float() || t.is_external() {
                return None;
            }
            t
        }
        "value_float" => TensorProto::from_f32(name, &[], &[attr.f?]),
        "value_floats" => TensorProto::from_f32(name, &[attr.floats.len()], &attr.floats),
        _ => return None,
    };
    tensor.name = Some(name.clone());
    Some(tensor)
}

/// A copy of `model` whose graph also outputs `names` (float tensors of any shape), for runs
/// that read intermediate values.
pub(crate) fn expose(model: &ModelProto, names: &[String]) -> ModelProto {
    let mut model = model.clone();
    if let Some(graph) = model.graph.as_mut() {
        for name in names {
            if !is_graph_output(graph, name) {
                graph.output.push(ValueInfoProto {
                    name: Some(name.clone()),
                    r#type: Some(TypeProto::tensor(
                        DataType::Float,
                        TensorShapeProto::default(),
                    )),
                    ..Default::default()
                });
            }
        }
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_constant_weights_into_initializers() {
        let model = crate::fixtures::constant_weights();
        let prepared = prepare(&model, None).unwrap();
        let g = prepared.graph.as_ref().unwrap();
        let names: Vec<&str> = g.initializer.iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            ["W", "b", "two"],
            "value, value_floats and value_float"
        );
        assert_eq!(float_weight(g, "W").unwrap().0, vec![4, 3]);
        assert!(
            g.node.iter().any(|n| n.op_type() == "Constant"),
            "the int64 reshape target stays a Constant node"
        );
        let mut names = Names::of(g);
        assert_eq!(names.fresh("W"), "W_2");
        assert_eq!(names.fresh("W"), "W_3");
        assert_eq!(names.fresh("new"), "new");
    }
}
