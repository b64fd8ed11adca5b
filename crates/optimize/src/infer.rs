//! Shape inference for a graph whose inputs are bound to concrete shapes.
//!
//! It walks the nodes in order and computes each output's shape and element type from the
//! shapes of its inputs, folding the small integer computations exporters emit around
//! `Reshape` (`Shape` → `Gather` → `Concat`...). It trusts only the bound inputs and the
//! constants: declared `value_info` and output shapes are ignored, because exporters often write
//! stale ones. A node it cannot size is recorded with the reason, and everything downstream of
//! it stays unknown; nothing is guessed.
//!
//! The statistics use it for MACs; calibration and channel pruning use [`Inference::shapes`].

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
}

/// A node whose output shapes are unknown, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// The node's name, or its first output when it has none.
    pub node: String,
    pub op: String,
    pub reason: String,
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
                unresolved.push(Unresolved {
                    node: node_label(node),
                    op: node.qualified_op(),
                    reason,
                });
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

struct Ctx<'a> {
    node: &'a NodeProto,
    facts: &'a HashMap<String, Fact>,
    opset: i64,
}

impl Ctx<'_> {
    /// The name of input `i`, when given (an empty name is an optional input left out).
    fn name(&self, i: usize) -> Option<&str> {
        self.node
            .input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn fact(&self, i: usize) -> Inferred<&Fact> {
        let name = self
            .name(i)
            .ok_or_else(|| format!("input #{i} is missing"))?;
        self.facts
            .get(name)
            .ok_or_else(|| format!("'{name}' is not produced before this node"))
    }

    fn shape(&self, i: usize) -> Inferred<&[usize]> {
        let fact = self.fact(i)?;
        fact.shape
            .as_deref()
            .ok_or_else(|| format!("the shape of '{}' is unknown", self.node.input[i]))
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

/// Normalizes a possibly negative axis against a rank.
fn axis(a: i64, rank: usize) -> Inferred<usize> {
    let r = rank as i64;
    let n = if a < 0 { a + r } else { a };
    if (0..r.max(1)).contains(&n) {
        Ok(n as usize)
    } else {
        Err(format!("axis {a} is out of range for rank {rank}"))
    }
}

/// Numpy-style broadcasting of several shapes.
pub(crate) fn broadcast(shapes: &[&[usize]]) -> Inferred<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    (0..rank)
        .map(|i| {
            let dims = shapes
                .iter()
                .filter_map(|s| (i + s.len()).checked_sub(rank).map(|j| s[j]));
            let mut out = 1;
            for d in dims {
                if d != 1 {
                    if out != 1 && out != d {
                        return Err(format!("shapes {shapes:?} do not broadcast"));
                    }
                    out = d;
                }
            }
            Ok(out)
        })
        .collect()
}

/// Row-major index into a tensor of shape `from` broadcast to `to`, for output position `flat`.
fn broadcast_source(flat: usize, to: &[usize], from: &[usize]) -> usize {
    let mut rem = flat;
    let mut coords = vec![0; to.len()];
    for i in (0..to.len()).rev() {
        coords[i] = rem % to[i].max(1);
        rem /= to[i].max(1);
    }
    let offset = to.len() - from.len();
    from.iter().enumerate().fold(0, |acc, (j, &d)| {
        acc * d + if d == 1 { 0 } else { coords[j + offset] }
    })
}

/// Folds an element-wise operation over inputs whose values are all known.
fn fold_elementwise(cx: &Ctx, out: &[usize], op: &str) -> Option<Values> {
    let n: usize = out.iter().product();
    if n > MAX_FOLDED {
        return None;
    }
    let args: Vec<(&[usize], &Values)> = (0..cx.node.input.len())
        .map(|i| Some((cx.shape(i).ok()?, cx.values(i).ok()?)))
        .collect::<Option<_>>()?;
    let all_int = args.iter().all(|(_, v)| matches!(v, Values::Int(_)));
    let pick = |k: usize, flat: usize| -> (i64, f64) {
        let (shape, values) = args[k];
        let j = broadcast_source(flat, out, shape);
        match values {
            Values::Int(v) => (v[j], v[j] as f64),
            Values::Float(v) => (v[j] as i64, v[j]),
        }
    };
    if op == "Where" {
        let v = (0..n).map(|f| {
            if pick(0, f).0 != 0 {
                pick(1, f)
            } else {
                pick(2, f)
            }
        });
        return Some(if matches!(args[1].1, Values::Int(_)) {
            Values::Int(v.map(|x| x.0).collect())
        } else {
            Values::Float(v.map(|x| x.1).collect())
        });
    }
    let [a, b] = [0, 1];
    if args.len() != 2 {
        return None;
    }
    let cmp = |f: &dyn Fn(f64, f64) -> bool| {
        Values::Int(
            (0..n)
                .map(|i| f(pick(a, i).1, pick(b, i).1) as i64)
                .collect(),
        )
    };
    Some(match op {
        "Equal" => cmp(&|x, y| x == y),
        "Less" => cmp(&|x, y| x < y),
        "Greater" => cmp(&|x, y| x > y),
        "LessOrEqual" => cmp(&|x, y| x <= y),
        "GreaterOrEqual" => cmp(&|x, y| x >= y),
        _ if all_int => {
            let f = |x: i64, y: i64| -> Option<i64> {
                match op {
                    "Add" => x.checked_add(y),
                    "Sub" => x.checked_sub(y),
                    "Mul" => x.checked_mul(y),
                    // ONNX integer division truncates, as Rust's does.
                    "Div" => x.checked_div(y),
                    "Max" => Some(x.max(y)),
                    "Min" => Some(x.min(y)),
                    _ => None,
                }
            };
            Values::Int(
                (0..n)
                    .map(|i| f(pick(a, i).0, pick(b, i).0))
                    .collect::<Option<_>>()?,
            )
        }
        _ => {
            let f = |x: f64, y: f64| match op {
                "Add" => Some(x + y),
                "Sub" => Some(x - y),
                "Mul" => Some(x * y),
                "Div" => Some(x / y),
                "Max" => Some(x.max(y)),
                "Min" => Some(x.min(y)),
                "Pow" => Some(x.powf(y)),
                _ => None,
            };
            Values::Float(
                (0..n)
                    .map(|i| f(pick(a, i).1, pick(b, i).1))
                    .collect::<Option<_>>()?,
            )
        }
    })
}

/// The dims of a matrix product, numpy `matmul` semantics (1-D operands promoted and their
/// unit dimension dropped, batch dimensions broadcast).
pub(crate) struct MatMulDims {
    pub out: Vec<usize>,
    pub batch: u64,
    pub m: u64,
    pub k: u64,
    pub n: u64,
}

pub(crate) fn matmul_dims(a: &[usize], b: &[usize]) -> Inferred<MatMulDims> {
    if a.is_empty() || b.is_empty() {
        return Err("MatMul of a scalar".into());
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(format!(
            "MatMul of {a:?} and {b:?}: inner dimensions differ"
        ));
    }
    let batch_dims = broadcast(&[&a2[..a2.len() - 2], &b2[..b2.len() - 2]])?;
    let mut out = batch_dims.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(MatMulDims {
        out,
        batch: batch_dims.iter().map(|&d| d as u64).product(),
        m: m as u64,
        k: k as u64,
        n: n as u64,
    })
}

/// The `(M, K, N)` of a Gemm from the shapes of A and B and its transpose flags.
pub(crate) fn gemm_dims(
    node: &NodeProto,
    a: &[usize],
    b: &[usize],
) -> Inferred<(usize, usize, usize)> {
    if a.len() != 2 || b.len() != 2 {
        return Err(format!("Gemm wants 2-D operands, got {a:?} and {b:?}"));
    }
    let (m, k) = if node.attr_i("transA").unwrap_or(0) != 0 {
        (a[1], a[0])
    } else {
        (a[0], a[1])
    };
    let (k2, n) = if node.attr_i("transB").unwrap_or(0) != 0 {
        (b[1], b[0])
    } else {
        (b[0], b[1])
    };
    if k != k2 {
        return Err(format!("Gemm of {a:?} and {b:?}: inner dimensions differ"));
    }
    Ok((m, k, n))
}

/// Spatial output sizes of a convolution or pooling window sliding over `input` (spatial dims
/// only), following the ONNX rules for `pads`, `strides`, `dilations`, `auto_pad` and
/// `ceil_mode`.
fn window_out(node: &NodeProto, input: &[usize], kernel: &[usize]) -> Inferred<Vec<usize>> {
    let n = input.len();
    if kernel.len() != n {
        return Err(format!(
            "kernel {kernel:?} does not fit spatial dims {input:?}"
        ));
    }
    let strides = node
        .attr_ints("strides")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![1; n]);
    let dilations = node
        .attr_ints("dilations")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![1; n]);
    let pads = node
        .attr_ints("pads")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![0; 2 * n]);
    if strides.len() != n || dilations.len() != n || pads.len() != 2 * n {
        return Err("strides, dilations or pads do not match the spatial rank".into());
    }
    let ceil_mode = node.attr_i("ceil_mode").unwrap_or(0) != 0;
    let auto_pad = node.attr_s("auto_pad").unwrap_or("NOTSET");
    (0..n)
        .map(|i| {
            let (x, s, d) = (input[i] as i64, strides[i], dilations[i]);
            if s < 1 || d < 1 {
                return Err(format!("stride {s} or dilation {d} below 1"));
            }
            let window = (kernel[i] as i64 - 1) * d + 1;
            let out = match auto_pad {
                "SAME_UPPER" | "SAME_LOWER" => (x + s - 1) / s,
                "VALID" => (x - window) / s + 1,
                _ => {
                    let span = x + pads[i] + pads[i + n] - window;
                    if span < 0 {
                        return Err(format!("window {window} is larger than padded input {x}"));
                    }
                    if ceil_mode {
                        let mut out = (span + s - 1) / s + 1;
                        // A last window starting in the right padding is dropped (PyTorch and
                        // ONNX Runtime agree).
                        if (out - 1) * s >= x + pads[i] {
                            out -= 1;
                        }
                        out
                    } else {
                        span / s + 1
                    }
                }
            };
            usize::try_from(out).map_err(|_| format!("negative output size {out}"))
        })
        .collect()
}

/// Output shape of Conv, ConvInteger and QLinearConv: `x` [N, C, spatial...], `w` [M, C/group,
/// kernel...].
pub(crate) fn conv_shape(node: &NodeProto, x: &[usize], w: &[usize]) -> Inferred<Vec<usize>> {
    if x.len() < 3 || w.len() != x.len() {
        return Err(format!("Conv of {x:?} with weights {w:?}"));
    }
    let group = node.attr_i("group").unwrap_or(1).max(1) as usize;
    if x[1] != w[1] * group {
        return Err(format!(
            "Conv: {} input channels, weights {w:?} with group {group}",
            x[1]
        ));
    }
    let mut out = vec![x[0], w[0]];
    out.extend(window_out(node, &x[2..], &w[2..])?);
    Ok(out)
}

fn conv_transpose_shape(node: &NodeProto, x: &[usize], w: &[usize]) -> Inferred<Vec<usize>> {
    if x.len() < 3 || w.len() != x.len() || x[1] != w[0] {
        return Err(format!("ConvTranspose of {x:?} with weights {w:?}"));
    }
    let n = x.len() - 2;
    let group = node.attr_i("group").unwrap_or(1).max(1) as usize;
    let mut out = vec![x[0], w[1] * group];
    if let Some(shape) = node.attr_ints("output_shape") {
        let spatial = &shape[shape.len().saturating_sub(n)..];
        out.extend(spatial.iter().map(|&d| d.max(0) as usize));
        return Ok(out);
    }
    let attr = |name: &str, default: i64, len: usize| {
        node.attr_ints(name)
            .map(<[i64]>::to_vec)
            .unwrap_or_else(|| vec![default; len])
    };
    let (strides, dilations) = (attr("strides", 1, n), attr("dilations", 1, n));
    let (pads, output_padding) = (attr("pads", 0, 2 * n), attr("output_padding", 0, n));
    let auto_pad = node.attr_s("auto_pad").unwrap_or("NOTSET");
    for i in 0..n {
        let (xi, s) = (x[2 + i] as i64, strides.get(i).copied().unwrap_or(1));
        let size = if matches!(auto_pad, "SAME_UPPER" | "SAME_LOWER") {
            xi * s
        } else {
            let window = (w[2 + i] as i64 - 1) * dilations.get(i).copied().unwrap_or(1) + 1;
            s * (xi - 1) + output_padding.get(i).copied().unwrap_or(0) + window
                - pads.get(i).copied().unwrap_or(0)
                - pads.get(i + n).copied().unwrap_or(0)
        };
        out.push(usize::try_from(size).map_err(|_| format!("negative output size {size}"))?);
    }
    Ok(out)
}

fn pool_shape(node: &NodeProto, x: &[usize]) -> Inferred<Vec<usize>> {
    let kernel: Vec<usize> = node
        .attr_ints("kernel_shape")
        .ok_or("no kernel_shape attribute")?
        .iter()
        .map(|&k| k.max(1) as usize)
        .collect();
    if x.len() != kernel.len() + 2 {
        return Err(format!("pooling window {kernel:?} over {x:?}"));
    }
    let mut out = x[..2].to_vec();
    out.extend(window_out(node, &x[2..], &kernel)?);
    Ok(out)
}

/// The shape after reducing `axes` (all axes when empty and `noop` is false).
fn reduce_shape(x: &[usize], axes: &[i64], keepdims: bool, noop: bool) -> Inferred<Vec<usize>> {
    if axes.is_empty() && noop {
        return Ok(x.to_vec());
    }
    let axes: Vec<usize> = if axes.is_empty() {
        (0..x.len()).collect()
    } else {
        axes.iter()
            .map(|&a| axis(a, x.len()))
            .collect::<Inferred<_>>()?
    };
    Ok(x.iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect())
}

/// Start and length along one axis of a Slice, with the ONNX clamping rules.
fn slice_range(dim: usize, start: i64, end: i64, step: i64) -> Inferred<(i64, usize)> {
    let d = dim as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (start, end) = (norm(start), norm(end));
    let (begin, len) = match step {
        0 => return Err("Slice step 0".into()),
        s if s > 0 => {
            let (b, e) = (start.clamp(0, d), end.clamp(0, d));
            (b, if e > b { (e - b + s - 1) / s } else { 0 })
        }
        s => {
            let (b, e) = (start.clamp(0, d - 1), end.clamp(-1, d - 1));
            (b, if b > e { (b - e - s - 1) / -s } else { 0 })
        }
    };
    Ok((begin, len as usize))
}

fn slice(cx: &Ctx) -> Inferred<Fact> {
    let x = cx.shape(0)?;
    let (starts, ends, axes, steps) = if cx.opset >= 10 {
        (cx.ints(1)?, cx.ints(2)?, cx.opt_ints(3)?, cx.opt_ints(4)?)
    } else {
        let attr = |n: &str| cx.node.attr_ints(n).map(<[i64]>::to_vec);
        (
            attr("starts").ok_or("no starts")?,
            attr("ends").ok_or("no ends")?,
            attr("axes"),
            None,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    let mut out = x.to_vec();
    let mut ranges: Vec<(i64, usize, i64)> = x.iter().map(|&d| (0, d, 1)).collect();
    for i in 0..starts.len() {
        let a = axis(axes[i], x.len())?;
        let (start, len) = slice_range(x[a], starts[i], ends[i], steps[i])?;
        out[a] = len;
        ranges[a] = (start, len, steps[i]);
    }
    let values = cx.values(0).ok().filter(|_| x.len() == 1).map(|v| {
        let (start, len, step) = ranges[0];
        v.pick(
            &(0..len as i64)
                .map(|j| (start + j * step) as usize)
                .collect::<Vec<_>>(),
        )
    });
    Ok(Fact::with_values(out, cx.elem(0), values))
}

fn reshape(cx: &Ctx) -> Inferred<Fact> {
    let x = cx.shape(0)?;
    let target = if cx.opset >= 5 {
        cx.ints(1)?
    } else {
        cx.node
            .attr_ints("shape")
            .ok_or("no shape attribute")?
            .to_vec()
    };
    let allow_zero = cx.node.attr_i("allowzero").unwrap_or(0) != 0;
    let total: usize = x.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            0 if !allow_zero => out.push(*x.get(i).ok_or("0 copies a dimension the input lacks")?),
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(1);
            }
            d if d >= 0 => out.push(d as usize),
            _ => return Err(format!("invalid target shape {target:?}")),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer_at {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {x:?} to {target:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!("cannot reshape {x:?} to {target:?}"));
    }
    let values = cx.fact(0)?.values.clone();
    Ok(Fact::with_values(out, cx.elem(0), values))
}

fn concat(cx: &Ctx) -> Inferred<Fact> {
    let shapes: Vec<&[usize]> = (0..cx.node.input.len())
        .map(|i| cx.shape(i))
        .collect::<Inferred<_>>()?;
    let first = shapes.first().ok_or("Concat without inputs")?;
    let a = axis(
        cx.node.attr_i("axis").ok_or("no axis attribute")?,
        first.len(),
    )?;
    let mut out = first.to_vec();
    out[a] = 0;
    for s in &shapes {
        if s.len() != first.len()
            || s.iter()
                .zip(first.iter())
                .enumerate()
                .any(|(i, (x, y))| i != a && x != y)
        {
            return Err(format!(
                "Concat of mismatched shapes {shapes:?} on axis {a}"
            ));
        }
        out[a] += s[a];
    }
    // Shape vectors are concatenated 1-D tensors.
    let values = (first.len() == 1)
        .then(|| {
            let parts: Vec<&Values> = (0..cx.node.input.len())
                .map(|i| cx.values(i).ok())
                .collect::<Option<_>>()?;
            if parts.iter().all(|v| matches!(v, Values::Int(_))) {
                Some(Values::Int(parts.iter().flat_map(|v| v.ints()).collect()))
            } else {
                Some(Values::Float(
                    parts.iter().flat_map(|v| v.floats()).collect(),
                ))
            }
        })
        .flatten();
    Ok(Fact::with_values(out, cx.elem(0), values))
}

fn gather(cx: &Ctx) -> Inferred<Fact> {
    let (data, indices) = (cx.shape(0)?, cx.shape(1)?);
    if data.is_empty() {
        return Err("Gather from a scalar".into());
    }
    let a = axis(cx.node.attr_i("axis").unwrap_or(0), data.len())?;
    let mut out = data[..a].to_vec();
    out.extend_from_slice(indices);
    out.extend_from_slice(&data[a + 1..]);
    let values = (data.len() == 1)
        .then(|| {
            let (v, idx) = (cx.values(0).ok()?, cx.ints(1).ok()?);
            let d = data[0] as i64;
            let idx: Vec<usize> = idx
                .iter()
                .map(|&i| if i < 0 { i + d } else { i })
                .map(|i| usize::try_from(i).ok().filter(|&i| i < data[0]))
                .collect::<Option<_>>()?;
            Some(v.pick(&idx))
        })
        .flatten();
    Ok(Fact::with_values(out, cx.elem(0), values))
}

fn squeeze(cx: &Ctx) -> Inferred<Fact> {
    let x = cx.shape(0)?;
    let axes = cx.ints_arg(1, "axes")?;
    let out = match axes {
        None => x.iter().copied().filter(|&d| d != 1).collect(),
        Some(axes) => {
            let axes: Vec<usize> = axes
                .iter()
                .map(|&a| axis(a, x.len()))
                .collect::<Inferred<_>>()?;
            if let Some(&a) = axes.iter().find(|&&a| x[a] != 1) {
                return Err(format!("Squeeze of axis {a}, of size {}", x[a]));
            }
            x.iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect()
        }
    };
    Ok(Fact::with_values(
        out,
        cx.elem(0),
        cx.fact(0)?.values.clone(),
    ))
}

fn unsqueeze(cx: &Ctx) -> Inferred<Fact> {
    let x = cx.shape(0)?;
    let axes = cx.ints_arg(1, "axes")?.ok_or("no axes")?;
    let rank = x.len() + axes.len();
    let axes: Vec<usize> = axes
        .iter()
        .map(|&a| axis(a, rank))
        .collect::<Inferred<_>>()?;
    let mut rest = x.iter();
    let out = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                Some(1)
            } else {
                rest.next().copied()
            }
        })
        .collect::<Option<Vec<_>>>()
        .ok_or("repeated axes")?;
    Ok(Fact::with_values(
        out,
        cx.elem(0),
        cx.fact(0)?.values.clone(),
    ))
}

fn split(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let a = axis(cx.node.attr_i("axis").unwrap_or(0), x.len())?;
    let outputs = cx.node.output.len();
    let sizes = match cx.ints_arg(1, "split")? {
        Some(sizes) => sizes.iter().map(|&s| s.max(0) as usize).collect(),
        None => {
            let parts = cx
                .node
                .attr_i("num_outputs")
                .map_or(outputs, |n| n.max(1) as usize);
            // Equal parts, the last one smaller when the axis does not divide (opset 18 rule).
            let chunk = x[a].div_ceil(parts);
            (0..parts)
                .map(|i| chunk.min(x[a].saturating_sub(i * chunk)))
                .collect::<Vec<_>>()
        }
    };
    if sizes.iter().sum::<usize>() != x[a] || sizes.len() != outputs {
        return Err(format!("Split of {x:?} on axis {a} into {sizes:?}"));
    }
    Ok(sizes
        .into_iter()
        .map(|s| {
            let mut out = x.to_vec();
            out[a] = s;
            Fact::new(out, cx.elem(0))
        })
        .collect())
}

/// Element type of a `Constant` or `ConstantOfShape` value attribute.
fn constant(node: &NodeProto) -> Inferred<Fact> {
    if let Some(t) = node.attr_t("value") {
        let fact = Fact::of_tensor(t, None);
        return if fact.shape.is_some() {
            Ok(fact)
        } else {
            Err("invalid value tensor".into())
        };
    }
    if let Some(s) = node
        .attr("sparse_value")
        .and_then(|a| a.sparse_tensor.as_ref())
    {
        let shape = crate::onnx::dims_to_shape(&s.dims)?;
        return Ok(Fact::new(
            shape,
            s.values.as_ref().and_then(|v| v.elem_type().ok()),
        ));
    }
    if let Some(f) = node.attr_f("value_float") {
        return Ok(Fact::with_values(
            vec![],
            Some(DataType::Float),
            Some(Values::Float(vec![f as f64])),
        ));
    }
    if let Some(i) = node.attr_i("value_int") {
        return Ok(Fact::with_values(
            vec![],
            Some(DataType::Int64),
            Some(Values::Int(vec![i])),
        ));
    }
    if let Some(v) = node.attr_floats("value_floats") {
        let values = Values::Float(v.iter().map(|&f| f as f64).collect());
        return Ok(Fact::with_values(
            vec![v.len()],
            Some(DataType::Float),
            Some(values),
        ));
    }
    if let Some(v) = node.attr_ints("value_ints") {
        return Ok(Fact::with_values(
            vec![v.len()],
            Some(DataType::Int64),
            Some(Values::Int(v.to_vec())),
        ));
    }
    if node.attr("value_string").is_some() {
        return Ok(Fact::new(vec![], Some(DataType::String)));
    }
    if let Some(a) = node.attr("value_strings") {
        return Ok(Fact::new(vec![a.strings.len()], Some(DataType::String)));
    }
    Err("Constant without a value attribute".into())
}

fn recurrent(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    if x.len() != 3 {
        return Err(format!("recurrent input of shape {x:?}, expected 3-D"));
    }
    let hidden = cx
        .node
        .attr_i("hidden_size")
        .ok_or("no hidden_size attribute")?
        .max(0) as usize;
    let dirs = if cx.node.attr_s("direction") == Some("bidirectional") {
        2
    } else {
        1
    };
    let batch_first = cx.node.attr_i("layout").unwrap_or(0) == 1;
    let (seq, batch) = if batch_first {
        (x[1], x[0])
    } else {
        (x[0], x[1])
    };
    let elem = cx.elem(0);
    let y = if batch_first {
        vec![batch, seq, dirs, hidden]
    } else {
        vec![seq, dirs, batch, hidden]
    };
    let state = if batch_first {
        vec![batch, dirs, hidden]
    } else {
        vec![dirs, batch, hidden]
    };
    Ok(vec![
        Fact::new(y, elem),
        Fact::new(state.clone(), elem),
        Fact::new(state, elem),
    ])
}

/// Operators whose one output has the shape and type of their first input.
#[rustfmt::skip]
const SHAPE_PRESERVING: &[&str] = &[
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Sqrt",
    "Exp", "Log", "Abs", "Neg", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos",
    "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Softplus",
    "Softsign", "Elu", "Selu", "Celu", "Gelu", "Mish", "ThresholdedRelu", "Shrink", "Clip",
    "Softmax", "LogSoftmax", "Hardmax", "LRN", "InstanceNormalization", "GroupNormalization",
    "MeanVarianceNormalization", "LpNormalization", "CumSum", "Trilu", "ReverseSequence", "Not",
    "BitwiseNot",
];

fn infer_node(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let node = cx.node;
    if !node.is_standard() {
        return Err(format!(
            "'{}' is not a standard ONNX operator",
            node.qualified_op()
        ));
    }
    let one = |f: Inferred<Fact>| f.map(|f| vec![f]);
    let op = node.op_type();
    match op {
        "Identity" | "Dropout" => {
            let mut fact = cx.same_as(0)?;
            fact.values = cx.fact(0)?.values.clone();
            let mask = Fact::new(cx.shape(0)?.to_vec(), Some(DataType::Bool));
            Ok(vec![fact, mask])
        }
        op if SHAPE_PRESERVING.contains(&op) => {
            // PRelu's slope broadcasts to X (or, before opset 7, runs along channels): Y is
            // shaped like X either way.
            one(cx.same_as(0))
        }
        "IsNaN" | "IsInf" => one(Ok(Fact::new(cx.shape(0)?.to_vec(), Some(DataType::Bool)))),
        "Cast" | "CastLike" => {
            let to = if op == "Cast" {
                DataType::from_code(node.attr_i("to").ok_or("no 'to' attribute")? as i32)
                    .map_err(|e| e.to_string())?
            } else {
                cx.elem(1).ok_or("the target type is unknown")?
            };
            let values = cx.fact(0)?.values.as_ref().map(|v| v.cast(to));
            one(Ok(Fact::with_values(
                cx.shape(0)?.to_vec(),
                Some(to),
                values,
            )))
        }
        "BatchNormalization" => {
            let x = cx.shape(0)?;
            let c = vec![
                *x.get(1)
                    .ok_or("BatchNormalization of a tensor without channels")?,
            ];
            let elem = cx.elem(0);
            Ok(vec![
                Fact::new(x.to_vec(), elem),
                Fact::new(c.clone(), elem),
                Fact::new(c, elem),
            ])
        }
        "LayerNormalization" => {
            let x = cx.shape(0)?;
            let a = axis(node.attr_i("axis").unwrap_or(-1), x.len())?;
            let stats: Vec<usize> = x
                .iter()
                .enumerate()
                .map(|(i, &d)| if i < a { d } else { 1 })
                .collect();
            let elem = cx.elem(0);
            Ok(vec![
                Fact::new(x.to_vec(), elem),
                Fact::new(stats.clone(), elem),
                Fact::new(stats, elem),
            ])
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "BitShift" | "BitwiseAnd" | "BitwiseOr"
        | "BitwiseXor" | "And" | "Or" | "Xor" | "Equal" | "Less" | "LessOrEqual" | "Greater"
        | "GreaterOrEqual" | "Max" | "Min" | "Sum" | "Mean" | "Where" => {
            let shapes: Vec<&[usize]> = (0..node.input.len())
                .map(|i| cx.shape(i))
                .collect::<Inferred<_>>()?;
            let out = broadcast(&shapes)?;
            let elem = match op {
                "And" | "Or" | "Xor" | "Equal" | "Less" | "LessOrEqual" | "Greater"
                | "GreaterOrEqual" => Some(DataType::Bool),
                "Where" => cx.elem(1),
                _ => cx.elem(0),
            };
            let values = fold_elementwise(cx, &out, op);
            one(Ok(Fact::with_values(out, elem, values)))
        }
        "MatMul" | "MatMulInteger" | "QLinearMatMul" => {
            let b = if op == "QLinearMatMul" { 3 } else { 1 };
            let dims = matmul_dims(cx.shape(0)?, cx.shape(b)?)?;
            let elem = match op {
                "MatMul" => cx.elem(0),
                "MatMulInteger" => Some(DataType::Int32),
                _ => cx.elem(7),
            };
            one(Ok(Fact::new(dims.out, elem)))
        }
        "Gemm" => {
            let (m, _, n) = gemm_dims(node, cx.shape(0)?, cx.shape(1)?)?;
            one(Ok(Fact::new(vec![m, n], cx.elem(0))))
        }
        "Conv" | "ConvInteger" | "QLinearConv" => {
            let w = if op == "QLinearConv" { 3 } else { 1 };
            let shape = conv_shape(node, cx.shape(0)?, cx.shape(w)?)?;
            let elem = match op {
                "Conv" => cx.elem(0),
                "ConvInteger" => Some(DataType::Int32),
                _ => cx.elem(7),
            };
            one(Ok(Fact::new(shape, elem)))
        }
        "ConvTranspose" => one(Ok(Fact::new(
            conv_transpose_shape(node, cx.shape(0)?, cx.shape(1)?)?,
            cx.elem(0),
        ))),
        "MaxPool" | "AveragePool" | "LpPool" => {
            let shape = pool_shape(node, cx.shape(0)?)?;
            Ok(vec![
                Fact::new(shape.clone(), cx.elem(0)),
                Fact::new(shape, Some(DataType::Int64)),
            ])
        }
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let x = cx.shape(0)?;
            if x.len() < 2 {
                return Err(format!("global pooling of {x:?}"));
            }
            let out = x
                .iter()
                .enumerate()
                .map(|(i, &d)| if i < 2 { d } else { 1 })
                .collect();
            one(Ok(Fact::new(out, cx.elem(0))))
        }
        "Flatten" => {
            let x = cx.shape(0)?;
            let a = node.attr_i("axis").unwrap_or(1);
            let a = if a < 0 { a + x.len() as i64 } else { a };
            if !(0..=x.len() as i64).contains(&a) {
                return Err(format!("axis {a} out of range for {x:?}"));
            }
            let (head, tail) = x.split_at(a as usize);
            one(Ok(Fact::new(
                vec![head.iter().product(), tail.iter().product()],
                cx.elem(0),
            )))
        }
        "Reshape" => one(reshape(cx)),
        "Transpose" => {
            let x = cx.shape(0)?;
            let perm: Vec<usize> = match node.attr_ints("perm") {
                Some(p) => p
                    .iter()
                    .map(|&a| axis(a, x.len()))
                    .collect::<Inferred<_>>()?,
                None => (0..x.len()).rev().collect(),
            };
            if perm.len() != x.len() {
                return Err(format!("perm {perm:?} for shape {x:?}"));
            }
            one(Ok(Fact::new(
                perm.iter().map(|&p| x[p]).collect(),
                cx.elem(0),
            )))
        }
        "Concat" => one(concat(cx)),
        "Slice" => one(slice(cx)),
        "Split" => split(cx),
        "Squeeze" => one(squeeze(cx)),
        "Unsqueeze" => one(unsqueeze(cx)),
        "Gather" => one(gather(cx)),
        "GatherElements" => one(Ok(Fact::new(cx.shape(1)?.to_vec(), cx.elem(0)))),
        "Shape" => {
            let x = cx.shape(0)?;
            let r = x.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clamp(node.attr_i("start").unwrap_or(0));
            let end = clamp(node.attr_i("end").unwrap_or(r)).max(start);
            let dims: Vec<i64> = x[start..end].iter().map(|&d| d as i64).collect();
            one(Ok(Fact::with_values(
                vec![dims.len()],
                Some(DataType::Int64),
                Some(Values::Int(dims)),
            )))
        }
        "Size" => {
            let n = cx.shape(0)?.iter().product::<usize>() as i64;
            one(Ok(Fact::with_values(
                vec![],
                Some(DataType::Int64),
                Some(Values::Int(vec![n])),
            )))
        }
        "Constant" => one(constant(node)),
        "ConstantOfShape" => {
            let shape: Vec<usize> = cx.ints(0)?.iter().map(|&d| d.max(0) as usize).collect();
            let fill = node.attr_t("value").map(|t| Fact::of_tensor(t, None));
            let elem = fill.as_ref().map_or(Some(DataType::Float), |f| f.elem);
            let n: usize = shape.iter().product();
            let values = match fill.and_then(|f| f.values) {
                Some(v) if v.len() == 1 && n <= MAX_FOLDED => Some(v.pick(&vec![0; n])),
                None if n <= MAX_FOLDED => Some(Values::Float(vec![0.0; n])),
                _ => None,
            };
            one(Ok(Fact::with_values(shape, elem, values)))
        }
        "Range" => {
            let v = |i| cx.values(i).map(|v| v.floats().first().copied());
            let (Some(start), Some(limit), Some(delta)) = (v(0)?, v(1)?, v(2)?) else {
                return Err("Range arguments must be scalars".into());
            };
            if delta == 0.0 {
                return Err("Range with delta 0".into());
            }
            let n = ((limit - start) / delta).ceil().max(0.0) as usize;
            let values = (n <= MAX_FOLDED).then(|| {
                let v = (0..n).map(|i| start + i as f64 * delta);
                match cx.values(0) {
                    Ok(Values::Int(_)) => Values::Int(v.map(|x| x as i64).collect()),
                    _ => Values::Float(v.collect()),
                }
            });
            one(Ok(Fact::with_values(vec![n], cx.elem(0), values)))
        }
        "Expand" => {
            let shape: Vec<usize> = cx.ints(1)?.iter().map(|&d| d.max(0) as usize).collect();
            one(Ok(Fact::new(
                broadcast(&[cx.shape(0)?, &shape])?,
                cx.elem(0),
            )))
        }
        "Tile" => {
            let (x, reps) = (cx.shape(0)?, cx.ints(1)?);
            if reps.len() != x.len() {
                return Err(format!("Tile of {x:?} by {reps:?}"));
            }
            one(Ok(Fact::new(
                x.iter()
                    .zip(&reps)
                    .map(|(&d, &r)| d * r.max(0) as usize)
                    .collect(),
                cx.elem(0),
            )))
        }
        "Pad" => {
            let x = cx.shape(0)?;
            let pads = cx.ints_arg(1, "pads")?.ok_or("no pads")?;
            let axes: Vec<usize> = match cx.name(3) {
                Some(_) => cx
                    .ints(3)?
                    .iter()
                    .map(|&a| axis(a, x.len()))
                    .collect::<Inferred<_>>()?,
                None => (0..x.len()).collect(),
            };
            if pads.len() != 2 * axes.len() {
                return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
            }
            let mut out: Vec<i64> = x.iter().map(|&d| d as i64).collect();
            for (i, &a) in axes.iter().enumerate() {
                out[a] += pads[i] + pads[i + axes.len()];
            }
            let out = out.into_iter().map(|d| d.max(0) as usize).collect();
            one(Ok(Fact::new(out, cx.elem(0))))
        }
        "Resize" | "Upsample" => {
            let x = cx.shape(0)?;
            let (scales_at, sizes_at) = if op == "Upsample" {
                (1, usize::MAX)
            } else {
                (2, 3)
            };
            if cx.name(sizes_at).is_some() {
                let sizes: Vec<usize> = cx
                    .ints(sizes_at)?
                    .iter()
                    .map(|&d| d.max(0) as usize)
                    .collect();
                if sizes.len() != x.len() {
                    return Err(format!("Resize of {x:?} to sizes {sizes:?}"));
                }
                return one(Ok(Fact::new(sizes, cx.elem(0))));
            }
            let scales = cx.values(scales_at)?.floats();
            if scales.len() != x.len() {
                return Err(format!("Resize of {x:?} by scales {scales:?}"));
            }
            let out = x
                .iter()
                .zip(&scales)
                .map(|(&d, &s)| (d as f64 * s).floor() as usize)
                .collect();
            one(Ok(Fact::new(out, cx.elem(0))))
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => {
            let x = cx.shape(0)?;
            let axes = cx.ints_arg(1, "axes")?.unwrap_or_default();
            let keep = node.attr_i("keepdims").unwrap_or(1) != 0;
            let noop = node.attr_i("noop_with_empty_axes").unwrap_or(0) != 0;
            one(Ok(Fact::new(
                reduce_shape(x, &axes, keep, noop)?,
                cx.elem(0),
            )))
        }
        "ArgMax" | "ArgMin" => {
            let x = cx.shape(0)?;
            let keep = node.attr_i("keepdims").unwrap_or(1) != 0;
            let out = reduce_shape(x, &[node.attr_i("axis").unwrap_or(0)], keep, false)?;
            one(Ok(Fact::new(out, Some(DataType::Int64))))
        }
        "TopK" => {
            let x = cx.shape(0)?;
            let k = match cx.name(1) {
                Some(_) => *cx.ints(1)?.first().ok_or("empty k")?,
                None => node.attr_i("k").ok_or("no k")?,
            };
            let a = axis(node.attr_i("axis").unwrap_or(-1), x.len())?;
            let mut out = x.to_vec();
            out[a] = k.max(0) as usize;
            Ok(vec![
                Fact::new(out.clone(), cx.elem(0)),
                Fact::new(out, Some(DataType::Int64)),
            ])
        }
        "DepthToSpace" | "SpaceToDepth" => {
            let x = cx.shape(0)?;
            let b = node.attr_i("blocksize").ok_or("no blocksize")?.max(1) as usize;
            if x.len() != 4 {
                return Err(format!("{op} of {x:?}"));
            }
            let out = if op == "DepthToSpace" {
                vec![x[0], x[1] / (b * b), x[2] * b, x[3] * b]
            } else {
                vec![x[0], x[1] * b * b, x[2] / b, x[3] / b]
            };
            one(Ok(Fact::new(out, cx.elem(0))))
        }
        "QuantizeLinear" => {
            let elem = cx.elem(2).or_else(|| {
                node.attr_i("output_dtype")
                    .and_then(|c| DataType::try_from(c as i32).ok())
            });
            one(Ok(Fact::new(
                cx.shape(0)?.to_vec(),
                elem.or(Some(DataType::Uint8)),
            )))
        }
        "DequantizeLinear" => one(Ok(Fact::new(cx.shape(0)?.to_vec(), cx.elem(1)))),
        "DynamicQuantizeLinear" => Ok(vec![
            Fact::new(cx.shape(0)?.to_vec(), Some(DataType::Uint8)),
            Fact::new(vec![], Some(DataType::Float)),
            Fact::new(vec![], Some(DataType::Uint8)),
        ]),
        "LSTM" | "GRU" | "RNN" => recurrent(cx),
        "If" | "Loop" | "Scan" => Err("the shapes of control-flow outputs are not inferred".into()),
        "NonZero" | "NonMaxSuppression" | "Unique" | "Compress" => {
            Err("the output shape depends on the data".into())
        }
        _ => Err(format!("shape inference for {op} is not implemented")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::GraphBuilder;
    use crate::onnx::AttributeProto as A;
    use chipbench_core::DType;

    fn bound(name: &str, shape: &[usize]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype: DType::F32,
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn sizes_convolutions_and_pools() {
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Float, &["N", "3", "H", "W"]);
        g.weight("w", &[8, 3, 3, 3], &[0.1; 216]);
        g.weight("dw", &[8, 1, 3, 3], &[0.1; 72]);
        g.node(
            "Conv",
            "c",
            &["x", "w"],
            vec![A::ints("strides", &[2, 2]), A::ints("pads", &[1, 1, 1, 1])],
        );
        g.node(
            "Conv",
            "d",
            &["c", "dw"],
            vec![
                A::int("group", 8),
                A::ints("dilations", &[2, 2]),
                A::string("auto_pad", "SAME_UPPER"),
            ],
        );
        g.node(
            "MaxPool",
            "p",
            &["d"],
            vec![
                A::ints("kernel_shape", &[3, 3]),
                A::ints("strides", &[2, 2]),
                A::int("ceil_mode", 1),
            ],
        );
        g.node(
            "AveragePool",
            "q",
            &["d"],
            vec![
                A::ints("kernel_shape", &[2, 2]),
                A::ints("strides", &[2, 2]),
                A::ints("pads", &[0, 0, 1, 1]),
            ],
        );
        g.node("GlobalAveragePool", "gap", &["p"], vec![]);
        g.node("Flatten", "f", &["gap"], vec![]);
        let model = g.into_model().unwrap();
        let inf = infer_shapes(&model, &[bound("x", &[2, 3, 224, 223])], None);
        assert!(inf.unresolved.is_empty(), "{:?}", inf.unresolved);
        assert_eq!(inf.shapes["c"], vec![2, 8, 112, 112]);
        assert_eq!(inf.shapes["d"], vec![2, 8, 112, 112]);
        // ceil((112 - 3) / 2) + 1 = 56; the last window starts at 110 < 112, so it stays.
        assert_eq!(inf.shapes["p"], vec![2, 8, 56, 56]);
        assert_eq!(inf.shapes["q"], vec![2, 8, 56, 56]);
        assert_eq!(inf.shapes["f"], vec![2, 8]);
    }

    #[test]
    fn ceil_mode_drops_a_window_that_starts_in_the_padding() {
        let node = NodeProto {
            attribute: vec![
                A::ints("strides", &[2]),
                A::ints("pads", &[1, 1]),
                A::int("ceil_mode", 1),
            ],
            ..Default::default()
        };
        // in 5, pads 1 + 1, kernel 2, stride 2: ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the
        // last would start at padded position 6, in the right padding, so it is dropped.
        assert_eq!(window_out(&node, &[5], &[2]).unwrap(), vec![3]);
        // in 6, no pads, kernel 3, stride 2: ceil(3 / 2) + 1 = 3 (floor mode gives 2).
        let node = NodeProto {
            attribute: vec![A::ints("strides", &[2]), A::int("ceil_mode", 1)],
            ..Default::default()
        };
        assert_eq!(window_out(&node, &[6], &[3]).unwrap(), vec![3]);
        let floor = NodeProto {
            attribute: vec![A::ints("strides", &[2])],
            ..Default::default()
        };
        assert_eq!(window_out(&floor, &[6], &[3]).unwrap(), vec![2]);
    }

    #[test]
    fn folds_the_shape_arithmetic_of_exported_transformers() {
        // Shape → Gather(0) → Unsqueeze → Concat with constants → Reshape, as torch exports it.
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Float, &["batch", "seq", "128"]);
        g.node("Shape", "s", &["x"], vec![]);
        g.initializer(TensorProto::from_i64("zero", &[], &[0]));
        g.node("Gather", "b", &["s", "zero"], vec![A::int("axis", 0)]);
        g.ints("axes0", &[0]);
        g.node("Unsqueeze", "b1", &["b", "axes0"], vec![]);
        g.ints("rest", &[-1, 2, 64]);
        g.node("Concat", "target", &["b1", "rest"], vec![A::int("axis", 0)]);
        g.node("Reshape", "r", &["x", "target"], vec![]);
        g.node(
            "Transpose",
            "t",
            &["r"],
            vec![A::ints("perm", &[0, 2, 1, 3])],
        );
        g.ints("zero_copy", &[0, 0, 128]);
        g.node(
            "Transpose",
            "tb",
            &["t"],
            vec![A::ints("perm", &[0, 2, 1, 3])],
        );
        g.node("Reshape", "back", &["tb", "zero_copy"], vec![]);
        g.ints("starts", &[1]);
        g.ints("ends", &[i64::MAX]);
        g.node("Slice", "tail", &["s", "starts", "ends"], vec![]);
        g.node(
            "Cast",
            "tail_f",
            &["tail"],
            vec![A::int("to", DataType::Float as i64)],
        );
        g.node("Mul", "scaled", &["tail", "tail"], vec![]);
        g.node("ConstantOfShape", "zeros", &["tail"], vec![]);
        let model = g.into_model().unwrap();
        let inf = infer_shapes(&model, &[bound("x", &[3, 10, 128])], None);
        assert!(inf.unresolved.is_empty(), "{:?}", inf.unresolved);
        assert_eq!(inf.shapes["r"], vec![3, 10, 2, 64]);
        assert_eq!(inf.shapes["t"], vec![3, 2, 10, 64]);
        assert_eq!(inf.shapes["back"], vec![3, 10, 128]);
        assert_eq!(inf.shapes["tail"], vec![2]);
        assert_eq!(inf.shapes["zeros"], vec![10, 128]);
        assert_eq!(inf.elem_types["tail_f"], DataType::Float);
        assert_eq!(inf.elem_types["s"], DataType::Int64);
    }

    #[test]
    fn follows_opset_13_input_forms_and_older_attribute_forms() {
        let build = |opset13: bool| {
            let mut g = GraphBuilder::new("g");
            g.input("x", DataType::Float, &["4", "6", "1"]);
            if opset13 {
                g.ints("ax", &[2]);
                g.ints("sp", &[2, 4]);
                g.node("Squeeze", "sq", &["x", "ax"], vec![]);
                g.node_with_outputs(
                    "Split",
                    "split",
                    &["sq", "sp"],
                    &["a", "b"],
                    vec![A::int("axis", 1)],
                );
                g.ints("ax0", &[0, -1]);
                g.node("Unsqueeze", "u", &["a", "ax0"], vec![]);
                g.ints("ax1", &[1]);
                g.node("ReduceSum", "r", &["b", "ax1"], vec![A::int("keepdims", 0)]);
            } else {
                g.node("Squeeze", "sq", &["x"], vec![A::ints("axes", &[2])]);
                g.node_with_outputs(
                    "Split",
                    "split",
                    &["sq"],
                    &["a", "b"],
                    vec![A::int("axis", 1), A::ints("split", &[2, 4])],
                );
                g.node("Unsqueeze", "u", &["a"], vec![A::ints("axes", &[0, -1])]);
                g.node(
                    "ReduceSum",
                    "r",
                    &["b"],
                    vec![A::ints("axes", &[1]), A::int("keepdims", 0)],
                );
            }
            let mut model = g.into_model().unwrap();
            model.opset_import[0].version = Some(if opset13 { 13 } else { 11 });
            infer_shapes(&model, &[], None)
        };
        for inf in [build(true), build(false)] {
            assert!(inf.unresolved.is_empty(), "{:?}", inf.unresolved);
            assert_eq!(inf.shapes["sq"], vec![4, 6]);
            assert_eq!(inf.shapes["a"], vec![4, 2]);
            assert_eq!(inf.shapes["b"], vec![4, 4]);
            assert_eq!(inf.shapes["u"], vec![1, 4, 2, 1]);
        }
        assert_eq!(build(true).shapes["r"], vec![4]);
        assert_eq!(build(false).shapes["r"], vec![4]);
    }

    #[test]
    fn broadcasts_and_multiplies_batched_matrices() {
        assert_eq!(broadcast(&[&[2, 1, 4], &[3, 1]]).unwrap(), vec![2, 3, 4]);
        assert!(broadcast(&[&[2, 3], &[4]]).is_err());
        let d = matmul_dims(&[2, 1, 5, 8], &[3, 8, 7]).unwrap();
        assert_eq!(
            (d.out, d.batch, d.m, d.k, d.n),
            (vec![2, 3, 5, 7], 6, 5, 8, 7)
        );
        let d = matmul_dims(&[8], &[4, 8, 3]).unwrap();
        assert_eq!(d.out, vec![4, 3]);
        assert_eq!(matmul_dims(&[5, 8], &[8]).unwrap().out, vec![5]);
        assert!(matmul_dims(&[5, 8], &[7, 2]).is_err());
    }

    #[test]
    fn slices_with_the_onnx_clamping_rules() {
        assert_eq!(slice_range(10, 1, i64::MAX, 1).unwrap(), (1, 9));
        assert_eq!(slice_range(10, -3, -1, 1).unwrap(), (7, 2));
        assert_eq!(slice_range(10, i64::MAX, i64::MIN, -1).unwrap(), (9, 10));
        assert_eq!(slice_range(10, 0, 10, 3).unwrap(), (0, 4));
        assert_eq!(slice_range(10, 5, 2, 1).unwrap(), (5, 0));
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

    #[test]
    fn sizes_recurrent_layers_and_transposed_convolutions() {
        let mut g = GraphBuilder::new("g");
        g.input("seq", DataType::Float, &["5", "2", "8"]);
        g.weight("W", &[2, 16, 8], &[0.0; 256]);
        g.weight("R", &[2, 16, 4], &[0.0; 128]);
        g.node_with_outputs(
            "LSTM",
            "lstm",
            &["seq", "W", "R"],
            &["Y", "Y_h", "Y_c"],
            vec![
                A::int("hidden_size", 4),
                A::string("direction", "bidirectional"),
            ],
        );
        g.input("img", DataType::Float, &["1", "4", "7", "7"]);
        g.weight("wt", &[4, 2, 3, 3], &[0.0; 72]);
        g.node(
            "ConvTranspose",
            "up",
            &["img", "wt"],
            vec![
                A::ints("strides", &[2, 2]),
                A::ints("pads", &[1, 1, 1, 1]),
                A::ints("output_padding", &[1, 1]),
            ],
        );
        let model = g.into_model().unwrap();
        let inf = infer_shapes(&model, &[], None);
        assert!(inf.unresolved.is_empty(), "{:?}", inf.unresolved);
        assert_eq!(inf.shapes["Y"], vec![5, 2, 2, 4]);
        assert_eq!(inf.shapes["Y_c"], vec![2, 2, 4]);
        // 2 * (7 - 1) + 1 + 3 - 2 = 14
        assert_eq!(inf.shapes["up"], vec![1, 2, 14, 14]);
    }
}
