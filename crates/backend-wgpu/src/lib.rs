//! The portable GPU backend: ONNX models lowered to WGSL compute kernels and run through wgpu on
//! any adapter that speaks Vulkan, Metal, DX12 or GL. Software adapters (Mesa's lavapipe) run it
//! too and are labelled software rasterizers, never GPUs.
//!
//! tract reads and declutters the model (shapes concrete for the bound inputs, batch norms turned
//! into per-channel multiply-adds); `import` lowers every node to strided views or kernel steps,
//! `fuse` folds element-wise chains into the epilogue of the kernel before them, `wgsl` writes
//! the kernels and `session` places the whole on a device. Device-side time comes from GPU
//! timestamp queries where the adapter has them.

mod adapter;
mod error;
mod fuse;
mod graph;
mod growing;
mod import;
pub mod microbench;
mod options;
mod session;
mod wgsl;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use chipbench_core::{
    Backend, Coverage, Device, ModelSource, Session, SessionOptions, Unavailable,
};

use adapter::Gpu;
pub use error::WgpuError;
pub use growing::GrowingSession;
pub use microbench::{Clock, CopyBandwidth, MatmulKernel, MatmulThroughput, Precision};
pub use options::{SETTINGS_HELP, WgpuSettings};
pub use session::WgpuSession;

/// The wgpu release this crate is built against.
pub const WGPU_VERSION: &str = "30.0.2";

/// Every adapter wgpu enumerates is a device, numbered in enumeration order (`wgpu:0`, ...).
pub struct WgpuBackend {
    backends: Option<wgpu::Backends>,
    adapters: OnceLock<Result<(wgpu::Instance, Vec<wgpu::Adapter>), Unavailable>>,
    gpus: Mutex<HashMap<usize, Arc<Gpu>>>,
}

impl Default for WgpuBackend {
    /// Adapters of the APIs `WGPU_BACKEND` names (e.g. `vulkan`, `gl`), all of them when unset.
    fn default() -> Self {
        WgpuBackend {
            backends: None,
            adapters: OnceLock::new(),
            gpus: Mutex::new(HashMap::new()),
        }
    }
}

impl WgpuBackend {
    /// Only adapters of `backends` (e.g. `wgpu::Backends::VULKAN`).
    pub fn with_backends(backends: wgpu::Backends) -> Self {
        WgpuBackend {
            backends: Some(backends),
            ..Default::default()
        }
    }

    fn adapters(&self) -> Result<&[wgpu::Adapter], Unavailable> {
        let found = self.adapters.get_or_init(|| {
            let instance = adapter::instance(self.backends);
            let requested = self.backends.unwrap_or_else(|| wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()));
            let adapters = pollster::block_on(instance.enumerate_adapters(requested));
            if adapters.is_empty() {
                let hint = if cfg!(target_os = "linux") {
                    "; without a GPU, Mesa's software Vulkan driver works: apt-get install mesa-vulkan-drivers libvulkan1"
                } else {
                    ""
                };
                let filter = if std::env::var_os("WGPU_BACKEND").is_some() && self.backends.is_none() {
                    " (restricted by WGPU_BACKEND)"
                } else {
                    ""
                };
                return Err(Unavailable(format!(
                    "no graphics adapter found for {}{filter}{hint}",
                    adapter::api_names(requested)
                )));
            }
            Ok((instance, adapters))
        });
        match found {
            Ok((_, adapters)) => Ok(adapters),
            Err(reason) => Err(reason.clone()),
        }
    }

    /// The open device of adapter `device.id`, opened on first use and shared by sessions.
    pub(crate) fn gpu(&self, device: &Device) -> Result<Arc<Gpu>, WgpuError> {
        let adapters = self.adapters().map_err(|u| WgpuError::NoAdapter(u.0))?;
        let index: usize = device
            .id
            .parse()
            .ok()
            .filter(|&i| i < adapters.len())
            .ok_or_else(|| {
                WgpuError::NoAdapter(format!("wgpu has no adapter '{}' here", device.id))
            })?;
        let mut gpus = self
            .gpus
            .lock()
            .map_err(|_| WgpuError::NoAdapter("device table poisoned".into()))?;
        if let Some(gpu) = gpus.get(&index) {
            return Ok(gpu.clone());
        }
        let gpu = Arc::new(Gpu::open(&adapters[index])?);
        gpus.insert(index, gpu.clone());
        Ok(gpu)
    }

    /// Loads a model as a [`WgpuSession`] (the concrete type, for callers that want more than
    /// the [`Session`] trait).
    pub fn load_session(
        &self,
        model: &ModelSource,
        device: &Device,
        options: &SessionOptions,
    ) -> Result<WgpuSession, WgpuError> {
        let settings = WgpuSettings::parse(&options.settings)?;
        let gpu = self.gpu(device)?;
        let imported = import::import(model, gpu.f16)?;
        WgpuSession::new(
            gpu,
            imported.program,
            imported.inputs,
            imported.outputs,
            options.profile,
            settings.timestamps,
        )
    }
}

impl Backend for WgpuBackend {
    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn version(&self) -> String {
        WGPU_VERSION.to_string()
    }

    fn devices(&self) -> Result<Vec<Device>, Unavailable> {
        Ok(self
            .adapters()?
            .iter()
            .enumerate()
            .map(|(i, a)| adapter::describe(i, &a.get_info()))
            .collect())
    }

    /// `--backend wgpu` without a device: the first discrete GPU, then integrated, then the
    /// rest (software adapters last).
    fn default_devices(&self, devices: Vec<Device>) -> Vec<Device> {
        adapter::preferred(&devices).cloned().into_iter().collect()
    }

    fn load(
        &self,
        model: &ModelSource,
        device: &Device,
        options: &SessionOptions,
    ) -> chipbench_core::Result<Box<dyn Session>> {
        Ok(Box::new(self.load_session(model, device, options)?))
    }

    /// A [`GrowingSession`]: a program per set of input shapes, prepared on first use.
    fn load_growing(
        &self,
        model: &ModelSource,
        device: &Device,
        options: &SessionOptions,
        _growing: &[String],
    ) -> chipbench_core::Result<Box<dyn Session>> {
        let settings = WgpuSettings::parse(&options.settings)?;
        let gpu = self.gpu(device)?;
        Ok(Box::new(GrowingSession::new(
            gpu,
            model,
            options.profile,
            settings.timestamps,
        )?))
    }

    /// Lowers the model as a load would, without an adapter: every refused operator with every
    /// node that has it.
    fn coverage(&self, model: &ModelSource) -> Coverage {
        match import::coverage(model) {
            Ok(coverage) => coverage,
            Err(e) => Coverage::Failed {
                reason: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chipbench_core::{DType, Dim, InputSpec, TensorInfo};
    use chipbench_optimize::builder::GraphBuilder;
    use chipbench_optimize::onnx::{DataType, TensorProto};

    /// An adapter without SHADER_F16 still runs f16 models, holding their tensors as f32 and
    /// saying so; forced here by importing as such an adapter would.
    #[test]
    fn f16_models_are_widened_where_the_adapter_lacks_shader_f16() {
        let backend = WgpuBackend::default();
        let device = match backend.devices() {
            Ok(devices) => backend.default_devices(devices).remove(0),
            Err(reason) if std::env::var("CHIPBENCH_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
                panic!("CHIPBENCH_REQUIRE_GPU=1 but wgpu has no adapter: {reason}")
            }
            Err(reason) => return eprintln!("skipped: no wgpu adapter here: {reason}"),
        };
        let mut g = GraphBuilder::new("half");
        g.input("x", DataType::Float16, &["3", "5"]);
        let raw = (0..35)
            .flat_map(|i| half::f16::from_f32(i as f32 / 7.0 - 2.0).to_le_bytes())
            .collect();
        let w = g.initializer(TensorProto::from_raw("w", DataType::Float16, &[5, 7], raw));
        g.node("MatMul", "m", &["x", &w], vec![]);
        g.node("Relu", "y", &["m"], vec![]);
        g.output("y", DataType::Float16, &["?"]);
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("half.onnx");
        chipbench_optimize::model::save(&g.into_model().expect("graph"), &path).expect("written");
        let info = TensorInfo {
            name: "x".into(),
            dtype: DType::F16,
            shape: vec![3, 5],
        };
        let source = ModelSource {
            path,
            inputs: vec![info.clone()],
        };

        let imported = import::import(&source, false).expect("imports");
        assert!(imported.program.f16_widened);
        let gpu = backend.gpu(&device).expect("device opens");
        let mut session = WgpuSession::new(
            gpu,
            imported.program,
            imported.inputs,
            imported.outputs,
            false,
            true,
        )
        .expect("session");
        assert!(
            session.settings()["f16"].contains("held as f32"),
            "{:?}",
            session.settings()
        );
        let spec = InputSpec {
            name: "x".into(),
            dtype: DType::F16,
            shape: vec![Dim::Fixed(3), Dim::Fixed(5)],
            range: None,
        };
        let inputs = chipbench_core::spec::random_inputs(&[spec], &[info], 3, 0);
        let y = session.run(&inputs).expect("runs");
        assert_eq!(y[0].dtype(), DType::F16);
        let x: Vec<f32> = inputs[0].to_f64_vec().iter().map(|&v| v as f32).collect();
        let w: Vec<f32> = (0..35)
            .map(|i| half::f16::from_f32(i as f32 / 7.0 - 2.0).to_f32())
            .collect();
        for (i, got) in y[0].to_f64_vec().iter().enumerate() {
            let (r, c) = (i / 7, i % 7);
            let want = (0..5)
                .map(|k| x[r * 5 + k] * w[k * 7 + c])
                .sum::<f32>()
                .max(0.0);
            assert!(
                (*got as f32 - want).abs() <= 1e-2 * want.abs().max(1.0),
                "[{r}, {c}]: {got} vs {want}"
            );
        }
    }
}
