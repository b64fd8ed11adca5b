//! Streaming inputs: `--feedback OUT=IN` carries an output of each inference into the next one,
//! in the accuracy check and in the timed loop; real samples are run in turn. Checked on an
//! accumulator whose every call is logged: `y = x + state`, `stateN = x + state`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chipbench_core::result::Status;
use chipbench_core::{
    Backend, Device, ModelSource, Result, Session, SessionOptions, Tensor, TensorInfo, Unavailable,
};
use chipbench_runner::{MeasureSettings, ModelUnderTest, RealInputs, Sweep, Target};

mod common;
use common::cpu;

/// Each call's (x, state).
type Calls = Vec<(f32, f32)>;
type Log = Arc<Mutex<Calls>>;

/// Sessions that log each call's (x, state).
struct Accumulator {
    log: Log,
}

fn io(name: &str, n: usize) -> TensorInfo {
    TensorInfo {
        name: name.into(),
        dtype: chipbench_core::DType::F32,
        shape: vec![1, n],
    }
}

impl Backend for Accumulator {
    fn name(&self) -> &'static str {
        "accumulator"
    }
    fn version(&self) -> String {
        "1".into()
    }
    fn devices(&self) -> Result<Vec<Device>, Unavailable> {
        Ok(vec![cpu()])
    }
    fn load(&self, _: &ModelSource, _: &Device, _: &SessionOptions) -> Result<Box<dyn Session>> {
        Ok(Box::new(Running {
            log: self.log.clone(),
            inputs: vec![io("x", 1), io("state", 1)],
            // `y` is wider than `state`, so feeding it back is refused.
            outputs: vec![io("y", 2), io("stateN", 1)],
        }))
    }
}

struct Running {
    log: Log,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
}

impl Session for Running {
    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = inputs[0].as_slice::<f32>().unwrap()[0];
        let state = inputs[1].as_slice::<f32>().unwrap()[0];
        self.log.lock().unwrap().push((x, state));
        Ok(vec![
            Tensor::from_vec(vec![1, 2], vec![x + state, 0.0])?,
            Tensor::from_vec(vec![1, 1], vec![x + state])?,
        ])
    }
    fn threads(&self) -> usize {
        1
    }
}

/// Three real samples, x = 1, 2, 3, each with state 0.
fn model() -> ModelUnderTest {
    let mut m = common::model("acc", vec![io("x", 1), io("state", 1)]);
    let sample = |x: f32| {
        vec![
            Tensor::from_vec(vec![1, 1], vec![x]).unwrap(),
            Tensor::from_vec(vec![1, 1], vec![0.0f32]).unwrap(),
        ]
    };
    m.real = Some(RealInputs {
        held_out: PathBuf::from("held-out.npz"),
        calibration: PathBuf::from("calibration.npz"),
        source: "three numbers".into(),
        samples: Arc::new(vec![sample(1.0), sample(2.0), sample(3.0)]),
    });
    m
}

fn settings(feedback: &[(&str, &str)]) -> MeasureSettings {
    let mut s = MeasureSettings::default();
    s.warmup.min_iterations = 2;
    s.warmup.min_duration = std::time::Duration::ZERO;
    s.stop.min_iterations = 8;
    s.stop.min_duration = std::time::Duration::ZERO;
    s.stop.max_duration = std::time::Duration::from_millis(200);
    s.accuracy_samples = 3;
    s.sessions = 1;
    s.feedback = feedback
        .iter()
        .map(|(o, i)| (o.to_string(), i.to_string()))
        .collect();
    s
}

/// Runs one cell; returns it with the reference's calls and the cell's own.
fn run(feedback: &[(&str, &str)]) -> (chipbench_core::result::CellResult, Calls, Calls) {
    let reference = Accumulator {
        log: Log::default(),
    };
    let tested = Accumulator {
        log: Log::default(),
    };
    let targets = vec![Target {
        backend: &reference,
        device: cpu(),
    }];
    let mut sweep = Sweep::new(settings(feedback), targets);
    let target = Target {
        backend: &tested,
        device: cpu(),
    };
    let cell = sweep.run_cell(&model(), &target, Some(1));
    let calls = |b: &Accumulator| b.log.lock().unwrap().clone();
    (cell, calls(&reference), calls(&tested))
}

fn contains(calls: &[(f32, f32)], run: &[(f32, f32)]) -> bool {
    calls.windows(run.len()).any(|w| w == run)
}

#[test]
fn the_state_carries_from_call_to_call_with_feedback_and_not_without() {
    let (cell, reference, tested) = run(&[("stateN", "state")]);
    assert_eq!(cell.status, Status::Ok, "{:?}", cell.error);
    // The accuracy check: sample i with the previous call's stateN as its state.
    assert_eq!(reference, [(1.0, 0.0), (2.0, 1.0), (3.0, 3.0)]);
    assert!(contains(&tested, &[(1.0, 0.0), (2.0, 1.0), (3.0, 3.0)]));
    // The timed loop goes on past the samples: x cycles, the state keeps accumulating.
    assert!(
        contains(
            &tested,
            &[(1.0, 0.0), (2.0, 1.0), (3.0, 3.0), (1.0, 6.0), (2.0, 7.0)]
        ),
        "{tested:?}"
    );
    assert!(cell.provenance["latency_ms"].contains("--feedback stateN=state"));
    assert_eq!(
        cell.input_data,
        Some(chipbench_core::result::InputData::Real)
    );
    assert!(cell.provenance["input_data"].contains("three numbers"));

    let (cell, reference, tested) = run(&[]);
    assert_eq!(cell.status, Status::Ok, "{:?}", cell.error);
    assert_eq!(reference, [(1.0, 0.0), (2.0, 0.0), (3.0, 0.0)]);
    // Without feedback the timed loop runs the real samples in turn, each as it is.
    assert!(contains(
        &tested,
        &[(1.0, 0.0), (2.0, 0.0), (3.0, 0.0), (1.0, 0.0)]
    ));
    assert!(tested.iter().all(|&(_, state)| state == 0.0), "{tested:?}");
}

#[test]
fn a_wrong_feedback_fails_the_cell_naming_the_option() {
    let (cell, _, _) = run(&[("nope", "state")]);
    assert_eq!(cell.status, Status::Failed);
    let e = cell.error.unwrap();
    assert!(
        e.contains(
            "--feedback nope=state: the model has no output 'nope' (its outputs: y, stateN)"
        ),
        "{e}"
    );
    let (cell, _, _) = run(&[("stateN", "nope")]);
    let e = cell.error.unwrap();
    assert!(e.contains("no input 'nope' (its inputs: x, state)"), "{e}");
    let (cell, _, _) = run(&[("y", "state")]);
    let e = cell.error.unwrap();
    assert!(
        e.contains("--feedback y=state: output 'y' is f32 1x2, input 'state' takes f32 1x1"),
        "{e}"
    );
}
