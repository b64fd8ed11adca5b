//! The timed loop's bookkeeping between inferences (the stop rule's checks of the CI over every
//! sample so far) stays out of a cell's throughput, CPU time and estimated energy. Alone in its
//! test binary: the CPU time is the whole process's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chipbench_core::result::{Status, StopReason};
use chipbench_core::{
    Backend, Device, ModelSource, Result, Session, SessionOptions, Tensor, TensorInfo, Unavailable,
};
use chipbench_energy::{ActivePower, EnergyPlan, EstimateModel};
use chipbench_runner::{MeasureSettings, StopRule, Sweep, Target, WarmUp};

mod common;
use common::{cpu, io};

/// Busy-waits 10 and 30 µs in turn: 20 µs of CPU per inference on average, and a median whose
/// CI never gets within 1 %.
struct Alternating;

struct AlternatingSession {
    calls: u64,
    io: Vec<TensorInfo>,
}

impl Backend for Alternating {
    fn name(&self) -> &'static str {
        "alternating"
    }
    fn version(&self) -> String {
        "1".into()
    }
    fn devices(&self) -> Result<Vec<Device>, Unavailable> {
        Ok(vec![cpu()])
    }
    fn load(&self, _: &ModelSource, _: &Device, _: &SessionOptions) -> Result<Box<dyn Session>> {
        Ok(Box::new(AlternatingSession {
            calls: 0,
            io: vec![io("x", 4)],
        }))
    }
}

impl Session for AlternatingSession {
    fn inputs(&self) -> &[TensorInfo] {
        &self.io
    }
    fn outputs(&self) -> &[TensorInfo] {
        &self.io
    }
    fn run(&mut self, _: &[Tensor]) -> Result<Vec<Tensor>> {
        let work = Duration::from_micros(if self.calls.is_multiple_of(2) { 10 } else { 30 });
        self.calls += 1;
        let until = Instant::now() + work;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        Ok(Vec::new())
    }
    fn threads(&self) -> usize {
        1
    }
}

#[test]
fn the_stop_rule_checks_stay_out_of_throughput_cpu_time_and_estimated_energy() {
    const WATTS: f64 = 10.0;
    let backend = Alternating;
    let target = Target {
        backend: &backend,
        device: cpu(),
    };
    let model = common::model("alternating", vec![io("x", 4)]);
    let plan = EnergyPlan::new(
        Vec::new(),
        EstimateModel::cpu_only(ActivePower {
            watts: WATTS,
            source: "test".into(),
        }),
    );
    // A check after every inference once 50 ms have passed: each copies thousands of samples
    // and selects over them, more work than an inference.
    let settings = MeasureSettings {
        warmup: WarmUp {
            min_iterations: 10,
            min_duration: Duration::ZERO,
        },
        stop: StopRule {
            min_iterations: 10,
            min_duration: Duration::from_millis(50),
            max_duration: Duration::from_millis(400),
            target_relative_ci: 0.01,
            check_interval: Duration::ZERO,
        },
        accuracy_samples: 0,
        ..MeasureSettings::default()
    };
    let mut sweep = Sweep::new(settings, Vec::new());
    sweep.energy = Some(Arc::new(plan));
    let cell = sweep.run_cell(&model, &target, Some(1));
    assert_eq!(cell.status, Status::Ok, "{:?}", cell.error);
    assert_eq!(cell.stop_reason, Some(StopReason::MaxDuration));

    let n = cell.samples_ms.len() as f64;
    let mean_ms = cell.samples_ms.iter().sum::<f64>() / n;
    // Throughput: 1 / the mean service time, within 5 % (the clock reads between inferences and
    // preemptions between two inferences stay in).
    let throughput = cell.throughput_per_s.unwrap();
    assert!(
        (throughput * mean_ms / 1e3 - 1.0).abs() < 0.05,
        "throughput {throughput:.0}/s, 1 / mean latency {:.0}/s",
        1e3 / mean_ms
    );
    // CPU time: the spinning (a preempted inference counts time it did not spend on the CPU,
    // hence the loose lower bound), not the checks.
    let cpu_ms = cell.cpu_ms_per_inference.unwrap();
    assert!(
        cpu_ms < mean_ms * 1.1 && cpu_ms > mean_ms * 0.5,
        "CPU {cpu_ms} ms per inference, latency {mean_ms} ms"
    );
    let energy = cell.energy.as_ref().unwrap();
    assert_eq!(energy.inferences, n as u64);
    let joules = mean_ms / 1e3 * WATTS;
    assert!(
        energy.joules_per_inference < joules * 1.1,
        "{} J per inference, the inferences' CPU time says {joules}",
        energy.joules_per_inference
    );
    assert!(
        cell.provenance["throughput_per_s"].contains("checks of the CI"),
        "{}",
        cell.provenance["throughput_per_s"]
    );
    assert!(cell.provenance["energy"].contains("leaves out the timed loop's bookkeeping"));
}
