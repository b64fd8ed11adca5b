//! A backend that exists only in test builds (cargo feature `crash-test`, registered when
//! `CHIPBENCH_CRASH_BACKEND=1`): its devices end the process the way broken engines do, so the
//! tests of cell isolation provoke real signals in real child processes, or stall once, so the
//! tests of the load generator see a real session's stall. A user's build has no such backend.

use std::time::{Duration, Instant};

use chipbench_core::{
    Backend, Device, DeviceKind, ModelSource, Result, Session, SessionOptions, Tensor, TensorInfo,
    Unavailable,
};

pub struct CrashBackend;

/// `abort` raises SIGABRT, `segfault` writes through a null pointer, `hang` never returns;
/// `stall` loads a session that answers at once, except for one inference (see [`Stalling`]).
const DEVICES: [&str; 4] = ["abort", "segfault", "hang", "stall"];

/// How long the `stall` device's one slow inference takes, and how long after its load it comes
/// (past any warm-up of the tests that use it).
const STALL: Duration = Duration::from_millis(200);
const STALL_AFTER: Duration = Duration::from_secs(1);

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
        model: &ModelSource,
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
            "stall" => Ok(Box::new(Stalling {
                inputs: model.inputs.clone(),
                loaded: Instant::now(),
                stalled: false,
            })),
            _ => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
        }
    }
}

/// A session with no outputs whose first inference [`STALL_AFTER`] its load or later takes
/// [`STALL`]; every other one returns at once.
struct Stalling {
    inputs: Vec<TensorInfo>,
    loaded: Instant,
    stalled: bool,
}

impl Session for Stalling {
    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorInfo] {
        &[]
    }
    fn run(&mut self, _: &[Tensor]) -> Result<Vec<Tensor>> {
        if !self.stalled && self.loaded.elapsed() >= STALL_AFTER {
            self.stalled = true;
            std::thread::sleep(STALL);
        }
        Ok(Vec::new())
    }
    fn threads(&self) -> usize {
        1
    }
}
