//! Shared by the GPU tests: the adapter (or the reason to skip), small ONNX models written to a
//! temporary folder, and the comparison of wgpu's outputs with tract's on the same inputs.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::sync::OnceLock;

use chipbench_backend_wgpu::WgpuBackend;
use chipbench_core::spec::random_inputs;
use chipbench_core::{
    Backend, DType, Device, Dim, InputSpec, ModelSource, SessionOptions, Tensor, TensorInfo,
};
use chipbench_optimize::builder::GraphBuilder;
use chipbench_optimize::onnx::{DataType, TensorProto};

/// The backend shared by the tests of one binary, so that kernels compiled for one test are
/// reused by the next.
pub fn backend() -> &'static WgpuBackend {
    static BACKEND: OnceLock<WgpuBackend> = OnceLock::new();
    BACKEND.get_or_init(WgpuBackend::default)
}

/// The adapter `--backend wgpu` picks, or `None` after printing why the test is skipped. With
/// `CHIPBENCH_REQUIRE_GPU=1` a missing adapter fails the test instead.
pub fn device() -> Option<Device> {
    let required = std::env::var("CHIPBENCH_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match backend().devices() {
        Ok(devices) => backend().default_devices(devices).into_iter().next(),
        Err(reason) if required => {
            panic!("CHIPBENCH_REQUIRE_GPU=1 but wgpu has no adapter: {reason}")
        }
        Err(reason) => {
            eprintln!("skipped: no wgpu adapter here: {reason}");
            None
        }
    }
}

/// A model file in a temporary folder, with the specs of its inputs.
pub struct Model {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub specs: Vec<InputSpec>,
}

impl Model {
    pub fn source(&self) -> ModelSource {
        ModelSource {
            path: self.path.clone(),
            inputs: self.bound(),
        }
    }

    pub fn bound(&self) -> Vec<TensorInfo> {
        self.specs
            .iter()
            .map(|s| s.bind(&Default::default()).expect("fixed shapes"))
            .collect()
    }
}

pub fn spec(name: &str, dtype: DType, shape: &[usize]) -> InputSpec {
    InputSpec {
        name: name.into(),
        dtype,
        shape: shape.iter().map(|&d| Dim::Fixed(d)).collect(),
        range: None,
    }
}

/// Writes the graph; `inputs` must list the graph inputs in order.
pub fn model(graph: GraphBuilder, specs: Vec<InputSpec>) -> Model {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("model.onnx");
    let proto = graph.into_model().expect("a well-formed test graph");
    chipbench_optimize::model::save(&proto, &path).expect("model written");
    Model {
        _dir: dir,
        path,
        specs,
    }
}

/// Deterministic values in [-1, 1) (a 64-bit LCG), for weights.
pub fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn weight(g: &mut GraphBuilder, name: &str, shape: &[usize], seed: u64) -> String {
    let n = shape.iter().product();
    g.weight(name, shape, &values(seed, n))
}

pub fn weight_f16(g: &mut GraphBuilder, name: &str, shape: &[usize], seed: u64) -> String {
    let n = shape.iter().product();
    let raw = values(seed, n)
        .into_iter()
        .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    g.initializer(TensorProto::from_raw(name, DataType::Float16, shape, raw))
}

/// Agreement of one output with its reference.
#[derive(Debug)]
pub struct Agreement {
    pub cosine: f64,
    /// max |y - r| / max |r|
    pub max_rel_err: f64,
}

pub fn agreement(actual: &Tensor, reference: &Tensor) -> Agreement {
    assert_eq!(actual.shape(), reference.shape(), "output shapes differ");
    let (a, r) = (actual.to_f64_vec(), reference.to_f64_vec());
    let dot: f64 = a.iter().zip(&r).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nr = r.iter().map(|x| x * x).sum::<f64>().sqrt();
    let cosine = if na == 0.0 && nr == 0.0 {
        1.0
    } else {
        dot / (na * nr)
    };
    let max_diff = a
        .iter()
        .zip(&r)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let max_ref = r.iter().map(|y| y.abs()).fold(0.0, f64::max);
    let max_rel_err = if max_ref == 0.0 {
        max_diff
    } else {
        max_diff / max_ref
    };
    Agreement {
        cosine,
        max_rel_err,
    }
}

/// Runs the model on wgpu and on tract with the same seeded inputs (sample `sample` of seed 7)
/// and returns both outputs.
pub fn run_both(
    device: &Device,
    path: &std::path::Path,
    specs: &[InputSpec],
    bound: &[TensorInfo],
    reference: Option<&std::path::Path>,
) -> (Vec<Tensor>, Vec<Tensor>) {
    let source = ModelSource {
        path: path.to_path_buf(),
        inputs: bound.to_vec(),
    };
    let mut gpu = backend()
        .load(&source, device, &SessionOptions::default())
        .unwrap_or_else(|e| panic!("wgpu load: {e}"));
    let tract = chipbench_backend_tract::TractBackend;
    let cpu = &tract.devices().expect("tract is always available")[0];
    let reference = ModelSource {
        path: reference.unwrap_or(path).to_path_buf(),
        inputs: bound.to_vec(),
    };
    let mut cpu_session = tract
        .load(&reference, cpu, &SessionOptions::default())
        .expect("tract load");
    let inputs = random_inputs(specs, bound, 7, 0);
    let actual = gpu.run(&inputs).unwrap_or_else(|e| panic!("wgpu run: {e}"));
    let expected = cpu_session.run(&inputs).expect("tract run");
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(&expected) {
        assert_eq!(a.dtype(), e.dtype(), "output types differ");
    }
    (actual, expected)
}

/// Asserts that every output of `model` on wgpu matches tract within the f32 tolerances the
/// suite is held to (cosine >= 0.9999, max relative error <= 1e-3), or the given ones.
pub fn assert_matches_tract(device: &Device, model: &Model, cosine: f64, rel: f64) {
    let (actual, expected) = run_both(device, &model.path, &model.specs, &model.bound(), None);
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        let agree = agreement(a, e);
        assert!(
            agree.cosine >= cosine && agree.max_rel_err <= rel,
            "output {i}: {agree:?} (want cosine >= {cosine}, max rel err <= {rel})"
        );
    }
}
