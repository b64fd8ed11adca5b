//! From an ONNX file to a [`Program`]: tract parses the model, binds the input shapes, types and
//! declutters it (batch norms become per-channel multiply-adds, shapes become concrete), and each
//! remaining node is lowered to views or kernel steps. Every node without a lowering is collected,
//! so that a model fails to load with one message naming all of them.

mod quantized;
mod recurrent;
mod resize;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chipbench_core::{Coverage, DType, ModelSource, Refusal as RefusedOperator, TensorInfo};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::array::{
    CumSum, Gather as TractGather, GatherElements, MultiBroadcastTo, Pad, PadMode as TractPadMode,
    ScatterNd, ScatterReduction, Slice, Tile, Topk, TypedConcat,
};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::change_axes::{AxisOp, InOut};
use tract_onnx::tract_core::ops::cnn::{
    Conv as TractConv, Deconv, KernelFormat, MaxPool, PoolSpec, SumPool,
};
use tract_onnx::tract_core::ops::downsample::Downsample;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::logic::{IfThenElse, Iff};
use tract_onnx::tract_core::ops::lstm_cell::LstmEpilogue;
use tract_onnx::tract_core::ops::math::PowConst;
use tract_onnx::tract_core::ops::nn::resize::{
    AxisPlan, CoordTransformer, Interpolator, NearestUpsample, Resize as CoreResize, cubic_weights,
    linear_weights, plan_axis, window_size,
};
use tract_onnx::tract_core::ops::nn::{
    DataFormat, GeluApproximate, LeakyRelu, Reduce, Reducer as TractReducer, RmsNorm, Softmax,
    SoftmaxKind,
};
use tract_onnx::tract_core::ops::quant::{
    DequantizeLinearF32, LookupTable, QuantizeLinearI8, QuantizeLinearU8,
};
use tract_onnx::tract_core::ops::scan::{InputMapping, Scan};
use tract_onnx::tract_core::ops::source::TypedSource;
use tract_onnx::tract_core::ops::unimpl::UnimplementedOp;
use tract_onnx_opl::non_max_suppression::NonMaxSuppression;
use tract_onnx_opl::resize::{
    AspectRatio, CoordTransform, Nearest as OnnxNearest, Resize as OnnxResize,
};

use crate::error::WgpuError;
use crate::graph::{
    BinaryOp, Conv, ElemType, Expr, Gemm, Kernel, Literal, Origin, PadMode, Pool, PoolKind,
    Program, Reducer, RowOp, Rows, Scalar, Step, UnaryOp, ValueId, View, contiguous_strides,
};

/// A model lowered for the device, with what its inputs and outputs look like on the host.
pub(crate) struct Imported {
    pub program: Program,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
}

/// Parses, types and lowers `source`. `f16_storage` says whether the device can store f16
/// (SHADER_F16); without it f16 tensors live as f32 on the device.
pub(crate) fn import(source: &ModelSource, f16_storage: bool) -> Result<Imported, WgpuError> {
    match lowering(source, f16_storage)? {
        Lowering::Done { imported, .. } => Ok(imported),
        Lowering::Refused { operators, .. } => Err(WgpuError::Unsupported {
            path: source.path.clone(),
            ops: operators.iter().map(summary).collect(),
        }),
    }
}

/// What the backend would refuse of `source`: the model lowered as for a device (one that
/// stores f16), every refused operator with every node that has it.
pub(crate) fn coverage(source: &ModelSource) -> Result<Coverage, WgpuError> {
    Ok(match lowering(source, true)? {
        Lowering::Done { nodes, .. } => Coverage::Supported { nodes: Some(nodes) },
        Lowering::Refused { nodes, operators } => Coverage::Refused {
            nodes: Some(nodes),
            operators,
        },
    })
}

/// "Op in node 'a'" or "Op in 3 nodes, e.g. 'a'", for the one-line error of a refused load.
fn summary(r: &RefusedOperator) -> String {
    match r.nodes.as_slice() {
        [one] => format!("{} in node '{one}'", r.operator),
        [first, ..] => format!("{} in {} nodes, e.g. '{first}'", r.operator, r.nodes.len()),
        [] => r.operator.clone(),
    }
}

/// A model lowered, or every operator that kept it from being lowered. `nodes`: the operator
/// nodes of the graph lowering looked at (inputs and constants aside).
enum Lowering {
    Done {
        imported: Imported,
        nodes: usize,
    },
    Refused {
        nodes: usize,
        operators: Vec<RefusedOperator>,
    },
}

fn lowering(source: &ModelSource, f16_storage: bool) -> Result<Lowering, WgpuError> {
    let path = &source.path;
    let fail = |reason: String| WgpuError::Model {
        path: path.clone(),
        reason,
    };
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    let mut model = tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .with_ignore_output_types(true)
        .with_ignore_value_info(true)
        .model_for_path(path)
        .map_err(|e| fail(root_cause(&e)))?;
    let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in model
        .nodes()
        .iter()
        .filter(|n| n.op_as::<UnimplementedOp>().is_some())
    {
        let op = n.op.name();
        let op = op
            .trim_start_matches("Unimplemented(")
            .trim_end_matches(')')
            .to_string();
        unknown
            .entry(format!("{op} (unknown to tract's ONNX reader)"))
            .or_default()
            .push(n.name.clone());
    }
    if !unknown.is_empty() {
        return Ok(Lowering::Refused {
            nodes: model.nodes().len(),
            operators: refusals(unknown),
        });
    }
    let names: Vec<String> = model
        .input_outlets()
        .map_err(|e| fail(e.to_string()))?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    for info in &source.inputs {
        let index = names
            .iter()
            .position(|n| n == &info.name)
            .ok_or_else(|| WgpuError::Input {
                name: info.name.clone(),
                reason: format!("the model has no such input (it has {names:?})"),
            })?;
        let fact = InferenceFact::dt_shape(datum_type(info.dtype), info.shape.clone());
        model
            .set_input_fact(index, fact)
            .map_err(|e| fail(e.to_string()))?;
    }
    if let Some(missing) = names
        .iter()
        .find(|n| !source.inputs.iter().any(|i| &i.name == *n))
    {
        return Err(WgpuError::Input {
            name: missing.clone(),
            reason: "the model needs this input but no shape was bound".into(),
        });
    }
    // tract 0.23 names every typed If node "If" rather than after the ONNX node; with one If in
    // the model (tract refuses a model with two), its own name is known.
    let ifs: Vec<String> = model
        .nodes()
        .iter()
        .filter(|n| n.op.name() == "If")
        .map(|n| n.name.clone())
        .collect();
    let typed = model
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .map_err(|e| fail(root_cause(&e)))?;
    let if_name = match ifs.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    };
    lower(&typed, source, f16_storage, if_name).map_err(fail)
}

fn refusals(refused: BTreeMap<String, Vec<String>>) -> Vec<RefusedOperator> {
    refused
        .into_iter()
        .map(|(operator, nodes)| RefusedOperator { operator, nodes })
        .collect()
}

/// Why one node cannot be lowered (empty: the operator as a whole is unknown here).
type Refusal = String;

struct Lowerer {
    program: Program,
    views: HashMap<OutletId, View>,
    /// Operator (with the reason, if any) -> the nodes that have it.
    refused: BTreeMap<String, Vec<String>>,
    f16_storage: bool,
    node: String,
}

fn lower(
    model: &TypedModel,
    source: &ModelSource,
    f16_storage: bool,
    if_name: Option<&str>,
) -> Result<Lowering, String> {
    let mut l = Lowerer {
        program: Program {
            values: Vec::new(),
            steps: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            f16_widened: false,
        },
        views: HashMap::new(),
        refused: BTreeMap::new(),
        f16_storage,
        node: String::new(),
    };
    let input_outlets = model.input_outlets().map_err(|e| e.to_string())?.to_vec();
    let order = model.eval_order().map_err(|e| e.to_string())?;
    let mut nodes = 0;
    // Inputs first, in order, including any the outputs do not depend on.
    let sources = input_outlets.iter().map(|o| o.node);
    for id in sources.chain(
        order
            .into_iter()
            .filter(|id| !input_outlets.iter().any(|o| o.node == *id)),
    ) {
        let node = model.node(id);
        l.node = node.name.clone();
        if node.inputs.iter().any(|i| !l.views.contains_key(i)) {
            continue; // downstream of a refused node: only the refused one is reported
        }
        let outcome = if node.op_as::<TypedSource>().is_some() {
            l.source(node)
        } else if node.outputs.len() == 1 && node.outputs[0].fact.konst.is_some() {
            l.constant(node)
        } else {
            nodes += 1;
            l.operator(node)
        };
        if let Err(reason) = outcome {
            let op = node.op.name().to_string();
            let key = if reason.is_empty() {
                op
            } else {
                format!("{op} ({reason})")
            };
            let name = match if_name {
                Some(name) if node.op_is::<IfThenElse>() => name.to_string(),
                _ => node.name.clone(),
            };
            l.refused.entry(key).or_default().push(name);
            l.stand_in(node);
        }
    }
    if !l.refused.is_empty() {
        return Ok(Lowering::Refused {
            nodes,
            operators: refusals(std::mem::take(&mut l.refused)),
        });
    }

    let mut outputs = Vec::new();
    let output_outlets = model.output_outlets().map_err(|e| e.to_string())?.to_vec();
    for (i, outlet) in output_outlets.iter().enumerate() {
        let fact = model.outlet_fact(*outlet).map_err(|e| e.to_string())?;
        let name = model
            .outlet_label(*outlet)
            .map(str::to_string)
            .unwrap_or_else(|| model.node(outlet.node).name.clone());
        let dtype = host_dtype(fact.datum_type)
            .ok_or_else(|| format!("output '{name}' has type {:?}", fact.datum_type))?;
        let view = l.views[outlet].clone();
        let value = &l.program.values[view.value];
        let stored_whole = view.is_plain_of(value)
            && matches!(value.origin, Origin::Computed)
            && !l.program.outputs.contains(&view.value);
        let id = if stored_whole {
            view.value
        } else {
            l.node = format!("output {i}");
            let ty = value.ty;
            l.copy(&view, ty)
        };
        l.program.outputs.push(id);
        outputs.push(TensorInfo {
            name,
            dtype,
            shape: view.shape.clone(),
        });
    }
    Ok(Lowering::Done {
        imported: Imported {
            program: l.program,
            inputs: source.inputs.clone(),
            outputs,
        },
        nodes,
    })
}

impl Lowerer {
    fn elem_type(&mut self, dt: DatumType) -> Result<ElemType, Refusal> {
        Ok(match dt {
            DatumType::F32 => ElemType::F32,
            DatumType::F16 if self.f16_storage => ElemType::F16,
            DatumType::F16 => {
                self.program.f16_widened = true;
                ElemType::F32
            }
            DatumType::I8
            | DatumType::U8
            | DatumType::I16
            | DatumType::U16
            | DatumType::I32
            | DatumType::U32
            | DatumType::I64
            | DatumType::U64
            | DatumType::TDim => ElemType::I32,
            DatumType::Bool => ElemType::Bool,
            other => return Err(format!("element type {other:?}")),
        })
    }

    fn shape_of(fact: &TypedFact) -> Result<Vec<usize>, Refusal> {
        fact.shape
            .as_concrete()
            .map(<[usize]>::to_vec)
            .ok_or_else(|| format!("symbolic shape {:?}", fact.shape))
    }

    /// Placeholder values for the outputs of a refused node, so that lowering goes on and
    /// reports the operators after it too (the program is never run). Outputs of unknown shape
    /// stay unbound, and the nodes that read them are not examined.
    fn stand_in(&mut self, node: &TypedNode) {
        for (slot, output) in node.outputs.iter().enumerate() {
            let Ok(shape) = Self::shape_of(&output.fact) else {
                continue;
            };
            let ty = self
                .elem_type(output.fact.datum_type)
                .unwrap_or(ElemType::F32);
            let value = self.program.add_value(shape.clone(), ty, Origin::Computed);
            self.views
                .insert(OutletId::new(node.id, slot), View::whole(value, &shape));
        }
    }

    fn view(&self, outlet: OutletId) -> View {
        self.views[&outlet].clone()
    }

    /// A new computed value shaped like the node's output `slot`.
    fn output_value(&mut self, node: &TypedNode, slot: usize) -> Result<ValueId, Refusal> {
        let fact = &node.outputs[slot].fact;
        let shape = Self::shape_of(fact)?;
        let ty = self.elem_type(fact.datum_type)?;
        Ok(self.program.add_value(shape, ty, Origin::Computed))
    }

    fn push(&mut self, step: Step) {
        self.program.steps.push(step);
    }

    fn step(
        &self,
        kernel: Kernel,
        inputs: Vec<View>,
        operands: Vec<View>,
        epilogue: Expr,
        output: ValueId,
    ) -> Step {
        Step {
            nodes: vec![self.node.clone()],
            kernel,
            inputs,
            operands,
            epilogue,
            output,
        }
    }

    fn bind(&mut self, node: &TypedNode, value: ValueId) {
        let shape = self.program.values[value].shape.clone();
        self.views
            .insert(OutletId::new(node.id, 0), View::whole(value, &shape));
    }

    /// A contiguous copy of `view` in its own order.
    fn copy(&mut self, view: &View, ty: ElemType) -> ValueId {
        let out = self
            .program
            .add_value(view.shape.clone(), ty, Origin::Computed);
        let step = self.step(Kernel::Map, vec![], vec![view.clone()], Expr::Load(0), out);
        self.push(step);
        out
    }

    /// The next model input (sources are lowered first, in input order).
    fn source(&mut self, node: &TypedNode) -> Result<(), Refusal> {
        let fact = &node.outputs[0].fact;
        let shape = Self::shape_of(fact)?;
        let ty = self.elem_type(fact.datum_type)?;
        let id = self.program.add_value(shape, ty, Origin::Input);
        self.program.inputs.push(id);
        self.bind(node, id);
        Ok(())
    }

    fn constant(&mut self, node: &TypedNode) -> Result<(), Refusal> {
        let fact = &node.outputs[0].fact;
        let tensor = fact.konst.clone().ok_or("no value")?;
        let tensor = if tensor.datum_type() == DatumType::TDim {
            Arc::new(
                tensor
                    .cast_to::<i64>()
                    .map_err(|e| e.to_string())?
                    .into_owned(),
            )
        } else {
            tensor
        };
        let ty = self.elem_type(tensor.datum_type())?;
        if ty == ElemType::I32 {
            let values = tensor_values::<i64>(&tensor)?;
            if values.iter().any(|&v| i32::try_from(v).is_err()) {
                return Err("an integer constant beyond the 32-bit range".into());
            }
        }
        let id = self
            .program
            .add_value(tensor.shape().to_vec(), ty, Origin::Const(tensor));
        self.bind(node, id);
        Ok(())
    }

    /// A scalar literal when the view reads a constant whose elements are all equal.
    fn literal(&self, view: &View, as_type: Scalar) -> Option<Literal> {
        let Origin::Const(t) = &self.program.values[view.value].origin else {
            return None;
        };
        let values = tensor_values::<f64>(t).ok()?;
        let first = *values.first()?;
        if values.iter().any(|&v| v.to_bits() != first.to_bits()) {
            return None;
        }
        Some(match as_type {
            Scalar::F32 => Literal::F32(first as f32),
            Scalar::I32 => Literal::I32(first as i32),
            Scalar::Bool => Literal::Bool(first != 0.0),
        })
    }

    /// An expression reading `view` broadcast to `shape`: a literal for uniform constants, else a
    /// new operand.
    fn operand(
        &self,
        view: &View,
        shape: &[usize],
        operands: &mut Vec<View>,
    ) -> Result<Expr, Refusal> {
        let ty = self.program.values[view.value].ty.compute();
        if let Some(lit) = self.literal(view, ty) {
            return Ok(Expr::Lit(lit));
        }
        let b = view
            .broadcast_to(shape)
            .ok_or_else(|| format!("cannot broadcast {:?} to {:?}", view.shape, shape))?;
        operands.push(b);
        Ok(Expr::Load(operands.len() - 1))
    }

    fn operator(&mut self, node: &TypedNode) -> Result<(), Refusal> {
        let op = &node.op;
        if let Some(op) = op.downcast_ref::<EinSum>() {
            self.einsum(node, op)
        } else if let Some(op) = op.downcast_ref::<TractConv>() {
            self.conv(node, op)
        } else if let Some(op) = op.downcast_ref::<Deconv>() {
            self.deconv(node, op)
        } else if let Some(op) = op.downcast_ref::<MaxPool>() {
            if op.with_index_outputs.is_some() {
                return Err("index output".into());
            }
            self.pool(node, &op.pool_spec, PoolKind::Max)
        } else if let Some(op) = op.downcast_ref::<SumPool>() {
            let kind = PoolKind::Sum {
                normalize: op.normalize,
                count_include_pad: op.count_include_pad,
            };
            self.pool(node, &op.pool_spec, kind)
        } else if let Some(op) = op.downcast_ref::<DequantizeLinearF32>() {
            let (scale, zero_point) = (op.scale, op.zero_point as f32);
            self.map(node, |operands, l| {
                let shape = Self::shape_of(&node.outputs[0].fact)?;
                let x = l.operand(&l.view(node.inputs[0]), &shape, operands)?;
                let x = Expr::Cast(Scalar::F32, Box::new(x));
                let centred = binary(BinaryOp::Sub, x, Expr::Lit(Literal::F32(zero_point)));
                Ok(binary(
                    BinaryOp::Mul,
                    centred,
                    Expr::Lit(Literal::F32(scale)),
                ))
            })
        } else if let Some(q) = op
            .downcast_ref::<ElementWiseOp>()
            .and_then(|op| op.0.downcast_ref::<QuantizeLinearU8>())
        {
            self.quantize(node, q.scale, q.zero_point as f32, (0.0, 255.0))
        } else if let Some(q) = op
            .downcast_ref::<ElementWiseOp>()
            .and_then(|op| op.0.downcast_ref::<QuantizeLinearI8>())
        {
            self.quantize(node, q.scale, q.zero_point as f32, (-128.0, 127.0))
        } else if let Some(lut) = op
            .downcast_ref::<ElementWiseOp>()
            .and_then(|op| op.0.downcast_ref::<LookupTable>())
        {
            self.lookup(node, lut.table.table())
        } else if let Some(op) = op.downcast_ref::<ElementWiseOp>() {
            if op.1.is_some() {
                return Err("quantized".into());
            }
            let unary = unary_op(op)?;
            self.map(node, |operands, l| {
                let x = l.operand(
                    &l.view(node.inputs[0]),
                    &Self::shape_of(&node.outputs[0].fact)?,
                    operands,
                )?;
                Ok(Expr::Unary(unary, Box::new(x)))
            })
        } else if let Some(op) = op.downcast_ref::<TypedBinOp>() {
            if op.1.is_some() {
                return Err("quantized".into());
            }
            let (binary, swap) = binary_op(op.0.name())?;
            self.map(node, |operands, l| {
                let shape = Self::shape_of(&node.outputs[0].fact)?;
                let a = l.operand(&l.view(node.inputs[0]), &shape, operands)?;
                let b = l.operand(&l.view(node.inputs[1]), &shape, operands)?;
                let (a, b) = if swap { (b, a) } else { (a, b) };
                Ok(Expr::Binary(binary, Box::new(a), Box::new(b)))
            })
        } else if op.downcast_ref::<Iff>().is_some() {
            self.map(node, |operands, l| {
                let shape = Self::shape_of(&node.outputs[0].fact)?;
                let c = l.operand(&l.view(node.inputs[0]), &shape, operands)?;
                let a = l.operand(&l.view(node.inputs[1]), &shape, operands)?;
                let b = l.operand(&l.view(node.inputs[2]), &shape, operands)?;
                Ok(Expr::Select(Box::new(c), Box::new(a), Box::new(b)))
            })
        } else if let Some(op) = op.downcast_ref::<Cast>() {
            let to = self.elem_type(op.to)?.compute();
            self.map(node, |operands, l| {
                let shape = Self::shape_of(&node.outputs[0].fact)?;
                let x = l.operand(&l.view(node.inputs[0]), &shape, operands)?;
                Ok(Expr::Cast(to, Box::new(x)))
            })
        } else if let Some(op) = op.downcast_ref::<Reduce>() {
            self.reduce(node, op)
        } else if let Some(op) = op.downcast_ref::<Softmax>() {
            if op.quant_output_dt.is_some() {
                return Err("quantized".into());
            }
            let row = RowOp::Softmax {
                log: op.kind == SoftmaxKind::LogSoftmax,
            };
            self.rows(node, &op.axes, row)
        } else if let Some(op) = op.downcast_ref::<RmsNorm>() {
            let eps = op.eps.cast_to_scalar::<f32>().map_err(|e| e.to_string())?;
            self.rows(node, &[op.axis], RowOp::RmsNorm { eps })
        } else if let Some(op) = op.downcast_ref::<AxisOp>() {
            self.axis_op(node, op)
        } else if let Some(op) = op.downcast_ref::<Slice>() {
            let start = op.start.to_i64().map_err(|e| e.to_string())? as usize;
            let end = op.end.to_i64().map_err(|e| e.to_string())? as usize;
            let view = self.view(node.inputs[0]).slice(op.axis, start, end);
            self.views.insert(OutletId::new(node.id, 0), view);
            Ok(())
        } else if let Some(op) = op.downcast_ref::<Downsample>() {
            if op.stride < 0 {
                return self.reversed_downsample(node, op);
            }
            if op.stride == 0 {
                return Err("stride 0".into());
            }
            let view = self
                .view(node.inputs[0])
                .downsample(op.axis, op.stride as usize, op.modulo);
            self.views.insert(OutletId::new(node.id, 0), view);
            Ok(())
        } else if op.downcast_ref::<MultiBroadcastTo>().is_some() {
            let shape = Self::shape_of(&node.outputs[0].fact)?;
            let view = self
                .view(node.inputs[0])
                .broadcast_to(&shape)
                .ok_or("incompatible shapes")?;
            self.views.insert(OutletId::new(node.id, 0), view);
            Ok(())
        } else if let Some(op) = op.downcast_ref::<TypedConcat>() {
            let out = self.output_value(node, 0)?;
            let inputs = node.inputs.iter().map(|i| self.view(*i)).collect();
            let step = self.step(
                Kernel::Concat { axis: op.axis },
                inputs,
                vec![],
                Expr::Acc,
                out,
            );
            self.push(step);
            self.bind(node, out);
            Ok(())
        } else if let Some(op) = op.downcast_ref::<TractGather>() {
            if op.output_type.is_some() {
                return Err("quantized".into());
            }
            let out = self.output_value(node, 0)?;
            let inputs = vec![self.view(node.inputs[0]), self.view(node.inputs[1])];
            let step = self.step(
                Kernel::Gather { axis: op.axis },
                inputs,
                vec![],
                Expr::Acc,
                out,
            );
            self.push(step);
            self.bind(node, out);
            Ok(())
        } else if let Some(op) = op.downcast_ref::<Pad>() {
            let out = self.output_value(node, 0)?;
            let ty = self.program.values[out].ty.compute();
            let mode = match &op.mode {
                TractPadMode::Constant(value) => {
                    let v = value.cast_to_scalar::<f64>().map_err(|e| e.to_string())?;
                    PadMode::Constant(match ty {
                        Scalar::F32 => Literal::F32(v as f32),
                        Scalar::I32 => Literal::I32(v as i32),
                        Scalar::Bool => Literal::Bool(v != 0.0),
                    })
                }
                TractPadMode::Reflect => PadMode::Reflect,
                TractPadMode::Edge => PadMode::Edge,
            };
            let kernel = Kernel::Pad {
                pads: op.pads.clone(),
                mode,
            };
            let step = self.step(
                kernel,
                vec![self.view(node.inputs[0])],
                vec![],
                Expr::Acc,
                out,
            );
            self.push(step);
            self.bind(node, out);
            Ok(())
        } else if let Some(op) = op.downcast_ref::<NearestUpsample>() {
            self.nearest_upsample(node, &op.scales)
        } else if let Some(op) = op.downcast_ref::<CoreResize>() {
            let plans = self.core_resize_plans(node, op)?;
            self.resample(node, plans)
        } else if let Some(op) = op.downcast_ref::<OnnxResize>() {
            let plans = self.onnx_resize_plans(node, op)?;
            self.resample(node, plans)
        } else if let Some(op) = op.downcast_ref::<Tile>() {
            let times = op
                .multipliers
                .iter()
                .map(|m| m.to_i64().map(|v| v as usize).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            self.tile(node, &times)
        } else if let Some(op) = op.downcast_ref::<GatherElements>() {
            let kernel = Kernel::GatherElements { axis: op.axis };
            let inputs = vec![self.view(node.inputs[0]), self.view(node.inputs[1])];
            self.kernel_node(node, kernel, inputs)
        } else if let Some(op) = op.downcast_ref::<CumSum>() {
            if !self.program.values[self.view(node.inputs[0]).value]
                .ty
                .is_float()
                && node.outputs[0].fact.datum_type != DatumType::I32
                && node.outputs[0].fact.datum_type != DatumType::I64
            {
                return Err("element type".into());
            }
            let kernel = Kernel::CumSum {
                axis: op.axis,
                exclusive: op.exclusive,
                reverse: op.reverse,
            };
            self.kernel_node(node, kernel, vec![self.view(node.inputs[0])])
        } else if let Some(op) = op.downcast_ref::<LstmEpilogue>() {
            self.lstm_epilogue(node, op.hidden)
        } else if let Some(op) = op.downcast_ref::<Scan>() {
            self.scan(node, op)
        } else if op.downcast_ref::<NonMaxSuppression>().is_some() {
            // Its output has as many rows as boxes survive: a size only the data decides.
            Err("its output size depends on the data; run it on the CPU after the model".into())
        } else if let Some(op) = op.downcast_ref::<ScatterNd>() {
            if op.reduction != ScatterReduction::None {
                return Err(format!("reduction {:?}", op.reduction));
            }
            let inputs = node.inputs.iter().map(|&i| self.view(i)).collect();
            self.kernel_node(node, Kernel::ScatterNd, inputs)
        } else if let Some(op) = op.downcast_ref::<Topk>() {
            let input = self.view(node.inputs[0]);
            for (slot, indices) in [(0, false), (1, true)] {
                let out = self.output_value(node, slot)?;
                let kernel = Kernel::TopK {
                    axis: op.axis,
                    largest: op.largest,
                    indices,
                };
                let step = self.step(kernel, vec![input.clone()], vec![], Expr::Acc, out);
                self.push(step);
                let shape = self.program.values[out].shape.clone();
                self.views
                    .insert(OutletId::new(node.id, slot), View::whole(out, &shape));
            }
            Ok(())
        } else if op.downcast_ref::<IfThenElse>().is_some() {
            // tract resolves an If whose condition is known once the input shapes are bound; the
            // ones left choose a branch from the data, which a fixed program of kernels cannot.
            Err("its condition is known only at run time".into())
        } else if op.name() == "DynamicQuantizeLinearU8" {
            // tract-onnx keeps this operator's type private; its name and facts identify it.
            self.dynamic_quantize(node)
        } else if op.name() == "Identity" {
            let view = self.view(node.inputs[0]);
            self.views.insert(OutletId::new(node.id, 0), view);
            Ok(())
        } else {
            Err(String::new())
        }
    }

    /// An element-wise node: a `Map` step whose epilogue `build` writes.
    fn map(
        &mut self,
        node: &TypedNode,
        build: impl FnOnce(&mut Vec<View>, &Self) -> Result<Expr, Refusal>,
    ) -> Result<(), Refusal> {
        let mut operands = Vec::new();
        let expr = build(&mut operands, self)?;
        let out = self.output_value(node, 0)?;
        let step = self.step(Kernel::Map, vec![], operands, expr, out);
        self.push(step);
        self.bind(node, out);
        Ok(())
    }

    fn axis_op(&mut self, node: &TypedNode, op: &AxisOp) -> Result<(), Refusal> {
        let input = self.view(node.inputs[0]);
        let view = match op {
            AxisOp::Add(at) => input.insert_axis(*at),
            AxisOp::Rm(at) => input.remove_axis(*at),
            AxisOp::Move(from, to) => input.move_axis(*from, *to),
            AxisOp::Reshape(..) => {
                let shape = Self::shape_of(&node.outputs[0].fact)?;
                match input.reshape(&shape) {
                    Some(v) => v,
                    None => {
                        let ty = self.program.values[input.value].ty;
                        let copied = self.copy(&input, ty);
                        View::whole(copied, &shape)
                    }
                }
            }
        };
        self.views.insert(OutletId::new(node.id, 0), view);
        Ok(())
    }

    /// A Downsample of negative stride (a Slice with a negative step, `x[::-1]`): from the last
    /// element of the axis back to `modulo`, every `|stride|`-th, as ndarray slices it for tract.
    /// Strides of views are unsigned, so this is a gather by a constant index list.
    fn reversed_downsample(&mut self, node: &TypedNode, op: &Downsample) -> Result<(), Refusal> {
        let input = self.view(node.inputs[0]);
        let len = input.shape[op.axis];
        let step = op.stride.unsigned_abs();
        let picked: Vec<i32> = if op.modulo >= len {
            Vec::new()
        } else {
            (op.modulo..len)
                .rev()
                .step_by(step)
                .map(|i| i as i32)
                .collect()
        };
        let count = picked.len();
        let indices = self.program.add_value(
            vec![count],
            ElemType::I32,
            Origin::Const(Arc::new(tensor1(&picked))),
        );
        let inputs = vec![input, View::whole(indices, &[count])];
        self.kernel_node(node, Kernel::Gather { axis: op.axis }, inputs)
    }

    /// A node computed by one kernel from `inputs`, into a new value shaped like its output.
    fn kernel_node(
        &mut self,
        node: &TypedNode,
        kernel: Kernel,
        inputs: Vec<View>,
    ) -> Result<(), Refusal> {
        let out = self.output_value(node, 0)?;
        let step = self.step(kernel, inputs, vec![], Expr::Acc, out);
        self.push(step);
        self.bind(node, out);
        Ok(())
    }

    /// Tile is a copy through a view that repeats each axis `times` over (a new outer axis of
    /// stride 0 in front of it).
    fn tile(&mut self, node: &TypedNode, times: &[usize]) -> Result<(), Refusal> {
        let input = self.view(node.inputs[0]);
        let out_shape = Self::shape_of(&node.outputs[0].fact)?;
        let (mut shape, mut strides) = (Vec::new(), Vec::new());
        for (d, &t) in times.iter().enumerate() {
            if t > 1 {
                shape.push(t);
                strides.push(0);
            }
            shape.push(input.shape[d]);
            strides.push(input.strides[d]);
        }
        let repeated = View {
            value: input.value,
            offset: input.offset,
            shape,
            strides,
        };
        let ty = self.elem_type(node.outputs[0].fact.datum_type)?;
        let copied = self.copy(&repeated, ty);
        self.views
            .insert(OutletId::new(node.id, 0), View::whole(copied, &out_shape));
        Ok(())
    }

    /// The constant a node input reads, when it is one.
    fn constant_input(&self, node: &TypedNode, slot: usize) -> Option<Arc<Tensor>> {
        let view = self.views.get(node.inputs.get(slot)?)?;
        match &self.program.values[view.value].origin {
            Origin::Const(t) if view.is_plain_of(&self.program.values[view.value]) => {
                Some(t.clone())
            }
            _ => None,
        }
    }

    fn einsum(&mut self, node: &TypedNode, op: &EinSum) -> Result<(), Refusal> {
        if op.q_params.is_some() {
            return self.quantized_einsum(node, op);
        }
        if node.inputs.len() != 2 {
            return Err(format!("{} operands", node.inputs.len()));
        }
        let out_shape = Self::shape_of(&node.outputs[0].fact)?;
        let ty = self.elem_type(node.outputs[0].fact.datum_type)?;
        if !ty.is_float() {
            return Err("integer matrix product".into());
        }
        let (a, b) = (self.view(node.inputs[0]), self.view(node.inputs[1]));
        let out = self.matmul(op, &a, &b, &out_shape, ty)?;
        self.bind(node, out);
        Ok(())
    }

    /// `C = A·B` over the axes of an EinSum of two operands, into a new value of `out_shape`.
    fn matmul(
        &mut self,
        op: &EinSum,
        a: &View,
        b: &View,
        out_shape: &[usize],
        ty: ElemType,
    ) -> Result<ValueId, Refusal> {
        let (a, b) = (a.clone(), b.clone());
        let out_shape = out_shape.to_vec();
        let mut roles: [Vec<GemmAxis>; 4] = Default::default(); // batch, m, n, k
        for axis in op.axes.iter_all_axes() {
            let (pa, pb, po) = (&axis.inputs[0], &axis.inputs[1], &axis.outputs[0]);
            if pa.len() > 1 || pb.len() > 1 || po.len() > 1 {
                return Err("repeated axis".into());
            }
            let (pa, pb, po) = (
                pa.first().copied(),
                pb.first().copied(),
                po.first().copied(),
            );
            let size = [
                pa.map(|p| a.shape[p]),
                pb.map(|p| b.shape[p]),
                po.map(|p| out_shape[p]),
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(1);
            let g = GemmAxis {
                size,
                a: pa,
                b: pb,
                out: po,
            };
            let role = match (pa, pb, po) {
                (Some(_), Some(_), Some(_)) => 0,
                (Some(_), None, Some(_)) => 1,
                (None, Some(_), Some(_)) => 2,
                (Some(_), Some(_), None) => 3,
                _ if size == 1 => continue,
                _ => return Err("sums an axis of a single operand".into()),
            };
            roles[role].push(g);
        }
        let [mut batch, mut m, mut n, mut k] = roles;
        for group in [&mut batch, &mut m, &mut n] {
            group.sort_by_key(|g| g.out);
        }
        k.sort_by_key(|g| g.a);
        let size = |g: &[GemmAxis]| g.iter().map(|a| a.size).product::<usize>();
        let (nb, nm, nn, nk) = (size(&batch), size(&m), size(&n), size(&k));

        let a3 = self.gemm_operand(&a, [&batch, &m, &k], |g| g.a)?;
        let b3 = self.gemm_operand(&b, [&batch, &k, &n], |g| g.b)?;

        let out_view = View::whole(usize::MAX, &out_shape);
        let merged_out = [&batch, &m, &n].map(|g| merge(&out_view, g, |x| x.out));
        if let [Some(cb), Some(cm), Some(cn)] = merged_out {
            let out = self
                .program
                .add_value(out_shape.clone(), ty, Origin::Computed);
            let gemm = Gemm {
                batch: nb,
                m: nm,
                n: nn,
                k: nk,
                c_strides: [cb.1, cm.1, cn.1],
            };
            let step = self.step(Kernel::Gemm(gemm), vec![a3, b3], vec![], Expr::Acc, out);
            self.push(step);
            Ok(out)
        } else {
            // Output groups interleaved: compute [batch, m, n] and move the axes into place.
            let tmp = self
                .program
                .add_value(vec![nb, nm, nn], ty, Origin::Computed);
            let gemm = Gemm {
                batch: nb,
                m: nm,
                n: nn,
                k: nk,
                c_strides: [nm * nn, nn, 1],
            };
            let step = self.step(Kernel::Gemm(gemm), vec![a3, b3], vec![], Expr::Acc, tmp);
            self.push(step);
            let grouped: Vec<&GemmAxis> = batch.iter().chain(&m).chain(&n).collect();
            let split = View::whole(tmp, &grouped.iter().map(|g| g.size).collect::<Vec<_>>());
            let mut strides = vec![0; out_shape.len()];
            for (i, g) in grouped.iter().enumerate() {
                if let Some(p) = g.out {
                    strides[p] = split.strides[i];
                }
            }
            let view = View {
                value: tmp,
                offset: 0,
                shape: out_shape.clone(),
                strides,
            };
            Ok(self.copy(&view, ty))
        }
    }

    /// The operand as a `[x, y, z]` view over the three axis groups, copied into that order when
    /// its strides cannot express one of the groups as a single stride.
    fn gemm_operand(
        &mut self,
        view: &View,
        groups: [&[GemmAxis]; 3],
        pos: impl Fn(&GemmAxis) -> Option<usize> + Copy,
    ) -> Result<View, Refusal> {
        let merged = groups.map(|g| merge(view, g, pos));
        if let [Some(x), Some(y), Some(z)] = merged {
            return Ok(View {
                value: view.value,
                offset: view.offset,
                shape: vec![x.0, y.0, z.0],
                strides: vec![x.1, y.1, z.1],
            });
        }
        let order: Vec<usize> = groups
            .iter()
            .flat_map(|g| g.iter().filter_map(pos))
            .collect();
        let permuted = view.permute(&order);
        let ty = self.program.values[view.value].ty;
        let copied = self.copy(&permuted, ty);
        let whole = View::whole(copied, &permuted.shape);
        // Axes are now in group order, so merging succeeds.
        let mut at = 0;
        let mut out = Vec::new();
        for g in groups {
            let local: Vec<GemmAxis> = g
                .iter()
                .map(|x| {
                    let p = pos(x).map(|_| {
                        at += 1;
                        at - 1
                    });
                    GemmAxis { a: p, ..x.clone() }
                })
                .collect();
            out.push(merge(&whole, &local, |x| x.a).ok_or("layout")?);
        }
        Ok(View {
            value: copied,
            offset: 0,
            shape: out.iter().map(|x| x.0).collect(),
            strides: out.iter().map(|x| x.1).collect(),
        })
    }

    fn conv(&mut self, node: &TypedNode, op: &TractConv) -> Result<(), Refusal> {
        if op.q_params.is_some() {
            return self.quantized_conv(node, op);
        }
        let out_shape = Self::shape_of(&node.outputs[0].fact)?;
        let ty = self.elem_type(node.outputs[0].fact.datum_type)?;
        if !ty.is_float() {
            return Err("integer convolution".into());
        }
        let (input, kernel) = (self.view(node.inputs[0]), self.view(node.inputs[1]));
        let bias = node.inputs.get(2).map(|&b| self.view(b));
        let out = self.conv_into(op, &input, &kernel, bias, &out_shape, ty)?;
        self.bind(node, out);
        Ok(())
    }

    /// A float convolution of `input` by `kernel` (plus a bias) into a new value of `out_shape`.
    fn conv_into(
        &mut self,
        op: &TractConv,
        input: &View,
        kernel: &View,
        bias: Option<View>,
        out_shape: &[usize],
        ty: ElemType,
    ) -> Result<ValueId, Refusal> {
        let spec = &op.pool_spec;
        let (input, kernel) = (input.clone(), kernel.clone());
        let out_shape = out_shape.to_vec();
        let x = nchw(&input, spec.data_format)?;
        let out = self
            .program
            .add_value(out_shape.clone(), ty, Origin::Computed);
        let out_view = nchw(&View::whole(out, &out_shape), spec.data_format)?;
        let geo = geometry(spec, &x, &out_view)?;
        let rank = kernel.shape.len();
        let w = match op.kernel_fmt {
            KernelFormat::OIHW => kernel.clone(),
            KernelFormat::HWIO if op.group == 1 => {
                let mut order = vec![rank - 1, rank - 2];
                order.extend(0..rank - 2);
                kernel.permute(&order)
            }
            KernelFormat::OHWI if op.group == 1 => {
                let mut order = vec![0, rank - 1];
                order.extend(1..rank - 1);
                kernel.permute(&order)
            }
            other => return Err(format!("{other:?} kernel with groups")),
        };
        let w = if w.shape.len() == 3 {
            w.insert_axis(2)
        } else {
            w
        };
        let conv = Conv {
            batch: x.shape[0],
            groups: op.group,
            in_channels: x.shape[1],
            out_channels: out_view.shape[1],
            input_hw: [x.shape[2], x.shape[3]],
            output_hw: [out_view.shape[2], out_view.shape[3]],
            kernel_hw: geo.kernel,
            strides: geo.strides,
            dilations: geo.dilations,
            pad_before: geo.pad_before,
            out_strides: [
                out_view.strides[0],
                out_view.strides[1],
                out_view.strides[2],
                out_view.strides[3],
            ],
        };
        let mut operands = Vec::new();
        let mut epilogue = Expr::Acc;
        if let Some(bias) = bias {
            let lit = self.literal(&bias, Scalar::F32);
            if lit != Some(Literal::F32(0.0)) {
                let term = match lit {
                    Some(l) => Expr::Lit(l),
                    None => {
                        // Per output channel: a vector along the output's channel axis.
                        let mut strides = vec![0; out_shape.len()];
                        let c_axis = channel_axis(spec.data_format, out_shape.len());
                        strides[c_axis] = *bias.strides.last().unwrap_or(&0);
                        if bias.numel() != conv.out_channels {
                            return Err(format!("bias of shape {:?}", bias.shape));
                        }
                        operands.push(View {
                            value: bias.value,
                            offset: bias.offset,
                            shape: out_shape.clone(),
                            strides,
                        });
                        Expr::Load(0)
                    }
                };
                epilogue = Expr::Binary(BinaryOp::Add, Box::new(Expr::Acc), Box::new(term));
            }
        }
        let step = self.step(Kernel::Conv(conv), vec![x, w], operands, epilogue, out);
        self.push(step);
        Ok(out)
    }

    /// ConvTranspose, as tract-onnx hands it over: an OIHW kernel (`[C_out, C_in/group, KH,
    /// KW]`, regrouped from ONNX's layout), the padding tract's own deconvolution geometry gives,
    /// and a bias per output channel.
    fn deconv(&mut self, node: &TypedNode, op: &Deconv) -> Result<(), Refusal> {
        if op.kernel_format != KernelFormat::OIHW {
            return Err(format!("{:?} kernel", op.kernel_format));
        }
        let spec = &op.pool_spec;
        let out_shape = Self::shape_of(&node.outputs[0].fact)?;
        let ty = self.elem_type(node.outputs[0].fact.datum_type)?;
        if !ty.is_float() {
            return Err("integer data".into());
        }
        let x = nchw(&self.view(node.inputs[0]), spec.data_format)?;
        let kernel = self.view(node.inputs[1]);
        let w = if kernel.shape.len() == 3 {
            kernel.insert_axis(2)
        } else {
            kernel
        };
        let out = self.output_value(node, 0)?;
        let o = nchw(&View::whole(out, &out_shape), spec.data_format)?;
        let two = |v: &[usize]| {
            if v.len() == 1 {
                [1, v[0]]
            } else {
                [v[0], v[1]]
            }
        };
        let input_hw: Vec<usize> = if spec.kernel_shape.len() == 1 {
            vec![x.shape[3]]
        } else {
            x.shape[2..].to_vec()
        };
        let dims = spec
            .padding
            .compute_for_deconv(
                &input_hw,
                &spec.kernel_shape,
                &spec.dilations(),
                &spec.strides(),
                &op.adjustments,
            )
            .map_err(|e| e.to_string())?;
        let out_hw: Vec<usize> = dims.iter().map(|d| d.deconvoluted).collect();
        if two(&out_hw) != [o.shape[2], o.shape[3]] {
            return Err(format!(
                "output size {out_hw:?} where tract expects {:?}",
                &o.shape[2..]
            ));
        }
        let pads: Vec<usize> = dims.iter().map(|d| d.pad_before).collect();
        let geometry = Conv {
            batch: x.shape[0],
            groups: op.group,
            in_channels: x.shape[1],
            out_channels: o.shape[1],
            input_hw: [x.shape[2], x.shape[3]],
            output_hw: [o.shape[2], o.shape[3]],
            kernel_hw: two(&spec.kernel_shape),
            strides: two(&spec.strides()),
            dilations: two(&spec.dilations()),
            pad_before: if pads.len() == 1 {
                [0, pads[0]]
            } else {
                [pads[0], pads[1]]
            },
            out_strides: [o.strides[0], o.strides[1], o.strides[2], o.strides[3]],
        };
        let mut operands = Vec::new();
        let mut epilogue = Expr::Acc;
        if let Some(&bias) = node.inputs.get(2) {
            let bias = self.view(bias);
            let term = match self.literal(&bias, Scalar::F32) {
                Some(Literal::F32(0.0)) => None,
                Some(l) => Some(Expr::Lit(l)),
                None => {
                    if bias.numel() != geometry.out_channels {
                        return Err(format!("bias of shape {:?}", bias.shape));
                    }
                    let mut strides = vec![0; out_shape.len()];
                    strides[channel_axis(spec.data_format, out_shape.len())] =
                        *bias.strides.last().unwrap_or(&0);
                    operands.push(View {
                        value: bias.value,
                        offset: bias.offset,
                        shape: out_shape.clone(),
                        strides,
                    });
                    Some(Expr::Load(0))
                }
            };
            if let Some(term) = term {
                epilogue = binary(BinaryOp::Add, Expr::Acc, term);
            }
        }
        let step = self.step(
            Kernel::Deconv(geometry),
            vec![x, w],
            operands,
            epilogue,
            out,
        );
        self.push(step);
        self.bind(node, out);
        Ok(())
    }

    fn pool(&mut self, node: &TypedNode, spec: &PoolSpec, kind: PoolKind) -> Result<(), Refusal> {
        let input = self.view(node.inputs[0]);
        let out_shape = Self::shape_of(&node.outputs[0].fact)?;
        if !self.elem_type(node.outputs[0].fact.datum_type)?.is_float() {
            return Err("integer pooling".into());
        }
        let x = nchw(&input, spec.data_format)?;
        let out = self.output_value(node, 0)?;
        let o = nchw(&View::whole(out, &out_shape), spec.data_format)?;
        let geo = geometry(spec, &x, &o)?;
        let pool = Pool {
            kind,
            batch: x.shape[0],
            channels: x.shape[1],
            input_hw: [x.shape[2], x.shape[3]],
            output_hw: [o.shape[2], o.shape[3]],
            kernel_hw: geo.kernel,
            strides: geo.strides,
            dilations: geo.dilations,
            pad_before: geo.pad_before,
            out_strides: [o.strides[0], o.strides[1], o.strides[2], o.strides[3]],
        };
        let step = self.step(Kernel::Pool(pool), vec![x], vec![], Expr::Acc, out);
        self.push(step);
        self.bind(node, out);
        Ok(())
    }

    fn reduce(&mut self, node: &TypedNode, op: &Reduce) -> Result<(), Refusal> {
        let reducer = match op.reducer {
            TractReducer::Sum => Reducer::Sum,
            TractReducer::Prod => Reducer::Prod,
            TractReducer::Max => Reducer::Max,
            TractReducer::Min => Reducer::Min,
            TractReducer::MeanOfSquares => Reducer::MeanOfSquares,
            TractReducer::ArgMax(last) => Reducer::ArgMax { last },
            TractReducer::ArgMin(last) => Reducer::ArgMin { last },
            other => return Err(format!("{other:?}")),
        };
        let input_ty = self.program.values[self.view(node.inputs[0]).value].ty;
        if !input_ty.is_float() {
            return Err("integer reduction".into());
        }
        self.rows(node, &op.axes, RowOp::Reduce(reducer))
    }

    fn rows(&mut self, node: &TypedNode, axes: &[usize], op: RowOp) -> Result<(), Refusal> {
        let input = self.view(node.inputs[0]);
        let rank = input.shape.len();
        if !matches!(op, RowOp::Reduce(_)) && !self.program.values[input.value].ty.is_float() {
            return Err("integer input".into());
        }
        let kept: Vec<usize> = (0..rank).filter(|a| !axes.contains(a)).collect();
        let order: Vec<usize> = kept.iter().chain(axes).copied().collect();
        let out = self.output_value(node, 0)?;
        let out_shape = self.program.values[out].shape.clone();
        let out_strides = contiguous_strides(&out_shape);
        let reduces = matches!(op, RowOp::Reduce(_));
        let strides = order
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                if reduces && i >= kept.len() {
                    0
                } else {
                    out_strides[a]
                }
            })
            .collect();
        let rows = Rows {
            op,
            kept_rank: kept.len(),
            out_strides: strides,
        };
        let step = self.step(
            Kernel::Rows(rows),
            vec![input.permute(&order)],
            vec![],
            Expr::Acc,
            out,
        );
        self.push(step);
        self.bind(node, out);
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct GemmAxis {
    size: usize,
    a: Option<usize>,
    b: Option<usize>,
    out: Option<usize>,
}

/// One (size, stride) for a group of axes of `view`, or `None` when the strides do not nest.
/// Axes where the view has size 1 broadcast (stride 0).
fn merge(
    view: &View,
    group: &[GemmAxis],
    pos: impl Fn(&GemmAxis) -> Option<usize>,
) -> Option<(usize, usize)> {
    let axes: Vec<(usize, usize)> = group
        .iter()
        .filter(|g| g.size > 1)
        .map(|g| match pos(g) {
            Some(p) if view.shape[p] > 1 => (g.size, view.strides[p]),
            _ => (g.size, 0),
        })
        .collect();
    let Some(&(_, inner_stride)) = axes.last() else {
        return Some((1, 0));
    };
    for w in axes.windows(2) {
        let ((_, outer), (size, inner)) = (w[0], w[1]);
        if outer != inner * size {
            return None;
        }
    }
    Some((axes.iter().map(|a| a.0).product(), inner_stride))
}

fn channel_axis(format: DataFormat, rank: usize) -> usize {
    match format {
        DataFormat::NCHW => 1,
        DataFormat::CHW => 0,
        DataFormat::NHWC | DataFormat::HWC => rank - 1,
    }
}

/// The view as `[N, C, H, W]` whatever the data format; 1-d data gets a unit height.
fn nchw(view: &View, format: DataFormat) -> Result<View, Refusal> {
    let rank = view.shape.len();
    let c = channel_axis(format, rank);
    let (n, hw): (Option<usize>, Vec<usize>) = match format {
        DataFormat::NCHW => (Some(0), (2..rank).collect()),
        DataFormat::NHWC => (Some(0), (1..rank - 1).collect()),
        DataFormat::CHW => (None, (1..rank).collect()),
        DataFormat::HWC => (None, (0..rank - 1).collect()),
    };
    if hw.is_empty() || hw.len() > 2 {
        return Err(format!("{}-d spatial data", hw.len()));
    }
    let axis = |a: Option<usize>| {
        a.map(|a| (view.shape[a], view.strides[a]))
            .unwrap_or((1, 0))
    };
    let mut dims = vec![axis(n), axis(Some(c))];
    if hw.len() == 1 {
        dims.push((1, 0));
    }
    dims.extend(hw.iter().map(|&a| axis(Some(a))));
    Ok(View {
        value: view.value,
        offset: view.offset,
        shape: dims.iter().map(|d| d.0).collect(),
        strides: dims.iter().map(|d| d.1).collect(),
    })
}

struct Geometry {
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    pad_before: [usize; 2],
}

/// Window geometry from tract's pool spec; checks that it yields the output size tract inferred
/// for `out` (an `[N, C, H, W]` view).
fn geometry(spec: &PoolSpec, x: &View, out: &View) -> Result<Geometry, Refusal> {
    let two = |v: &[usize]| {
        if v.len() == 1 {
            [1, v[0]]
        } else {
            [v[0], v[1]]
        }
    };
    let hw: Vec<usize> = if spec.kernel_shape.len() == 1 {
        vec![x.shape[3]]
    } else {
        x.shape[2..].to_vec()
    };
    let padding = spec.computed_padding(&hw);
    let pads: Vec<usize> = padding.iter().map(|p| p.pad_before).collect();
    let out_hw: Vec<usize> = padding.iter().map(|p| p.convoluted).collect();
    if two(&out_hw) != [out.shape[2], out.shape[3]] {
        return Err(format!(
            "output size {:?} where tract expects {:?}",
            out_hw,
            &out.shape[2..]
        ));
    }
    Ok(Geometry {
        kernel: two(&spec.kernel_shape),
        strides: two(&spec.strides()),
        dilations: two(&spec.dilations()),
        pad_before: if pads.len() == 1 {
            [0, pads[0]]
        } else {
            [pads[0], pads[1]]
        },
    })
}

fn unary_op(op: &ElementWiseOp) -> Result<UnaryOp, Refusal> {
    let mini = &op.0;
    if let Some(l) = mini.downcast_ref::<LeakyRelu>() {
        return Ok(UnaryOp::LeakyRelu(l.alpha));
    }
    if let Some(g) = mini.downcast_ref::<GeluApproximate>() {
        return Ok(UnaryOp::GeluApprox { fast: g.fast_impl });
    }
    if let Some(p) = mini.downcast_ref::<PowConst>() {
        return Ok(UnaryOp::PowConst(p.exponent));
    }
    Ok(match mini.name().as_str() {
        "Neg" => UnaryOp::Neg,
        "Abs" => UnaryOp::Abs,
        "Exp" => UnaryOp::Exp,
        "Ln" => UnaryOp::Ln,
        "Sqrt" => UnaryOp::Sqrt,
        "Rsqrt" => UnaryOp::Rsqrt,
        "Recip" => UnaryOp::Recip,
        "Square" => UnaryOp::Square,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Round" => UnaryOp::Round,
        "RoundHalfToEven" => UnaryOp::RoundHalfToEven,
        "Sign" => UnaryOp::Sign,
        "Sin" => UnaryOp::Sin,
        "Cos" => UnaryOp::Cos,
        "Tan" => UnaryOp::Tan,
        "Asin" => UnaryOp::Asin,
        "Acos" => UnaryOp::Acos,
        "Atan" => UnaryOp::Atan,
        "Sinh" => UnaryOp::Sinh,
        "Cosh" => UnaryOp::Cosh,
        "Tanh" => UnaryOp::Tanh,
        "Erf" => UnaryOp::Erf,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Silu" => UnaryOp::Silu,
        "GeluExact" => UnaryOp::GeluExact,
        "HardSwish" => UnaryOp::HardSwish,
        "Not" => UnaryOp::Not,
        _ => return Err(String::new()),
    })
}

/// The binary operator, and whether tract's operand order is reversed (`SubF` is `b - a`).
fn binary_op(name: &str) -> Result<(BinaryOp, bool), Refusal> {
    Ok(match name {
        "Add" => (BinaryOp::Add, false),
        "Sub" => (BinaryOp::Sub, false),
        "SubF" => (BinaryOp::Sub, true),
        "Mul" => (BinaryOp::Mul, false),
        "Div" => (BinaryOp::Div, false),
        "Rem" => (BinaryOp::Rem, false),
        "Min" => (BinaryOp::Min, false),
        "Max" => (BinaryOp::Max, false),
        "Pow" => (BinaryOp::Pow, false),
        "Eq" => (BinaryOp::Eq, false),
        "NE" => (BinaryOp::Ne, false),
        "LT" => (BinaryOp::Lt, false),
        "GT" => (BinaryOp::Gt, false),
        "LTE" => (BinaryOp::Le, false),
        "GTE" => (BinaryOp::Ge, false),
        "And" => (BinaryOp::And, false),
        "Or" => (BinaryOp::Or, false),
        "Xor" => (BinaryOp::Xor, false),
        _ => return Err(String::new()),
    })
}

fn binary(op: BinaryOp, a: Expr, b: Expr) -> Expr {
    Expr::Binary(op, Box::new(a), Box::new(b))
}

/// A tract tensor's elements converted to `T`, in row-major order.
pub(crate) fn tensor_values<T: Datum + Copy>(t: &Tensor) -> Result<Vec<T>, String> {
    let cast = t.cast_to::<T>().map_err(|e| e.to_string())?;
    let view = cast.to_plain_array_view::<T>().map_err(|e| e.to_string())?;
    Ok(view.iter().copied().collect())
}

pub(crate) fn datum_type(dtype: DType) -> DatumType {
    match dtype {
        DType::F32 => f32::datum_type(),
        DType::F16 => f16::datum_type(),
        DType::I8 => i8::datum_type(),
        DType::U8 => u8::datum_type(),
        DType::I32 => i32::datum_type(),
        DType::I64 => i64::datum_type(),
        DType::Bool => bool::datum_type(),
    }
}

fn host_dtype(dt: DatumType) -> Option<DType> {
    Some(match dt {
        DatumType::F32 => DType::F32,
        DatumType::F16 => DType::F16,
        DatumType::I8 => DType::I8,
        DatumType::U8 => DType::U8,
        DatumType::I32 => DType::I32,
        DatumType::I64 => DType::I64,
        DatumType::Bool => DType::Bool,
        _ => return None,
    })
}

/// tract errors are chains of context; the last link is the cause a user can act on, the first
/// says where.
fn root_cause(e: &TractError) -> String {
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    match chain.as_slice() {
        [] => "unknown tract error".into(),
        [only] => only.clone(),
        [first, .., last] => format!("{last} ({first})"),
    }
}
