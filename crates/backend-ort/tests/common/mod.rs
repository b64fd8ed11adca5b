//! What the ONNX Runtime tests share: the backend when the library is installed (a skip with the
//! reason when not, a failure under CHIPBENCH_REQUIRE_ORT=1), and the built-in suite.
// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use chipbench_backend_ort::OrtBackend;
use chipbench_core::{Backend, Device, ModelSource, Tensor};
use chipbench_optimize::Suite;

/// The ONNX Runtime backend found by the standard discovery, or `None` (with the reason
/// printed) when no library is installed; under `CHIPBENCH_REQUIRE_ORT=1` that is a failure.
pub fn ort_or_skip() -> Option<OrtBackend> {
    let backend = OrtBackend::new(None);
    match backend.runtime() {
        Ok(_) => Some(backend),
        Err(e) if std::env::var("CHIPBENCH_REQUIRE_ORT").as_deref() == Ok("1") => {
            panic!("CHIPBENCH_REQUIRE_ORT=1 but ONNX Runtime is unusable: {e}")
        }
        Err(e) => {
            eprintln!("skipped: ONNX Runtime is unusable here ({e})");
            None
        }
    }
}

pub fn device(backend: &dyn Backend, id: &str) -> Device {
    backend
        .devices()
        .expect("the backend is available")
        .into_iter()
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("no device {id}"))
}

pub fn models_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    dir.canonicalize().unwrap_or(dir)
}

pub fn suite() -> Suite {
    Suite::load(&models_dir()).expect("models/suite.toml loads")
}

/// A suite model's file and bound inputs, and its seeded input samples.
pub fn suite_model(name: &str) -> (ModelSource, Vec<chipbench_core::InputSpec>) {
    let suite = suite();
    let m = suite
        .model(name)
        .unwrap_or_else(|| panic!("no suite model {name}"));
    let source = ModelSource {
        path: m.path(&models_dir()),
        inputs: m.bound_inputs().unwrap(),
    };
    (source, m.inputs.clone())
}

pub fn samples(
    source: &ModelSource,
    specs: &[chipbench_core::InputSpec],
    n: u64,
) -> Vec<Vec<Tensor>> {
    (0..n)
        .map(|i| chipbench_core::spec::random_inputs(specs, &source.inputs, 7, i))
        .collect()
}
