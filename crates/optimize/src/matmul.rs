//! Square matmul models whose only work is one product, for the roofline's compute ceilings
//! (`chipbench roofline`): `MatMul` in fp32 and `MatMulInteger` (u8 x i8 -> i32), with fixed
//! pseudo-random weights.

use std::path::{Path, PathBuf};

use crate::Result;
use crate::builder::GraphBuilder;
use crate::onnx::{DataType, TensorProto};

/// Writes `matmul-fp32-N.onnx` and `matmul-int8-N.onnx` (N = `size`) into `dir`; returns their
/// paths, fp32 first.
pub fn write(dir: &Path, size: usize) -> Result<(PathBuf, PathBuf)> {
    let weights: Vec<f32> = (0..size * size)
        .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5)
        .collect();
    let mut g = GraphBuilder::new("roofline_matmul_fp32");
    g.input(
        "a",
        DataType::Float,
        &[&size.to_string(), &size.to_string()],
    );
    let b = g.weight("b", &[size, size], &weights);
    g.node("MatMul", "y", &["a", &b], vec![]);
    g.output(
        "y",
        DataType::Float,
        &[&size.to_string(), &size.to_string()],
    );
    let fp32 = dir.join(format!("matmul-fp32-{size}.onnx"));
    crate::model::save(&g.into_model()?, &fp32)?;

    let raw: Vec<u8> = (0..size * size)
        .map(|i| (((i * 7919) % 255) as i32 - 127) as i8 as u8)
        .collect();
    let mut g = GraphBuilder::new("roofline_matmul_int8");
    g.input(
        "a",
        DataType::Uint8,
        &[&size.to_string(), &size.to_string()],
    );
    let b = g.initializer(TensorProto::from_raw(
        "b",
        DataType::Int8,
        &[size, size],
        raw,
    ));
    g.node("MatMulInteger", "y", &["a", &b], vec![]);
    g.output(
        "y",
        DataType::Int32,
        &[&size.to_string(), &size.to_string()],
    );
    let int8 = dir.join(format!("matmul-int8-{size}.onnx"));
    crate::model::save(&g.into_model()?, &int8)?;
    Ok((fp32, int8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_models_have_one_square_product() {
        let dir = tempfile::tempdir().unwrap();
        let (fp32, int8) = write(dir.path(), 8).unwrap();
        for (path, op) in [(fp32, "MatMul"), (int8, "MatMulInteger")] {
            let model = crate::model::load(&path).unwrap();
            let graph = model.graph.unwrap();
            let ops: Vec<&str> = graph
                .node
                .iter()
                .filter_map(|n| n.op_type.as_deref())
                .collect();
            assert_eq!(ops, [op]);
            assert_eq!(graph.initializer[0].dims, [8, 8]);
        }
    }
}
