//! A small graph builder: nodes in execution order, weights as initializers or `Constant` nodes,
//! inputs and outputs with symbolic dimensions. The suite generator and the fixtures use it, and
//! so can tests elsewhere that need a model of their own.
//!
//! ```
//! use chipbench_optimize::builder::GraphBuilder;
//! use chipbench_optimize::onnx::DataType;
//!
//! let mut g = GraphBuilder::new("double");
//! g.input("x", DataType::Float, &["batch", "4"]);
//! let two = g.weight("two", &[], &[2.0]);
//! g.node("Mul", "y", &["x", &two], vec![]);
//! g.output("y", DataType::Float, &["batch", "4"]);
//! let model = g.into_model().unwrap();
//! assert_eq!(model.onnx_opset(), Some(17));
//! ```

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::onnx::{
    AttributeProto, DataType, GraphProto, IR_VERSION, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto,
};

/// The default-domain opset the builder imports: 17 has LayerNormalization and is run by every
/// ONNX Runtime and tract release chipbench supports.
pub const OPSET: i64 = 17;

/// Builds one graph. Node and value names are the caller's, so generated models read well in
/// Netron and in per-operator profiles.
#[derive(Clone, Debug)]
pub struct GraphBuilder {
    graph: GraphProto,
    /// Operator sets besides the default domain, for nodes of custom domains.
    extra_opsets: Vec<OperatorSetIdProto>,
}

/// A declared shape from readable dims: a number is fixed, `"?"` is unknown (neither a value nor
/// a name, as some exporters write), anything else is a symbolic name.
pub fn shape_proto(dims: &[&str]) -> TensorShapeProto {
    use tensor_shape_proto::{Dimension, dimension::Value};
    TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                value: match (*d, d.parse::<i64>()) {
                    ("?", _) => None,
                    (_, Ok(n)) => Some(Value::DimValue(n)),
                    (name, Err(_)) => Some(Value::DimParam(name.to_string())),
                },
                denotation: None,
            })
            .collect(),
    }
}

/// A tensor value declaration.
pub fn value_info(name: &str, elem_type: DataType, dims: &[&str]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto::tensor(elem_type, shape_proto(dims))),
        ..Default::default()
    }
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        GraphBuilder {
            graph: GraphProto {
                name: Some(name.to_string()),
                ..Default::default()
            },
            extra_opsets: Vec::new(),
        }
    }

    /// Declares a graph input and returns its name.
    pub fn input(&mut self, name: &str, elem_type: DataType, dims: &[&str]) -> String {
        self.graph.input.push(value_info(name, elem_type, dims));
        name.to_string()
    }

    /// Declares a graph output (produced by a node or an input of the graph).
    pub fn output(&mut self, name: &str, elem_type: DataType, dims: &[&str]) {
        self.graph.output.push(value_info(name, elem_type, dims));
    }

    /// Declares the type of an intermediate value (exporters write these as shape hints).
    pub fn value_info(&mut self, name: &str, elem_type: DataType, dims: &[&str]) {
        self.graph
            .value_info
            .push(value_info(name, elem_type, dims));
    }

    /// Adds an initializer and returns its name.
    pub fn initializer(&mut self, tensor: TensorProto) -> String {
        let name = tensor.name().to_string();
        self.graph.initializer.push(tensor);
        name
    }

    /// A float initializer.
    pub fn weight(&mut self, name: &str, shape: &[usize], values: &[f32]) -> String {
        self.initializer(TensorProto::from_f32(name, shape, values))
    }

    /// A 1-D int64 initializer (shapes, axes, pads).
    pub fn ints(&mut self, name: &str, values: &[i64]) -> String {
        self.initializer(TensorProto::from_i64(name, &[values.len()], values))
    }

    /// A `Constant` node holding `value`; returns the name of its output.
    pub fn constant(&mut self, name: &str, value: TensorProto) -> String {
        self.node(
            "Constant",
            name,
            &[],
            vec![AttributeProto::tensor("value", value)],
        )
    }

    /// A node with one output named like the node; returns that name.
    pub fn node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        self.node_with_outputs(op_type, name, inputs, &[name], attrs);
        name.to_string()
    }

    /// A node with several outputs (`""` for an optional output left out).
    pub fn node_with_outputs(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) {
        self.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: Some(name.to_string()),
            op_type: Some(op_type.to_string()),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// Adds a node as given (a custom domain, a doc string); a node of a domain other than the
    /// default one also imports that domain at version 1 unless imported already.
    pub fn push(&mut self, node: NodeProto) {
        if !node.is_standard()
            && !self
                .extra_opsets
                .iter()
                .any(|o| o.domain() == node.domain())
        {
            self.extra_opsets
                .push(OperatorSetIdProto::new(node.domain(), 1));
        }
        self.graph.node.push(node);
    }

    /// The graph, checked: every node input is produced before it is used (by a graph input, an
    /// initializer, an earlier node, or a name of the enclosing graph listed in `outer_scope`),
    /// no value is produced twice, and every graph output exists.
    pub fn finish(self, outer_scope: &[&str]) -> Result<GraphProto> {
        let graph = self.graph;
        let fail = |reason: String| Error::Graph {
            graph: graph.name().to_string(),
            reason,
        };
        let mut known: HashSet<&str> = outer_scope.iter().copied().collect();
        known.extend(graph.input.iter().map(|v| v.name()));
        for t in &graph.initializer {
            if !known.insert(t.name()) && !graph.input.iter().any(|v| v.name() == t.name()) {
                return Err(fail(format!("initializer '{}' is defined twice", t.name())));
            }
        }
        for node in &graph.node {
            if let Some(missing) = node
                .input
                .iter()
                .find(|i| !i.is_empty() && !known.contains(i.as_str()))
            {
                return Err(fail(format!(
                    "node '{}' ({}) reads '{missing}' before anything produces it",
                    node.name(),
                    node.op_type()
                )));
            }
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                if !known.insert(out) {
                    return Err(fail(format!(
                        "'{out}' is produced twice (node '{}')",
                        node.name()
                    )));
                }
            }
        }
        if let Some(missing) = graph.output.iter().find(|o| !known.contains(o.name())) {
            return Err(fail(format!(
                "output '{}' is never produced",
                missing.name()
            )));
        }
        Ok(graph)
    }

    /// The checked graph wrapped in a model: default-domain opset [`OPSET`], IR version
    /// [`IR_VERSION`], producer `chipbench`.
    pub fn into_model(self) -> Result<ModelProto> {
        let mut opsets = vec![OperatorSetIdProto::new("", OPSET)];
        opsets.extend(self.extra_opsets.iter().cloned());
        Ok(ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: opsets,
            producer_name: Some("chipbench".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            graph: Some(self.finish(&[])?),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_that_every_input_is_produced_first() {
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Float, &["2"]);
        g.node("Relu", "b", &["a"], vec![]);
        g.node("Relu", "a", &["x"], vec![]);
        g.output("a", DataType::Float, &["2"]);
        let err = g.into_model().unwrap_err().to_string();
        assert_eq!(
            err,
            "graph 'g': node 'b' (Relu) reads 'a' before anything produces it"
        );
    }

    #[test]
    fn checks_outputs_and_duplicates() {
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Float, &["2"]);
        g.node("Relu", "a", &["x"], vec![]);
        g.node("Relu", "a", &["x"], vec![]);
        assert!(
            g.clone()
                .finish(&[])
                .unwrap_err()
                .to_string()
                .contains("'a' is produced twice")
        );
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Float, &["2"]);
        g.output("y", DataType::Float, &["2"]);
        assert!(
            g.finish(&[])
                .unwrap_err()
                .to_string()
                .contains("output 'y' is never produced")
        );
    }

    #[test]
    fn imports_custom_domains_and_accepts_outer_scope_names() {
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Float, &["batch", "?"]);
        g.push(NodeProto {
            input: vec!["x".into(), "outer".into()],
            output: vec!["y".into()],
            op_type: Some("Frobnicate".into()),
            domain: Some("com.example".into()),
            ..Default::default()
        });
        g.output("y", DataType::Float, &["batch", "?"]);
        assert!(
            g.clone().into_model().is_err(),
            "'outer' is unknown at the top level"
        );
        assert!(g.clone().finish(&["outer"]).is_ok());
        let mut g2 = g;
        g2.input("outer", DataType::Float, &[]);
        let model = g2.into_model().unwrap();
        assert_eq!(
            model.opset_import[1],
            OperatorSetIdProto::new("com.example", 1)
        );
        let dims = &model.graph.unwrap().input[0].r#type.clone().unwrap();
        let shape = dims.as_tensor().unwrap().shape.as_ref().unwrap();
        assert_eq!(
            shape.dim[1].value, None,
            "'?' is a dimension with neither value nor name"
        );
    }
}
