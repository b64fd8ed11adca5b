//! GPUs: NVIDIA ones through NVML (loaded at run time; no driver is a reason, not a failure),
//! and whatever the CLI learns from GPU backends (wgpu adapters) through [`from_backend_device`],
//! since this crate does not depend on any backend.

use chipbench_core::result::Gpu;
use chipbench_core::{Device, DeviceKind};
use nvml_wrapper::Nvml;

/// NVIDIA GPUs, or why none could be listed.
pub fn nvml_gpus() -> Result<Vec<Gpu>, String> {
    let nvml = Nvml::init()
        .map_err(|e| format!("NVML cannot be loaded ({e}): no NVIDIA driver on this host"))?;
    let driver = nvml.sys_driver_version().ok();
    let count = nvml
        .device_count()
        .map_err(|e| format!("NVML cannot count the GPUs: {e}"))?;
    (0..count)
        .map(|i| {
            let device = nvml
                .device_by_index(i)
                .map_err(|e| format!("NVML GPU {i}: {e}"))?;
            Ok(Gpu {
                source: "nvml".into(),
                name: device.name().unwrap_or_else(|_| format!("NVIDIA GPU {i}")),
                kind: DeviceKind::DiscreteGpu,
                memory_bytes: device.memory_info().ok().map(|m| m.total),
                driver: driver.clone(),
                power_limit_w: device
                    .enforced_power_limit()
                    .ok()
                    .map(|mw| mw as f64 / 1000.0),
            })
        })
        .collect()
}

/// A backend's non-CPU device as a host GPU entry (`None` for CPU devices). The kind is kept,
/// so a software rasterizer stays labelled as one.
pub fn from_backend_device(backend: &str, device: &Device) -> Option<Gpu> {
    (device.kind != DeviceKind::Cpu).then(|| Gpu {
        source: backend.to_string(),
        name: device.name.clone(),
        kind: device.kind,
        memory_bytes: None,
        driver: None,
        power_limit_w: None,
    })
}

/// Adds backend devices to a host's GPU list, skipping ones already listed under the same name.
pub fn add_backend_devices(
    host: &mut chipbench_core::result::Host,
    backend: &str,
    devices: &[Device],
) {
    for gpu in devices
        .iter()
        .filter_map(|d| from_backend_device(backend, d))
    {
        if !host
            .gpus
            .iter()
            .any(|g| g.source == gpu.source && g.name == gpu.name)
        {
            host.gpus.push(gpu);
        }
    }
}
