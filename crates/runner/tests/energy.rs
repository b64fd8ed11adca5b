//! The energy window and roofline figures of a cell, through the real runner with a session
//! that does a fixed amount of CPU work per inference.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chipbench_core::result::Status;
use chipbench_core::{
    Backend, Device, ModelSource, Result, Session, SessionOptions, Tensor, TensorInfo, Unavailable,
};
use chipbench_energy::{ActivePower, EnergyPlan, EstimateModel};
use chipbench_runner::{MeasureSettings, ModelUnderTest, StopRule, Sweep, Target, WarmUp};

mod common;
use common::{cpu, io};

/// Busy-waits `work` per inference: real CPU time, as a CPU backend spends it.
struct Spinner {
    work: Duration,
}

impl Backend for Spinner {
    fn name(&self) -> &'static str {
        "spinner"
    }
    fn version(&self) -> String {
        "1".into()
    }
    fn devices(&self) -> Result<Vec<Device>, Unavailable> {
        Ok(vec![cpu()])
    }
    fn load(&self, _: &ModelSource, _: &Device, _: &SessionOptions) -> Result<Box<dyn Session>> {
        Ok(Box::new(SpinSession {
            work: self.work,
            infos: vec![io("x", 64)],
            outputs: vec![io("y", 8)],
        }))
    }
}

struct SpinSession {
    work: Duration,
    infos: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
}

impl Session for SpinSession {
    fn inputs(&self) -> &[TensorInfo] {
        &self.infos
    }
    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }
    fn run(&mut self, _: &[Tensor]) -> Result<Vec<Tensor>> {
        let until = Instant::now() + self.work;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        Tensor::from_vec(vec![1, 8], vec![0.0f32; 8]).map(|t| vec![t])
    }
    fn threads(&self) -> usize {
        1
    }
}

fn model() -> ModelUnderTest {
    let mut model = common::model("spin", vec![io("x", 64)]);
    model.record.macs = Some(1_000_000);
    model.record.weight_bytes = Some(4_000);
    model
}

fn settings() -> MeasureSettings {
    MeasureSettings {
        warmup: WarmUp {
            min_iterations: 2,
            min_duration: Duration::ZERO,
        },
        stop: StopRule {
            min_iterations: 50,
            min_duration: Duration::from_millis(100),
            max_duration: Duration::from_millis(250),
            target_relative_ci: 0.5,
            check_interval: Duration::from_millis(20),
        },
        accuracy_samples: 0,
        ..MeasureSettings::default()
    }
}

fn write(root: &std::path::Path, relative: &str, contents: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{contents}\n")).unwrap();
}

#[test]
fn without_a_sensor_a_cell_gets_a_labelled_positive_estimate() {
    let backend = Spinner {
        work: Duration::from_micros(300),
    };
    let plan = EnergyPlan::new(
        Vec::new(),
        EstimateModel::cpu_only(ActivePower {
            watts: 6.25,
            source: "test".into(),
        }),
    );
    let mut sweep = Sweep::new(
        settings(),
        vec![Target {
            backend: &backend,
            device: cpu(),
        }],
    );
    sweep.energy = Some(Arc::new(plan));
    let cell = sweep.run_cell(
        &model(),
        &Target {
            backend: &backend,
            device: cpu(),
        },
        Some(1),
    );
    assert_eq!(cell.status, Status::Ok, "{:?}", cell.error);
    let energy = cell.energy.as_ref().expect("an estimate");
    assert_eq!(energy.method, "estimated:cpu-time x active-power");
    assert!(energy.joules_per_inference > 0.0);
    assert_eq!(
        energy.inferences,
        cell.samples_ms.len() as u64,
        "no sensor: the window is the timed loop"
    );
    // The estimate is the CPU time over the window x 6.25 W per core; the window is the timed
    // loop, whose CPU time per inference the cell also reports (other tests of this binary run
    // in the same process, so both include their CPU time too).
    let from_cpu_time = cell.cpu_ms_per_inference.unwrap() / 1e3 * 6.25;
    assert!(
        (energy.joules_per_inference - from_cpu_time).abs() <= from_cpu_time * 0.2,
        "{} J per inference, CPU time says {from_cpu_time}",
        energy.joules_per_inference
    );
    assert!(
        cell.provenance["energy"].starts_with("estimated:"),
        "{}",
        cell.provenance["energy"]
    );

    let roofline = cell.roofline.as_ref().expect("MACs are known");
    assert_eq!(roofline.flops_per_inference, 2e6);
    assert_eq!(roofline.bytes_per_inference, 4_000.0 + 4.0 * (64.0 + 8.0));
    let median_s = cell.latency_ms.as_ref().unwrap().p50 / 1e3;
    assert!((roofline.achieved_gflops - 2e6 / median_s / 1e9).abs() < 1e-9);
    assert!(cell.provenance["roofline"].starts_with("derived:"));
}

#[test]
fn a_slow_sensor_stretches_the_window_past_the_stop_rule_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // A 12 W power sensor refreshing every 100 ms: the window must last 5 x 100 ms.
    write(r, "sys/class/hwmon/hwmon0/name", "board_power");
    write(r, "sys/class/hwmon/hwmon0/power1_input", "12000000");
    write(r, "sys/class/hwmon/hwmon0/update_interval", "100");
    let (meter, _) = chipbench_energy::hwmon::discover(r, false);
    let plan = EnergyPlan::new(
        vec![meter.unwrap()],
        EstimateModel::cpu_only(ActivePower {
            watts: 6.25,
            source: "test".into(),
        }),
    );
    assert_eq!(plan.min_window(), Duration::from_millis(500));

    let backend = Spinner {
        work: Duration::from_micros(500),
    };
    let mut sweep = Sweep::new(
        settings(),
        vec![Target {
            backend: &backend,
            device: cpu(),
        }],
    );
    sweep.energy = Some(Arc::new(plan));
    let cell = sweep.run_cell(
        &model(),
        &Target {
            backend: &backend,
            device: cpu(),
        },
        Some(1),
    );
    assert_eq!(cell.status, Status::Ok, "{:?}", cell.error);
    let energy = cell.energy.as_ref().unwrap();
    assert!(energy.window_s >= 0.5, "window {} s", energy.window_s);
    assert!(
        energy.inferences > cell.samples_ms.len() as u64,
        "untimed inferences were added"
    );
    assert!(cell.provenance["energy"].contains("untimed inferences ran past the stop rule"));
    // The sensor's scope is unknown ("other"): it does not cover the CPU, so the CPU part is
    // estimated and the method says both.
    assert_eq!(
        energy.method,
        "measured:hwmon + estimated:cpu-time x active-power"
    );
    let sensor = energy
        .domains
        .iter()
        .find(|d| d.name == "board_power/power1")
        .unwrap();
    assert!(
        (sensor.joules / energy.window_s - 12.0).abs() < 0.5,
        "{} J over {} s",
        sensor.joules,
        energy.window_s
    );
    assert!(
        cell.provenance["energy"].starts_with("estimated: partly"),
        "{}",
        cell.provenance["energy"]
    );
}
