//! The energy plan: estimate when nothing is measured, measured windows with an idle baseline,
//! and the labels on every figure.

use std::time::Duration;

use super::fixtures::{Ticker, rapl_zone};
use chipbench_energy::{ActivePower, EnergyPlan, EstimateModel, GpuWork, Work, rapl};

fn power(watts: f64) -> ActivePower {
    ActivePower {
        watts,
        source: "test figure".into(),
    }
}

fn busy_cpu_time(duration: Duration) -> Duration {
    let before = cpu_time();
    let start = std::time::Instant::now();
    let mut x = 1u64;
    while start.elapsed() < duration {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    std::hint::black_box(x);
    cpu_time() - before
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct passed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) },
        0
    );
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[test]
fn without_sensors_the_estimate_is_positive_and_labelled() {
    let plan = EnergyPlan::new(Vec::new(), EstimateModel::cpu_only(power(6.25)));
    assert_eq!(
        plan.min_window(),
        Duration::ZERO,
        "no sensor, no refresh period to wait for"
    );
    let window = plan.open().unwrap();
    let cpu = busy_cpu_time(Duration::from_millis(60));
    let closed = window
        .close(&Work {
            inferences: 30,
            cpu_time: Some(cpu),
            gpu: None,
        })
        .unwrap();
    let e = &closed.energy;
    assert_eq!(e.method, "estimated:cpu-time x active-power");
    assert!(e.joules_per_inference > 0.0 && e.avg_power_w > 0.0);
    let expected = cpu.as_secs_f64() * 6.25 / 30.0;
    assert!((e.joules_per_inference - expected).abs() < 1e-12);
    assert!(e.window_s >= 0.06);
    assert!(e.domains.iter().all(|d| d.method.starts_with("estimated:")));
    assert!(
        closed.provenance.starts_with("estimated:"),
        "{}",
        closed.provenance
    );
    assert!(
        closed
            .provenance
            .contains("6.25 W per busy core (test figure)")
    );
    assert_eq!(e.idle_power_w, None);
}

#[test]
fn a_gpu_without_a_sensor_is_estimated_when_its_power_is_known_and_noted_otherwise() {
    let mut model = EstimateModel::cpu_only(power(5.0));
    model.gpus.insert("Test GPU".into(), power(100.0));
    let plan = EnergyPlan::new(Vec::new(), model);
    let gpu = |device: &str| GpuWork {
        device: device.into(),
        busy: Duration::from_millis(20),
        basis: "device timestamps".into(),
    };

    let work = Work {
        inferences: 10,
        cpu_time: Some(Duration::from_millis(10)),
        gpu: Some(gpu("Test GPU")),
    };
    let closed = plan.open().unwrap().close(&work).unwrap();
    assert_eq!(
        closed.energy.method,
        "estimated:cpu-time x active-power + estimated:gpu-busy x active-power"
    );
    assert!(
        (closed.energy.joules_per_inference - (0.010 * 5.0 + 0.020 * 100.0) / 10.0).abs() < 1e-12
    );

    let work = Work {
        gpu: Some(gpu("Other GPU")),
        ..work
    };
    let closed = plan.open().unwrap().close(&work).unwrap();
    assert_eq!(closed.energy.method, "estimated:cpu-time x active-power");
    assert!(
        closed.provenance.contains("GPU energy not included"),
        "{}",
        closed.provenance
    );
}

#[test]
fn nothing_to_measure_and_nothing_to_estimate_is_an_error() {
    let plan = EnergyPlan::new(Vec::new(), EstimateModel::cpu_only(power(5.0)));
    let err = plan
        .open()
        .unwrap()
        .close(&Work {
            inferences: 5,
            cpu_time: None,
            gpu: None,
        })
        .unwrap_err();
    assert!(err.to_string().contains("CPU time is unknown"), "{err}");
}

#[test]
fn the_idle_baseline_is_subtracted_from_measured_energy() {
    let root = tempfile::tempdir().unwrap();
    let zone = rapl_zone(
        root.path(),
        "intel-rapl:0",
        "package-0",
        0,
        Some(u64::MAX / 2),
    );
    let (meter, _) = rapl::discover(root.path());
    let mut plan = EnergyPlan::new(vec![meter.unwrap()], EstimateModel::cpu_only(power(5.0)));
    assert_eq!(
        plan.min_window(),
        Duration::from_millis(5),
        "five RAPL refresh periods"
    );

    let idle_ticker = Ticker::start(vec![(zone.join("energy_uj"), 0, 20.0)]);
    let baseline = plan.measure_idle(Duration::from_millis(300));
    drop(idle_ticker);
    assert_eq!(baseline.method, "measured:rapl");
    let idle_w = baseline.avg_power_w.unwrap();
    assert!(
        (idle_w - 20.0).abs() < 2.0,
        "idle {idle_w} W, drawn at 20 W"
    );

    let _busy_ticker = Ticker::start(vec![(zone.join("energy_uj"), 100_000_000, 50.0)]);
    std::thread::sleep(Duration::from_millis(20));
    let window = plan.open().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let closed = window
        .close(&Work {
            inferences: 100,
            cpu_time: Some(Duration::from_millis(1)),
            gpu: None,
        })
        .unwrap();
    let e = closed.energy;
    assert_eq!(
        e.method, "measured:rapl",
        "the package counter covers the CPU: no estimate added"
    );
    assert!(
        (e.avg_power_w - 50.0).abs() < 5.0,
        "{} W, drawn at 50 W",
        e.avg_power_w
    );
    assert_eq!(e.idle_power_w, Some(idle_w));
    let above = e.joules_per_inference_above_idle.unwrap();
    let expected = (e.avg_power_w - idle_w) * e.window_s / 100.0;
    assert!(
        (above - expected).abs() < 1e-9 && above > 0.0,
        "{above} vs {expected}"
    );
    assert!(
        closed.provenance.starts_with("measured:"),
        "{}",
        closed.provenance
    );
    assert!(closed.provenance.contains("idle baseline"));
}

#[test]
fn without_sensors_the_idle_baseline_says_why() {
    let mut plan = EnergyPlan::new(Vec::new(), EstimateModel::cpu_only(power(5.0)));
    let t = std::time::Instant::now();
    let baseline = plan.measure_idle(Duration::from_secs(5));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "nothing to measure, so no waiting"
    );
    assert_eq!(baseline.avg_power_w, None);
    assert!(baseline.note.unwrap().contains("no energy sensor"));
}
