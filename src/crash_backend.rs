//! A backend that exists only in test builds (cargo feature `crash-test`, registered when
//! `CHIPBENCH_CRASH_BACKEND=1`): its devices end the process the way broken engines do, so the
//! tests of cell isolation provoke real signals in real child processes. A user's build has
//! no such backend.

use chipbench_core::{
    Backend, Device, DeviceKind, ModelSource, Result, Session, SessionOptions, Unavailable,
};

pub struct CrashBackend;

/// `abort` raises SIGABRT, `segfault` writes through a null pointer, `hang` never returns.
const DEVICES: [&str; 3] = ["abort", "segfault", "hang"];

impl Backend for CrashBackend {
    fn name(&self) -> &'static str {
        "crash"
    }
    fn version(&self) -> String {
        "test".into()
    }
    fn devices(&self) -> Result<Vec<Device>, Unavailable> {
        Ok(DEVICES
            .iter()
            .map(|id| Device {
                id: id.to_string(),
                name: format!("crashes by {id}"),
                kind: DeviceKind::Cpu,
                note: None,
            })
            .collect())
    }
    fn default_devices(&self, _: Vec<Device>) -> Vec<Device> {
        Vec::new()
    }
    fn load(
        &self,
        _: &ModelSource,
        device: &Device,
        _: &SessionOptions,
    ) -> Result<Box<dyn Session>> {
        eprintln!("crash backend: about to {}", device.id);
        match device.id.as_str() {
            "abort" => std::process::abort(),
            // SAFETY: none; the point is the SIGSEGV a broken engine raises.
            "segfault" => unsafe {
                std::ptr::write_volatile(std::ptr::null_mut::<u64>(), 1);
                unreachable!("the write faults")
            },
            _ => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
        }
    }
}
