//! The fp32 reference of the accuracy check: computed outside the cell's memory window, and by
//! the next reference backend when the first cannot run the model.

use chipbench_core::{
    Backend, Device, Error, ModelSource, Result, Session, SessionOptions, Tensor, TensorInfo,
    Unavailable,
};
use chipbench_runner::{MeasureSettings, ModelUnderTest, Sweep, Target};

mod common;
use common::{cpu, io};

/// A backend whose sessions hold `hold_bytes` of touched memory, or that cannot load at all.
struct Engine {
    name: &'static str,
    hold_bytes: usize,
    loads: bool,
}

impl Backend for Engine {
    fn name(&self) -> &'static str {
        self.name
    }
    fn version(&self) -> String {
        "1".into()
    }
    fn devices(&self) -> Result<Vec<Device>, Unavailable> {
        Ok(vec![cpu()])
    }
    fn load(&self, _: &ModelSource, _: &Device, _: &SessionOptions) -> Result<Box<dyn Session>> {
        if !self.loads {
            return Err(Error::Unsupported(format!(
                "{} lacks an operator",
                self.name
            )));
        }
        Ok(Box::new(Held {
            _memory: vec![1u8; self.hold_bytes],
            io: vec![io("x", 4)],
        }))
    }
}

struct Held {
    _memory: Vec<u8>,
    io: Vec<TensorInfo>,
}

impl Session for Held {
    fn inputs(&self) -> &[TensorInfo] {
        &self.io
    }
    fn outputs(&self) -> &[TensorInfo] {
        &self.io
    }
    fn run(&mut self, _: &[Tensor]) -> Result<Vec<Tensor>> {
        Tensor::from_vec(vec![1, 4], vec![0.5f32, -1.0, 2.0, 0.0]).map(|t| vec![t])
    }
    fn threads(&self) -> usize {
        1
    }
}

fn model() -> ModelUnderTest {
    common::model("m", vec![io("x", 4)])
}

fn quick() -> MeasureSettings {
    let mut s = MeasureSettings::default();
    s.warmup.min_iterations = 1;
    s.warmup.min_duration = std::time::Duration::ZERO;
    s.stop.min_iterations = 5;
    s.stop.min_duration = std::time::Duration::ZERO;
    s.stop.max_duration = std::time::Duration::from_millis(50);
    s.accuracy_samples = 2;
    s
}

fn target(backend: &dyn Backend) -> Target<'_> {
    Target {
        backend,
        device: cpu(),
    }
}

#[test]
fn the_reference_session_is_not_in_the_cells_peak_memory() {
    const HOG: usize = 512 << 20;
    let reference = Engine {
        name: "reference",
        hold_bytes: HOG,
        loads: true,
    };
    let light = Engine {
        name: "light",
        hold_bytes: 0,
        loads: true,
    };
    let mut sweep = Sweep::new(quick(), vec![target(&reference)]);
    let cell = sweep.run_cell(&model(), &target(&light), Some(1));
    assert!(cell.accuracy.is_some(), "{:?}", cell.error);
    let Some(peak) = cell.peak_rss_bytes else {
        eprintln!("skipped: this kernel does not let a process reset its peak RSS");
        return;
    };
    // The reference held 512 MiB; the cell's own session nothing.
    assert!(
        peak < (HOG / 2) as u64,
        "peak {peak} B includes the reference session"
    );
}

#[test]
fn a_model_the_first_reference_cannot_run_is_checked_against_the_next() {
    let tract = Engine {
        name: "first",
        hold_bytes: 0,
        loads: false,
    };
    let fallback = Engine {
        name: "second",
        hold_bytes: 0,
        loads: true,
    };
    let mut sweep = Sweep::new(quick(), vec![target(&tract), target(&fallback)]);
    let cell = sweep.run_cell(&model(), &target(&fallback), Some(1));
    let accuracy = cell.accuracy.expect("measured against the fallback");
    assert_eq!(accuracy.max_abs_err, 0.0);
    let how = &cell.provenance["accuracy"];
    assert!(
        how.contains("second:cpu fp32 (fallback reference: first:cpu could not run it: ")
            && how.contains("first lacks an operator"),
        "{how}"
    );

    let mut none = Sweep::new(quick(), vec![target(&tract)]);
    let cell = none.run_cell(&model(), &target(&fallback), Some(1));
    assert!(cell.accuracy.is_none());
    assert!(
        cell.provenance["accuracy"].starts_with("not measured: the reference failed: first:cpu")
    );
}
