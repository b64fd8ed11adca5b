//! What the runner does with a session: the inputs converted once before warm-up and each
//! timed inference's content named in the latency's provenance; further sessions recorded with
//! the inferences they really timed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chipbench_core::result::{Status, StopReason};
use chipbench_core::{
    Backend, Device, ModelSource, PreparedInputs, Result, Session, SessionOptions, Tensor,
    TensorInfo, Unavailable,
};
use chipbench_runner::{
    FreshSession, MeasureSettings, ModelUnderTest, StopRule, Sweep, Target, WarmUp,
};

mod common;
use common::{cpu, io};

const WINDOW: &str = "the counting engine's inference, nothing else";

/// Counts what its sessions do: conversions of host tensors (in `run` and `prepare_inputs`),
/// `run` calls and `run_prepared` calls. Each inference sleeps `latency`.
#[derive(Default)]
struct Counting {
    latency: Duration,
    conversions: Arc<AtomicU64>,
    runs: Arc<AtomicU64>,
    prepared_runs: Arc<AtomicU64>,
}

struct CountingSession {
    latency: Duration,
    conversions: Arc<AtomicU64>,
    runs: Arc<AtomicU64>,
    prepared_runs: Arc<AtomicU64>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
}

/// What `CountingSession::prepare_inputs` makes.
struct Converted;

impl Backend for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn version(&self) -> String {
        "1".into()
    }
    fn devices(&self) -> Result<Vec<Device>, Unavailable> {
        Ok(vec![cpu()])
    }
    fn load(&self, _: &ModelSource, _: &Device, _: &SessionOptions) -> Result<Box<dyn Session>> {
        Ok(Box::new(CountingSession {
            latency: self.latency,
            conversions: self.conversions.clone(),
            runs: self.runs.clone(),
            prepared_runs: self.prepared_runs.clone(),
            inputs: vec![io("x", 64)],
            outputs: vec![io("y", 8)],
        }))
    }
}

impl CountingSession {
    fn infer(&self) -> Result<Vec<Tensor>> {
        std::thread::sleep(self.latency);
        Tensor::from_vec(vec![1, 8], vec![0.0f32; 8]).map(|t| vec![t])
    }
}

impl Session for CountingSession {
    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }
    fn run(&mut self, _: &[Tensor]) -> Result<Vec<Tensor>> {
        self.conversions.fetch_add(1, Ordering::SeqCst);
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.infer()
    }
    fn prepare_inputs(&mut self, _: &[Tensor]) -> Result<PreparedInputs> {
        self.conversions.fetch_add(1, Ordering::SeqCst);
        Ok(PreparedInputs::engine(Converted))
    }
    fn run_prepared(&mut self, inputs: &PreparedInputs) -> Result<Vec<Tensor>> {
        assert!(inputs.as_engine::<Converted>().is_some());
        self.prepared_runs.fetch_add(1, Ordering::SeqCst);
        self.infer()
    }
    fn timed_window(&self) -> &'static str {
        WINDOW
    }
    fn threads(&self) -> usize {
        1
    }
}

fn model() -> ModelUnderTest {
    common::model("counting", vec![io("x", 64)])
}

fn settings(stop: StopRule) -> MeasureSettings {
    MeasureSettings {
        warmup: WarmUp {
            min_iterations: 3,
            min_duration: Duration::ZERO,
        },
        stop,
        accuracy_samples: 0,
        ..MeasureSettings::default()
    }
}

#[test]
fn inputs_are_converted_once_before_warm_up_and_the_timed_window_is_named() {
    let backend = Counting::default();
    let target = Target {
        backend: &backend,
        device: cpu(),
    };
    let mut sweep = Sweep::new(
        settings(StopRule {
            min_iterations: 200,
            min_duration: Duration::from_millis(20),
            max_duration: Duration::from_secs(5),
            target_relative_ci: 0.5,
            check_interval: Duration::from_millis(5),
        }),
        Vec::new(),
    );
    let cell = sweep.run_cell(&model(), &target, Some(1));
    assert_eq!(cell.status, Status::Ok, "{:?}", cell.error);
    let timed = cell.samples_ms.len() as u64;
    let warm = cell.warmup.as_ref().unwrap().iterations;
    assert!(timed >= 200);
    // The first inference alone runs the host tensors (a cold start includes the conversion);
    // then one conversion, and every warm-up and timed inference on its result.
    assert_eq!(backend.runs.load(Ordering::SeqCst), 1);
    assert_eq!(backend.conversions.load(Ordering::SeqCst), 2);
    assert_eq!(backend.prepared_runs.load(Ordering::SeqCst), warm + timed);
    let latency = &cell.provenance["latency_ms"];
    assert!(
        latency.contains(&format!("counting:cpu: {WINDOW}")),
        "{latency}"
    );

    let before = backend.conversions.load(Ordering::SeqCst);
    sweep.fresh_session_p50(&model(), &target, Some(1)).unwrap();
    assert_eq!(
        backend.conversions.load(Ordering::SeqCst),
        before + 1,
        "a further session converts once too"
    );
    assert_eq!(backend.runs.load(Ordering::SeqCst), 1);
}

#[test]
fn a_further_session_cut_short_by_its_maximum_says_how_many_inferences_it_timed() {
    // 5 ms per inference; the further sessions' loop lasts at most 20 ms (a fifth of the main
    // minimum duration) against a minimum of 20 inferences (a fifth of the main minimum count):
    // the maximum comes first.
    let backend = Counting {
        latency: Duration::from_millis(5),
        ..Counting::default()
    };
    let target = Target {
        backend: &backend,
        device: cpu(),
    };
    let main = StopRule {
        min_iterations: 100,
        min_duration: Duration::from_millis(100),
        max_duration: Duration::from_millis(300),
        target_relative_ci: 0.01,
        check_interval: Duration::from_millis(50),
    };
    let extra = StopRule::for_extra_session(&main);
    assert_eq!(
        (extra.min_iterations, extra.max_duration),
        (20, Duration::from_millis(20))
    );
    let mut sweep = Sweep::new(settings(main), Vec::new());
    let mut cell = sweep.run_cell(&model(), &target, Some(1));
    assert_eq!(cell.status, Status::Ok, "{:?}", cell.error);
    assert_eq!(cell.session_loops.len(), 1);
    assert_eq!(
        cell.session_loops[0].inferences,
        cell.samples_ms.len() as u64
    );
    assert_eq!(Some(cell.session_loops[0].stop_reason), cell.stop_reason);

    let session = sweep.fresh_session_p50(&model(), &target, Some(1)).unwrap();
    assert_eq!(session.timed.stop_reason, StopReason::MaxDuration);
    assert!((1..20).contains(&session.timed.inferences), "{session:?}");
    // A session measured in a process of its own comes back as this JSON.
    let json = serde_json::to_value(session).unwrap();
    assert_eq!(json["stop_reason"], "max_duration");
    assert_eq!(json["inferences"], session.timed.inferences);
    assert_eq!(
        serde_json::from_value::<FreshSession>(json).unwrap(),
        session
    );

    assert!(chipbench_runner::record_session(
        &sweep.settings,
        &mut cell,
        Ok(session),
        "one after another"
    ));
    assert_eq!(cell.session_p50_ms.len(), 2);
    assert_eq!(cell.session_loops[1], session.timed);
    let provenance = &cell.provenance["session_p50_ms"];
    assert!(
        provenance.contains(&format!(
            "the further sessions timed {} inferences (maximum duration); 1 of them reached the \
             maximum duration before the minimum of 20 inferences",
            session.timed.inferences
        )),
        "{provenance}"
    );

    assert!(!chipbench_runner::record_session(
        &sweep.settings,
        &mut cell,
        Err("it crashed".into()),
        "one after another"
    ));
    assert_eq!(cell.session_loops.len(), 2);
    assert!(cell.provenance["session_p50_ms"].ends_with("no more were measured: it crashed"));
}
