//! Where a cell sits on the roofline: the work of one inference (2 x MACs), the bytes it must
//! move at least (weights, inputs, outputs), and the rate achieved at the median latency. The
//! bound comes from ceilings measured on the host, which the caller adds.

use chipbench_core::TensorInfo;
use chipbench_core::result::CellRoofline;

/// The precision a variant computes in, from its name: `int8-dynamic`, `int8-qdq` compute in
/// int8, `fp16` in fp16; everything else (fp32, pruned variants that keep fp32 weights) in fp32.
pub fn precision_of_variant(variant: &str) -> &'static str {
    let v = variant.to_ascii_lowercase();
    if v.contains("int8") || v.contains("qdq") || v.contains("quant") {
        "int8"
    } else if v.contains("fp16") || v.contains("bf16") {
        "fp16"
    } else {
        "fp32"
    }
}

pub const PROVENANCE: &str = "derived: FLOPs = 2 x MACs counted from the ONNX graph; bytes = weights + \
model inputs + outputs (compulsory traffic, intermediate activations assumed to stay in cache, so the \
intensity and the bound are optimistic); achieved = FLOPs / median host latency";

/// The cell's roofline figures, or `None` when the model's MACs or weight bytes are unknown.
pub fn figures(
    variant: &str,
    macs: Option<u64>,
    weight_bytes: Option<u64>,
    inputs: &[TensorInfo],
    outputs: &[TensorInfo],
    median_ms: f64,
) -> Option<CellRoofline> {
    let flops = 2.0 * macs? as f64;
    let io: usize = inputs
        .iter()
        .chain(outputs)
        .map(|t| t.shape.iter().product::<usize>() * t.dtype.size_bytes())
        .sum();
    let bytes = weight_bytes? as f64 + io as f64;
    if flops <= 0.0 || bytes <= 0.0 || median_ms <= 0.0 {
        return None;
    }
    Some(CellRoofline {
        precision: precision_of_variant(variant).into(),
        flops_per_inference: flops,
        bytes_per_inference: bytes,
        arithmetic_intensity: flops / bytes,
        achieved_gflops: flops / (median_ms / 1e3) / 1e9,
        bound_gflops: None,
        bound_by: None,
        fraction_of_bound: None,
        ceilings: "no bound: the caller did not supply host ceilings".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chipbench_core::DType;

    #[test]
    fn counts_flops_bytes_and_rate() {
        let x = TensorInfo {
            name: "x".into(),
            dtype: DType::F32,
            shape: vec![1, 256],
        };
        let y = TensorInfo {
            name: "y".into(),
            dtype: DType::F32,
            shape: vec![1, 10],
        };
        let r = figures(
            "int8-dynamic",
            Some(1_000_000),
            Some(100_000),
            &[x],
            &[y],
            0.5,
        )
        .unwrap();
        assert_eq!(r.precision, "int8");
        assert_eq!(r.flops_per_inference, 2e6);
        assert_eq!(r.bytes_per_inference, 100_000.0 + 4.0 * 266.0);
        assert!(
            (r.achieved_gflops - 4.0).abs() < 1e-12,
            "2 MFLOP in 0.5 ms = 4 GFLOP/s"
        );
        assert!(
            figures("fp32", None, Some(1), &[], &[], 1.0).is_none(),
            "unknown MACs: no roofline"
        );
    }

    #[test]
    fn variant_names_map_to_precisions() {
        assert_eq!(precision_of_variant("fp32"), "fp32");
        assert_eq!(precision_of_variant("int8-qdq"), "int8");
        assert_eq!(precision_of_variant("fp16"), "fp16");
        assert_eq!(precision_of_variant("pruned-2:4"), "fp32");
    }
}
