//! Adapters and devices: the wgpu instance, what each adapter is (a GPU, or a software
//! rasterizer on the CPU), which one `--backend wgpu` prefers, and opening a device with the
//! features the kernels can use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chipbench_core::{Device, DeviceKind};

use crate::error::WgpuError;

/// Names of drivers that implement a GPU API on the CPU, for drivers that do not report their
/// device type as `Cpu`.
const SOFTWARE_DRIVERS: [&str; 6] = [
    "llvmpipe",
    "lavapipe",
    "softpipe",
    "swiftshader",
    "microsoft basic render",
    "warp",
];

/// A wgpu instance over `backends` (`None`: the `WGPU_BACKEND` environment variable, else all).
pub(crate) fn instance(backends: Option<wgpu::Backends>) -> wgpu::Instance {
    quiet_runtime_dir();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if let Some(backends) = backends {
        desc.backends = backends;
    }
    wgpu::Instance::new(desc)
}

/// Mesa's drivers print "XDG_RUNTIME_DIR is invalid or not set" on stderr when the variable is
/// missing; a private 0700 directory (the one a login session would provide) keeps the user's
/// terminal clean. Only set when unset, and only to a directory owned by this user with mode
/// 0700.
fn quiet_runtime_dir() {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| !d.is_empty()) {
                return;
            }
            let Ok(me) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
                return;
            };
            let dir = std::env::temp_dir().join(format!("chipbench-runtime-{me}"));
            let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
            let usable = std::fs::symlink_metadata(&dir).is_ok_and(|m| {
                m.is_dir() && m.uid() == me && m.permissions().mode() & 0o777 == 0o700
            });
            if usable {
                // SAFETY: set once, before the first wgpu instance (and so before any driver
                // thread that could read the environment from C) exists; other threads read it
                // only through std, which serialises access.
                unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
            }
        });
    }
}

/// The graphics API an adapter speaks, as people write it.
pub(crate) fn api_name(backend: wgpu::Backend) -> String {
    api_names(backend.into())
}

/// "Vulkan, GL" for a set of wgpu backends.
pub(crate) fn api_names(backends: wgpu::Backends) -> String {
    let names = [
        (wgpu::Backends::VULKAN, "Vulkan"),
        (wgpu::Backends::METAL, "Metal"),
        (wgpu::Backends::DX12, "DX12"),
        (wgpu::Backends::GL, "GL"),
        (wgpu::Backends::BROWSER_WEBGPU, "WebGPU"),
    ];
    let listed: Vec<&str> = names
        .iter()
        .filter(|(b, _)| backends.contains(*b))
        .map(|(_, n)| *n)
        .collect();
    if listed.is_empty() {
        "no graphics API".into()
    } else {
        listed.join(", ")
    }
}

pub(crate) fn device_kind(info: &wgpu::AdapterInfo) -> DeviceKind {
    let name = format!("{} {}", info.name, info.driver).to_lowercase();
    if SOFTWARE_DRIVERS.iter().any(|s| name.contains(s)) {
        return DeviceKind::SoftwareRasterizer;
    }
    match info.device_type {
        wgpu::DeviceType::Cpu => DeviceKind::SoftwareRasterizer,
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu,
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu,
        wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => DeviceKind::VirtualGpu,
    }
}

/// The chipbench device for adapter number `index`.
pub(crate) fn describe(index: usize, info: &wgpu::AdapterInfo) -> Device {
    let kind = device_kind(info);
    let api = api_name(info.backend);
    let driver = [info.driver.as_str(), info.driver_info.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let mut note = api.clone();
    if !driver.is_empty() {
        note.push_str(&format!(", driver {driver}"));
    }
    if kind == DeviceKind::SoftwareRasterizer {
        note.push_str("; runs on the CPU: its timings are CPU timings, not GPU timings");
    } else if info.device_type == wgpu::DeviceType::Other {
        note.push_str("; the driver does not say what kind of GPU this is");
    }
    Device {
        id: index.to_string(),
        name: format!("{} via {api}", info.name),
        kind,
        note: Some(note),
    }
}

/// The device `--backend wgpu` means: the first discrete GPU, else the first integrated one,
/// else a virtual one, else the first software adapter.
pub(crate) fn preferred(devices: &[Device]) -> Option<&Device> {
    let rank = |k: DeviceKind| match k {
        DeviceKind::DiscreteGpu => 0,
        DeviceKind::IntegratedGpu => 1,
        DeviceKind::VirtualGpu => 2,
        _ => 3,
    };
    devices
        .iter()
        .enumerate()
        .min_by_key(|(i, d)| (rank(d.kind), *i))
        .map(|(_, d)| d)
}

/// An open device and what it can do.
pub(crate) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// SHADER_F16: f16 storage in buffers.
    pub f16: bool,
    /// TIMESTAMP_QUERY: device-side durations of compute passes.
    pub timestamps: bool,
    pub limits: wgpu::Limits,
    /// Errors wgpu reports outside an error scope (device loss, out of memory during a run).
    pub errors: Arc<Mutex<Vec<String>>>,
    /// Compiled kernels by WGSL source, shared by the sessions on this device.
    pub pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
}

impl Gpu {
    pub fn open(adapter: &wgpu::Adapter) -> Result<Gpu, WgpuError> {
        let info = adapter.get_info();
        let available = adapter.features();
        let wanted = wgpu::Features::SHADER_F16 | wgpu::Features::TIMESTAMP_QUERY;
        let features = available & wanted;
        let limits = adapter.limits();
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("chipbench"),
            required_features: features,
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        };
        let (device, queue) =
            pollster::block_on(adapter.request_device(&descriptor)).map_err(|e| {
                WgpuError::Device {
                    adapter: info.name.clone(),
                    reason: e.to_string(),
                }
            })?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut list) = sink.lock() {
                list.push(e.to_string());
            }
        }));
        Ok(Gpu {
            device,
            queue,
            info,
            f16: features.contains(wgpu::Features::SHADER_F16),
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            limits,
            errors,
            pipelines: Mutex::new(HashMap::new()),
        })
    }

    /// Errors reported since the last call, if any, as one message.
    pub fn take_errors(&self) -> Option<String> {
        let mut list = self.errors.lock().ok()?;
        if list.is_empty() {
            return None;
        }
        let joined = list.join("; ");
        list.clear();
        Some(joined)
    }

    /// Compiles `source` (or reuses the pipeline compiled from the same source), reporting
    /// validation errors as a `Result`.
    pub fn pipeline(
        &self,
        source: &str,
        label: &str,
    ) -> Result<Arc<wgpu::ComputePipeline>, WgpuError> {
        if let Some(p) = self
            .pipelines
            .lock()
            .ok()
            .and_then(|m| m.get(source).cloned())
        {
            return Ok(p);
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(WgpuError::Gpu {
                context: format!("kernel for {label}"),
                reason: error.to_string(),
            });
        }
        let pipeline = Arc::new(pipeline);
        if let Ok(mut map) = self.pipelines.lock() {
            map.insert(source.to_string(), pipeline.clone());
        }
        Ok(pipeline)
    }
}
