//! Targets found by name in a backend registry: the one a job names, and the references every
//! model's accuracy is measured against.

use chipbench_core::Backend;
use chipbench_runner::Target;

/// The target `backend:device` names.
pub fn find<'r>(registry: &'r [Box<dyn Backend>], label: &str) -> Result<Target<'r>, String> {
    let (name, id) = label.split_once(':').unwrap_or((label, ""));
    let backend = registry
        .iter()
        .find(|b| b.name() == name)
        .ok_or_else(|| format!("backend {name} is not in this build"))?;
    let devices = backend.devices().map_err(|e| format!("{name}: {}", e.0))?;
    match devices.into_iter().find(|d| d.id == id) {
        Some(device) => Ok(Target {
            backend: backend.as_ref(),
            device,
        }),
        None => Err(backend
            .missing_device_reason(id)
            .unwrap_or_else(|| format!("{name} has no device '{id}' here"))),
    }
}

/// The targets whose fp32 outputs are the reference, in order of preference: tract's CPU device,
/// then, for runs that measure ONNX Runtime anyway (`with_ort`), its CPU provider, for models
/// tract cannot run (no other backend runs those either: wgpu imports through tract). Loading
/// ONNX Runtime only for that keeps it out of the other cells' processes.
pub fn references(
    registry: &[Box<dyn Backend>],
    with_ort: bool,
) -> Result<Vec<Target<'_>>, String> {
    let tract = find(registry, "tract:cpu")
        .map_err(|e| format!("the reference backend (tract:cpu) is unavailable: {e}"))?;
    let ort = with_ort.then(|| find(registry, "ort:cpu").ok()).flatten();
    Ok(std::iter::once(tract).chain(ort).collect())
}
