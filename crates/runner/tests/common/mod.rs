//! Stand-ins the runner's tests share: a CPU device, tensor infos and a model under test.

#![allow(dead_code)] // each test binary uses its own part

use std::path::PathBuf;

use chipbench_core::result::ModelRecord;
use chipbench_core::{DType, Device, DeviceKind, TensorInfo};
use chipbench_runner::ModelUnderTest;

pub fn cpu() -> Device {
    Device {
        id: "cpu".into(),
        name: "CPU".into(),
        kind: DeviceKind::Cpu,
        note: None,
    }
}

/// An f32 tensor of shape `[1, n]`.
pub fn io(name: &str, n: usize) -> TensorInfo {
    TensorInfo {
        name: name.into(),
        dtype: DType::F32,
        shape: vec![1, n],
    }
}

/// The fp32 model `name` (file `name.onnx`, its own reference) with inputs `bound`.
pub fn model(name: &str, bound: Vec<TensorInfo>) -> ModelUnderTest {
    let path = PathBuf::from(format!("{name}.onnx"));
    ModelUnderTest {
        record: ModelRecord {
            name: name.into(),
            variant: "fp32".into(),
            ..ModelRecord::default()
        },
        path: path.clone(),
        specs: Vec::new(),
        bound,
        fixed_inputs: Default::default(),
        real: None,
        reference: path,
        decoding: None,
    }
}
