//! Shape inference for a graph whose inputs are bound to concrete shapes.
//!
//! It walks the nodes in order and computes each output's shape and element type from the
//! shapes of its inputs, folding the small integer computations exporters emit around
//! `Reshape` (`Shape` → `Gather` → `Concat`...). It trusts only the bound inputs and the
//! constants: declared `value_info` and output shapes are ignored, because exporters often write
//! stale ones. A node it cannot size is recorded with the reason, and everything downstream of
//! it stays unknown; nothing is guessed.
//!
//! The rules live in one file per operator family, as tract's `onnx/src/ops/` does. An operator
//! that multiplies also says how many MACs it costs there, next to its shape rule, so that
//! [`crate::stats`] counts from the same operand checks and output shapes the inference uses.
//! Calibration and channel pruning use [`Inference::shapes`]. Of the operators outside the
//! standard domain only ONNX Runtime's `MatMulNBits` is sized (the weight-only variants write
//! it); every other one stays unknown.

mod constant;
mod conv;
mod elementwise;
mod matmul;
mod norm;
mod quant;
mod recurrent;
mod reduce;
mod shape;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use chipbench_core::TensorInfo;

use crate::model::tensor_bytes;
use crate::onnx::{
    DataType, GraphProto, ModelProto, NodeProto, TensorProto, tensor_shape_proto, values_f32,
    values_i64,
};

/// Constants up to this many elements are folded (shape vectors, axes, scalars); bigger ones are
/// weights, whose values never decide a shape.
const MAX_FOLDED: usize = 4096;

/// The shapes and element types inferred for the values of a model's main graph.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inference {
    /// Every value whose shape is known: inputs, initializers, node outputs.
    pub shapes: BTreeMap<String, Vec<usize>>,
    pub elem_types: BTreeMap<String, DataType>,
    /// Nodes whose outputs could not be sized, in graph order.
    pub unresolved: Vec<Unresolved>,
    /// For each value of unknown shape, the index in `unresolved` of the node where inference
    /// first failed on the way to it.
    causes: BTreeMap<String, usize>,
}

impl Inference {
    /// The node where inference first failed upstream of `value`, when its shape is unknown
    /// because of a node (rather than an unbound input).
    pub fn why_unknown(&self, value: &str) -> Option<&Unresolved> {
        self.causes.get(value).map(|&i| &self.unresolved[i])
    }

    /// The multiply-accumulates of `node`, a node of the main graph, at the inferred shapes of
    /// its inputs; the error says why they cannot be counted.
    pub(crate) fn macs(&self, node: &NodeProto) -> Inferred<u64> {
        let rules = if node.is_standard() {
            rules(node.op_type())
        } else {
            let contrib = matmul::contrib_rules(node);
            Some(
                contrib
                    .ok_or("an operator outside the standard ONNX domain; its MACs are unknown")?,
            )
        };
        if node.subgraphs().next().is_some() {
            return Err("multiplications inside control flow are not counted".into());
        }
        let count = rules
            .and_then(|r| r.macs)
            .ok_or("counting its MACs is not implemented")?;
        count(&Recorded {
            node,
            inference: self,
        })
    }
}

/// A node whose output shapes are unknown, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// The node's name, or its first output when it has none.
    pub node: String,
    pub op: String,
    pub reason: String,
}

impl Unresolved {
    /// Also how the statistics name a node whose MACs they cannot count, so that both read
    /// alike.
    pub(crate) fn at(node: &NodeProto, reason: String) -> Unresolved {
        Unresolved {
            node: node_label(node),
            op: node.qualified_op(),
            reason,
        }
    }
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node '{}' ({}): {}", self.node, self.op, self.reason)
    }
}

/// How a node is named in messages: its name, else its first output.
pub(crate) fn node_label(node: &NodeProto) -> String {
    match node.name() {
        "" => node.output.first().cloned().unwrap_or_default(),
        name => name.to_string(),
    }
}

/// Infers the shapes of the main graph with `inputs` bound. An input missing from `inputs`
/// keeps its declared shape when that is fully fixed, and is unknown otherwise. `model_dir`
/// lets small constants stored as external data be read; without it they are not folded.
pub fn infer_shapes(
    model: &ModelProto,
    inputs: &[TensorInfo],
    model_dir: Option<&Path>,
) -> Inference {
    let Some(graph) = model.graph.as_ref() else {
        return Inference::default();
    };
    let opset = model.onnx_opset().unwrap_or(crate::builder::OPSET);
    let mut facts: HashMap<String, Fact> = HashMap::new();
    for t in &graph.initializer {
        facts.insert(t.name().to_string(), Fact::of_tensor(t, model_dir));
    }
    for s in &graph.sparse_initializer {
        if let Some(values) = &s.values {
            let fact = Fact {
                shape: crate::onnx::dims_to_shape(&s.dims).ok(),
                elem: values.elem_type().ok(),
                values: None,
            };
            facts.insert(values.name().to_string(), fact);
        }
    }
    bind_inputs(graph, inputs, &mut facts);

    let mut unresolved = Vec::new();
    let mut causes = BTreeMap::new();
    for node in &graph.node {
        let cx = Ctx {
            node,
            facts: &facts,
            opset,
        };
        match infer_node(&cx) {
            Ok(outs) => {
                for (name, fact) in node.output.iter().zip(outs) {
                    if !name.is_empty() {
                        facts.insert(name.clone(), fact);
                    }
                }
            }
            Err(reason) => {
                // An input left unknown by an earlier failure carries that failure's cause.
                let inherited = node.input.iter().find_map(|i| causes.get(i).copied());
                let cause = inherited.unwrap_or(unresolved.len());
                unresolved.push(Unresolved::at(node, reason));
                for name in node.output.iter().filter(|o| !o.is_empty()) {
                    facts.insert(name.clone(), Fact::default());
                    causes.insert(name.clone(), cause);
                }
            }
        }
    }

    let mut result = Inference {
        unresolved,
        causes,
        ..Default::default()
    };
    for (name, fact) in facts {
        if let Some(elem) = fact.elem {
            result.elem_types.insert(name.clone(), elem);
        }
        if let Some(shape) = fact.shape {
            result.shapes.insert(name, shape);
        }
    }
    result
}

fn bind_inputs(graph: &GraphProto, inputs: &[TensorInfo], facts: &mut HashMap<String, Fact>) {
    use tensor_shape_proto::dimension::Value;
    for v in &graph.input {
        let declared = v.r#type.as_ref().and_then(|t| t.as_tensor());
        let elem = declared.and_then(|t| DataType::try_from(t.elem_type()).ok());
        if let Some(info) = inputs.iter().find(|i| i.name == v.name()) {
            let elem = Some(DataType::from_dtype(info.dtype));
            facts.insert(
                v.name().to_string(),
                Fact {
                    shape: Some(info.shape.clone()),
                    elem,
                    values: None,
                },
            );
        } else if !facts.contains_key(v.name()) {
            let fixed = declared.and_then(|t| t.shape.as_ref()).and_then(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(Value::DimValue(n)) if n >= 0 => Some(n as usize),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
            });
            facts.insert(
                v.name().to_string(),
                Fact {
                    shape: fixed,
                    elem,
                    values: None,
                },
            );
        }
    }
}

/// Known values of a small constant, in row-major order.
#[derive(Clone, Debug, PartialEq)]
enum Values {
    Int(Vec<i64>),
    Float(Vec<f64>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
        }
    }

    fn ints(&self) -> Vec<i64> {
        match self {
            Values::Int(v) => v.clone(),
            Values::Float(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    fn floats(&self) -> Vec<f64> {
        match self {
            Values::Int(v) => v.iter().map(|&x| x as f64).collect(),
            Values::Float(v) => v.clone(),
        }
    }

    fn pick(&self, indices: &[usize]) -> Values {
        match self {
            Values::Int(v) => Values::Int(indices.iter().map(|&i| v[i]).collect()),
            Values::Float(v) => Values::Float(indices.iter().map(|&i| v[i]).collect()),
        }
    }

    /// The values converted for an element type: integers for integer and boolean types.
    fn cast(&self, to: DataType) -> Values {
        if to.is_float() {
            Values::Float(self.floats())
        } else if to == DataType::Bool {
            Values::Int(self.floats().iter().map(|&x| (x != 0.0) as i64).collect())
        } else {
            Values::Int(self.ints())
        }
    }
}

/// What is known about one value.
#[derive(Clone, Debug, Default)]
struct Fact {
    shape: Option<Vec<usize>>,
    elem: Option<DataType>,
    values: Option<Values>,
}

impl Fact {
    fn new(shape: Vec<usize>, elem: Option<DataType>) -> Fact {
        Fact {
            shape: Some(shape),
            elem,
            values: None,
        }
    }

    fn with_values(shape: Vec<usize>, elem: Option<DataType>, values: Option<Values>) -> Fact {
        Fact {
            shape: Some(shape),
            elem,
            values,
        }
    }

    fn of_tensor(t: &TensorProto, model_dir: Option<&Path>) -> Fact {
        let shape = t.shape().ok();
        let elem = t.elem_type().ok();
        let small = t.element_count() as usize <= MAX_FOLDED;
        let values = (small && shape.is_some())
            .then(|| read_values(t, model_dir))
            .flatten();
        Fact {
            shape,
            elem,
            values,
        }
    }
}

fn read_values(t: &TensorProto, model_dir: Option<&Path>) -> Option<Values> {
    let bytes = match model_dir {
        Some(dir) => tensor_bytes(t, dir).ok()?,
        None => t.inline_bytes().ok()?,
    };
    if let Ok(v) = values_i64(t, &bytes) {
        return Some(Values::Int(v));
    }
    values_f32(t, &bytes)
        .ok()
        .map(|v| Values::Float(v.into_iter().map(f64::from).collect()))
}

type Inferred<T> = Result<T, String>;

/// What the graph walk knows of one operator: how its outputs are shaped and, when it
/// multiplies, how many MACs it costs.
struct Rules {
    shapes: fn(&Ctx) -> Inferred<Vec<Fact>>,
    macs: Option<fn(&Recorded) -> Inferred<u64>>,
}

impl Rules {
    fn shaping(shapes: fn(&Ctx) -> Inferred<Vec<Fact>>) -> Rules {
        Rules { shapes, macs: None }
    }

    fn multiplying(
        shapes: fn(&Ctx) -> Inferred<Vec<Fact>>,
        macs: fn(&Recorded) -> Inferred<u64>,
    ) -> Rules {
        Rules {
            shapes,
            macs: Some(macs),
        }
    }
}

/// The rules of a standard operator, from the family that knows it.
fn rules(op: &str) -> Option<Rules> {
    const FAMILIES: [fn(&str) -> Option<Rules>; 9] = [
        elementwise::rules,
        norm::rules,
        matmul::rules,
        conv::rules,
        shape::rules,
        constant::rules,
        reduce::rules,
        quant::rules,
        recurrent::rules,
    ];
    FAMILIES.iter().find_map(|family| family(op))
}

fn infer_node(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let node = cx.node;
    if !node.is_standard() {
        return match matmul::contrib_rules(node) {
            Some(rules) => (rules.shapes)(cx),
            None => Err(format!(
                "'{}' is not a standard ONNX operator",
                node.qualified_op()
            )),
        };
    }
    match node.op_type() {
        "If" | "Loop" | "Scan" => Err("the shapes of control-flow outputs are not inferred".into()),
        "NonZero" | "NonMaxSuppression" | "Unique" | "Compress" => {
            Err("the output shape depends on the data".into())
        }
        op => match rules(op) {
            Some(rules) => (rules.shapes)(cx),
            None => Err(format!("shape inference for {op} is not implemented")),
        },
    }
}

/// A node and the shapes of its inputs: what the shape rules read during the walk ([`Ctx`]) and
/// the MAC counts read afterwards ([`Recorded`]), so that both check operands the same way.
trait Inputs {
    fn node(&self) -> &NodeProto;
    fn shape(&self, i: usize) -> Inferred<&[usize]>;
}

/// The name of input `i` of `node`, when given (an empty name is an optional input left out).
fn input_name(node: &NodeProto, i: usize) -> Option<&str> {
    node.input
        .get(i)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

fn required_input(node: &NodeProto, i: usize) -> Inferred<&str> {
    input_name(node, i).ok_or_else(|| format!("input #{i} is missing"))
}

/// A node during the walk, with everything known so far.
struct Ctx<'a> {
    node: &'a NodeProto,
    facts: &'a HashMap<String, Fact>,
    opset: i64,
}

impl Inputs for Ctx<'_> {
    fn node(&self) -> &NodeProto {
        self.node
    }

    fn shape(&self, i: usize) -> Inferred<&[usize]> {
        let fact = self.fact(i)?;
        fact.shape
            .as_deref()
            .ok_or_else(|| format!("the shape of '{}' is unknown", self.node.input[i]))
    }
}

impl Ctx<'_> {
    fn name(&self, i: usize) -> Option<&str> {
        input_name(self.node, i)
    }

    fn fact(&self, i: usize) -> Inferred<&Fact> {
        let name = required_input(self.node, i)?;
        self.facts
            .get(name)
            .ok_or_else(|| format!("'{name}' is not produced before this node"))
    }

    fn elem(&self, i: usize) -> Option<DataType> {
        self.fact(i).ok().and_then(|f| f.elem)
    }

    fn values(&self, i: usize) -> Inferred<&Values> {
        self.fact(i)?.values.as_ref().ok_or_else(|| {
            format!(
                "'{}' is not a constant known once the inputs are bound",
                self.node.input[i]
            )
        })
    }

    fn ints(&self, i: usize) -> Inferred<Vec<i64>> {
        self.values(i).map(Values::ints)
    }

    /// The values of optional input `i`; `None` when it is left out.
    fn opt_ints(&self, i: usize) -> Inferred<Option<Vec<i64>>> {
        self.name(i).map(|_| self.ints(i)).transpose()
    }

    /// An argument given as input `i` (newer opsets) or as attribute `attr` (older ones).
    fn ints_arg(&self, i: usize, attr: &str) -> Inferred<Option<Vec<i64>>> {
        match self.opt_ints(i)? {
            Some(v) => Ok(Some(v)),
            None => Ok(self.node.attr_ints(attr).map(<[i64]>::to_vec)),
        }
    }

    fn same_as(&self, i: usize) -> Inferred<Fact> {
        Ok(Fact::new(self.shape(i)?.to_vec(), self.elem(i)))
    }
}

/// A node of an inferred graph, with the shapes the walk recorded for its inputs.
struct Recorded<'a> {
    node: &'a NodeProto,
    inference: &'a Inference,
}

impl Inputs for Recorded<'_> {
    fn node(&self) -> &NodeProto {
        self.node
    }

    fn shape(&self, i: usize) -> Inferred<&[usize]> {
        let name = required_input(self.node, i)?;
        let inference = self.inference;
        inference
            .shapes
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| match inference.why_unknown(name) {
                Some(cause) => format!("the shape of '{name}' is unknown, because of {cause}"),
                None => format!("the shape of '{name}' is unknown"),
            })
    }
}

/// Normalizes a possibly negative axis against a rank.
fn axis(a: i64, rank: usize) -> Inferred<usize> {
    let r = rank as i64;
    let n = if a < 0 { a + r } else { a };
    if (0..r).contains(&n) {
        Ok(n as usize)
    } else {
        Err(format!("axis {a} is out of range for rank {rank}"))
    }
}

/// The element count of a shape, wide enough for MAC totals.
fn elements(dims: &[usize]) -> u64 {
    dims.iter().map(|&d| d as u64).product()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::builder::GraphBuilder;
    use chipbench_core::DType;

    /// An f32 input bound to `shape`.
    pub(crate) fn bound(name: &str, shape: &[usize]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype: DType::F32,
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn records_why_a_node_cannot_be_sized_and_stays_unknown_downstream() {
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Float, &["batch", "4"]);
        g.node("NonZero", "nz", &["x"], vec![]);
        g.node("Relu", "after", &["nz"], vec![]);
        let model = g.into_model().unwrap();
        let inf = infer_shapes(&model, &[bound("x", &[1, 4])], None);
        assert_eq!(inf.unresolved.len(), 2);
        assert_eq!(
            inf.unresolved[0].to_string(),
            "node 'nz' (NonZero): the output shape depends on the data"
        );
        assert_eq!(inf.unresolved[1].reason, "the shape of 'nz' is unknown");
        assert!(!inf.shapes.contains_key("after"));
        assert_eq!(
            inf.why_unknown("after").unwrap().node,
            "nz",
            "the root cause is kept"
        );
        assert_eq!(inf.why_unknown("x"), None);
        // Without a bound shape for a symbolic input, nothing is guessed.
        let inf = infer_shapes(&crate::fixtures::misdeclared_shapes(), &[], None);
        assert_eq!(
            inf.unresolved[0].to_string(),
            "node 'mm' (MatMul): the shape of 'x' is unknown"
        );
    }
}
