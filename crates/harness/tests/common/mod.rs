//! Stand-ins the harness's tests share: a backend that answers zeros, models and cells.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;
use std::path::PathBuf;

use chipbench_core::result::{BackendRecord, CellResult, ModelRecord, Status};
use chipbench_core::{
    Backend, DType, Device, DeviceKind, ModelSource, Result, Session, SessionOptions, Tensor,
    TensorInfo, Unavailable,
};
use chipbench_runner::{ModelUnderTest, Target};

/// A CPU backend whose sessions answer zeros at once. It is called `tract` because a worker
/// takes its references from `tract:cpu`.
pub struct Zeros;

struct ZerosSession {
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
}

pub fn io(name: &str) -> TensorInfo {
    TensorInfo {
        name: name.into(),
        dtype: DType::F32,
        shape: vec![1, 4],
    }
}

impl Backend for Zeros {
    fn name(&self) -> &'static str {
        "tract"
    }
    fn version(&self) -> String {
        "0".into()
    }
    fn devices(&self) -> std::result::Result<Vec<Device>, Unavailable> {
        Ok(vec![Device {
            id: "cpu".into(),
            name: "CPU".into(),
            kind: DeviceKind::Cpu,
            note: None,
        }])
    }
    fn load(&self, _: &ModelSource, _: &Device, _: &SessionOptions) -> Result<Box<dyn Session>> {
        Ok(Box::new(ZerosSession {
            inputs: vec![io("x")],
            outputs: vec![io("y")],
        }))
    }
}

impl Session for ZerosSession {
    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }
    fn run(&mut self, _: &[Tensor]) -> Result<Vec<Tensor>> {
        Tensor::from_vec(vec![1, 4], vec![0.0f32; 4]).map(|t| vec![t])
    }
    fn threads(&self) -> usize {
        1
    }
}

/// `backend`'s CPU device.
pub fn cpu_of(backend: &dyn Backend) -> Target<'_> {
    Target {
        backend,
        device: backend.devices().unwrap().remove(0),
    }
}

/// The fp32 model `name` (file `name.onnx`, its own reference) with one input.
pub fn model(name: &str) -> ModelUnderTest {
    let path = PathBuf::from(format!("{name}.onnx"));
    ModelUnderTest {
        record: ModelRecord {
            name: name.into(),
            variant: "fp32".into(),
            sha256: format!("sha-of-{name}"),
            ..ModelRecord::default()
        },
        path: path.clone(),
        specs: Vec::new(),
        bound: vec![io("x")],
        fixed_inputs: Default::default(),
        real: None,
        reference: path,
        decoding: None,
    }
}

/// An ok cell of `model` on tract's CPU, one thread, with nothing measured.
pub fn ok_cell(model: &str) -> CellResult {
    let backend = BackendRecord {
        name: "tract".into(),
        version: "0".into(),
        device: "cpu".into(),
        device_name: "CPU".into(),
        device_kind: DeviceKind::Cpu,
        threads: Some(1),
        settings: BTreeMap::new(),
    };
    let record = self::model(model).record;
    let mut cell = CellResult::not_run(record, backend, "single-stream", Status::Ok, String::new());
    cell.error = None;
    cell
}
