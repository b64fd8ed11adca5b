//! Quantization operators, and the input layout and output type that the integer and QLinear
//! forms of Conv and MatMul share.

use super::{Ctx, Fact, Inferred, Inputs, Rules};
use crate::onnx::DataType;

pub(super) fn rules(op: &str) -> Option<Rules> {
    let shapes = match op {
        "QuantizeLinear" => quantize,
        "DequantizeLinear" => dequantize,
        "DynamicQuantizeLinear" => dynamic_quantize,
        _ => return None,
    };
    Some(Rules::shaping(shapes))
}

/// The input position of the second operand (Conv's W, MatMul's B): QLinearConv and
/// QLinearMatMul follow each operand with its scale and zero point.
pub(super) fn second_operand(op: &str) -> usize {
    if op.starts_with("QLinear") { 3 } else { 1 }
}

/// The element type of a Conv or MatMul output: int32 for the Integer forms, which accumulate
/// without rescaling; that of `y_zero_point` (input 7) for the QLinear forms.
pub(super) fn product_elem(cx: &Ctx) -> Option<DataType> {
    let op = cx.node.op_type();
    if op.ends_with("Integer") {
        Some(DataType::Int32)
    } else if op.starts_with("QLinear") {
        cx.elem(7)
    } else {
        cx.elem(0)
    }
}

fn quantize(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let elem = cx.elem(2).or_else(|| {
        cx.node
            .attr_i("output_dtype")
            .and_then(|c| DataType::try_from(c as i32).ok())
    });
    Ok(vec![Fact::new(
        cx.shape(0)?.to_vec(),
        elem.or(Some(DataType::Uint8)),
    )])
}

fn dequantize(cx: &Ctx) -> Inferred<Vec<Fact>> {
    Ok(vec![Fact::new(cx.shape(0)?.to_vec(), cx.elem(1))])
}

fn dynamic_quantize(cx: &Ctx) -> Inferred<Vec<Fact>> {
    Ok(vec![
        Fact::new(cx.shape(0)?.to_vec(), Some(DataType::Uint8)),
        Fact::new(vec![], Some(DataType::Float)),
        Fact::new(vec![], Some(DataType::Uint8)),
    ])
}
