//! Runs built from seeded lognormal samples for the unit tests of this crate. The end-to-end
//! tests of the binary (`tests/` at the workspace root) use real runs.

use std::collections::BTreeMap;

use chipbench_core::DeviceKind;
use chipbench_core::result::{
    Accuracy, BackendRecord, CellEnergy, CellResult, CellRoofline, Host, ModelRecord, RunConfig,
    RunResult, SCHEMA, SpeedCheck, Status,
};
use chipbench_core::stats;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

use crate::gate::Baseline;

pub fn lognormal_samples(median_ms: f64, sigma: f64, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dist = LogNormal::new(median_ms.ln(), sigma).expect("valid lognormal");
    (0..n).map(|_| dist.sample(&mut rng)).collect()
}

pub fn cell(
    model: &str,
    variant: &str,
    backend: &str,
    samples: Vec<f64>,
    cosine: Option<f64>,
) -> CellResult {
    let model_record = ModelRecord {
        name: model.into(),
        path: format!("models/{model}.onnx"),
        sha256: "0".repeat(64),
        variant: variant.into(),
        recipe: None,
        params: Some(1000),
        macs: Some(100_000),
        weight_bytes: Some(4000),
        file_bytes: Some(4500),
        derivation: None,
    };
    let backend_record = BackendRecord {
        name: backend.into(),
        version: "1".into(),
        device: "cpu".into(),
        device_name: "test cpu".into(),
        device_kind: DeviceKind::Cpu,
        threads: Some(2),
        settings: BTreeMap::new(),
    };
    let mut cell = CellResult::not_run(
        model_record,
        backend_record,
        "single-stream",
        Status::Ok,
        String::new(),
    );
    cell.error = None;
    cell.latency_ms = stats::summarize(&samples);
    cell.throughput_per_s = Some(1000.0 / (samples.iter().sum::<f64>() / samples.len() as f64));
    cell.samples_ms = samples;
    cell.cpu_ms_per_inference = Some(0.5);
    cell.peak_rss_bytes = Some(50 << 20);
    cell.accuracy = cosine.map(|cosine| Accuracy {
        reference: "tract:cpu fp32".into(),
        samples: 4,
        max_abs_err: 1.0 - cosine,
        max_rel_err: 1.0 - cosine,
        mean_rel_err: 1.0 - cosine,
        cosine,
        top1_agreement: Some(1.0),
        outputs: Vec::new(),
        task: None,
    });
    for (key, text) in [
        (
            "latency_ms",
            "measured: host monotonic clock around each Session::run",
        ),
        (
            "throughput_per_s",
            "derived: timed inferences / wall time of the timed loop",
        ),
        ("cpu_ms_per_inference", "measured: getrusage, whole process"),
        ("peak_rss_bytes", "measured: VmHWM"),
        (
            "accuracy",
            "measured: outputs on 4 seeded samples against tract:cpu fp32",
        ),
    ] {
        cell.provenance.insert(key.into(), text.into());
    }
    cell
}

pub fn run_with(run_id: &str, cells: Vec<CellResult>) -> RunResult {
    let host = Host {
        cpu_brand: "Test CPU".into(),
        cpu_vendor: "Test".into(),
        arch: "x86_64".into(),
        logical_cores: 2,
        physical_cores: Some(2),
        memory_bytes: 8 << 30,
        os: "Linux".into(),
        kernel: "6.1".into(),
        hostname: "test".into(),
        fingerprint: "00000000000000aa".into(),
        ..Host::default()
    };
    RunResult {
        schema: SCHEMA.into(),
        run_id: run_id.into(),
        tool_version: "0.1.0".into(),
        started_at: "2026-11-28T12:00:00Z".into(),
        finished_at: Some("2026-11-28T12:01:00Z".into()),
        interrupted: false,
        host,
        config: RunConfig {
            scenario: "single-stream".into(),
            ..RunConfig::default()
        },
        cells,
        idle_baseline: None,
        projections: None,
        speed_checks: Vec::new(),
        peaks: Vec::new(),
        hosts: Vec::new(),
        shard: None,
        fleet: None,
    }
}

/// An estimated energy record: CPU time x a per-core power, as the energy crate labels it.
/// `cell` as a load-generator cell of `scenario` at `point`: its samples become query latencies,
/// and its throughput the mean of `windows` (samples per second of each window of its run).
pub fn load_generated(
    mut cell: CellResult,
    scenario: &str,
    point: &str,
    windows: Vec<f64>,
) -> CellResult {
    use chipbench_core::result::{ScenarioRun, Throughput};
    let stats = stats::summarize(&cell.samples_ms).expect("samples");
    let samples_per_s = windows.iter().sum::<f64>() / windows.len() as f64;
    cell.scenario = scenario.into();
    cell.scenario_point = Some(point.into());
    cell.throughput_per_s = Some(samples_per_s);
    cell.scenario_run = Some(ScenarioRun {
        batch: 1,
        concurrency: 2,
        sessions: "per-worker".into(),
        sessions_reason: None,
        sessions_memory_bytes: None,
        arrivals: "all-at-once".into(),
        target_qps: None,
        seed: None,
        samples_per_query: 1,
        queries: cell.samples_ms.len() as u64,
        samples: cell.samples_ms.len() as u64,
        duration_s: 1.0,
        throughput: Throughput {
            samples_per_s,
            ci95: [samples_per_s; 2],
            window_s: 0.1,
            windows,
        },
        query_latency_ms: stats.clone(),
        queue_wait_ms: stats.clone(),
        issue_lateness_us: stats,
        generator_behind: false,
        verdict: None,
    });
    cell
}

pub fn with_estimated_energy(mut cell: CellResult, watts: f64) -> CellResult {
    let seconds = cell
        .latency_ms
        .as_ref()
        .map(|l| l.mean / 1e3)
        .unwrap_or(0.0);
    cell.energy = Some(CellEnergy {
        method: "estimated:cpu-time x active-power".into(),
        joules_per_inference: seconds * watts,
        avg_power_w: watts,
        window_s: 1.0,
        inferences: cell.samples_ms.len() as u64,
        domains: Vec::new(),
        idle_power_w: None,
        joules_per_inference_above_idle: None,
    });
    cell
}

/// A roofline record as the probe derives it from 2 x MACs and the median latency.
pub fn with_roofline(
    mut cell: CellResult,
    intensity: f64,
    bound_by: &str,
    bound: f64,
) -> CellResult {
    let flops = 2.0 * cell.model.macs.unwrap_or(0) as f64;
    let p50 = cell.latency_ms.as_ref().map(|l| l.p50).unwrap_or(1.0);
    let achieved = flops / (p50 / 1e3) / 1e9;
    cell.roofline = Some(CellRoofline {
        precision: "fp32".into(),
        flops_per_inference: flops,
        bytes_per_inference: flops / intensity,
        arithmetic_intensity: intensity,
        achieved_gflops: achieved,
        bound_gflops: Some(bound),
        bound_by: Some(bound_by.into()),
        fraction_of_bound: Some(achieved / bound),
        ceilings: "measured by chipbench roofline (test figures)".into(),
    });
    cell
}

/// Two models; fp32 and int8 on the reference backend, fp32 on a second backend; one failure.
/// The mlp cells carry estimated energy, two cells roofline figures.
pub fn sample_run() -> RunResult {
    let mut failed = cell("resnet-mini", "int8", "tract", Vec::new(), None);
    failed.status = Status::Failed;
    failed.error = Some("unsupported operator QLinearAdd".into());
    failed.latency_ms = None;
    failed.throughput_per_s = None;
    run_with(
        "20261128T120000Z-0001",
        vec![
            with_roofline(
                with_estimated_energy(
                    cell(
                        "mlp",
                        "fp32",
                        "tract",
                        lognormal_samples(0.20, 0.05, 300, 1),
                        Some(1.0),
                    ),
                    6.25,
                ),
                0.5,
                "memory",
                10.0,
            ),
            with_estimated_energy(
                cell(
                    "mlp",
                    "int8",
                    "tract",
                    lognormal_samples(0.12, 0.05, 300, 2),
                    Some(0.9993),
                ),
                6.25,
            ),
            with_estimated_energy(
                cell(
                    "mlp",
                    "fp32",
                    "ort",
                    lognormal_samples(0.08, 0.08, 300, 3),
                    Some(0.999_999_9),
                ),
                6.25,
            ),
            with_roofline(
                cell(
                    "resnet-mini",
                    "fp32",
                    "tract",
                    lognormal_samples(9.0, 0.03, 120, 4),
                    Some(1.0),
                ),
                60.0,
                "compute",
                150.0,
            ),
            failed,
        ],
    )
}

/// The gate's baseline of one run.
pub fn baseline_of(run: &RunResult) -> Baseline<'_> {
    Baseline {
        label: run.run_id.clone(),
        runs: vec![run],
        window: None,
    }
}

/// A one-cell run whose speed checks around the cell took `kernel_ms`.
pub fn run_with_host(id: &str, median: f64, seed: u64, kernel_ms: f64) -> RunResult {
    let mut run = run_with(
        id,
        vec![cell(
            "m",
            "fp32",
            "tract",
            lognormal_samples(median, 0.02, 400, seed),
            None,
        )],
    );
    run.speed_checks = (0..2)
        .map(|before_cell| SpeedCheck {
            before_cell,
            at_s: before_cell as f64,
            kernel_ms,
        })
        .collect();
    run
}
