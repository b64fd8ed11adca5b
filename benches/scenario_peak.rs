//! The peak query rate of each suite model on ONNX Runtime's CPU provider under p99 = 10 ms, as
//! `bench --scenario server` measures a cell: Poisson arrivals, one worker with its own session
//! at the backend's default threads, each query's latency from its scheduled arrival, MLPerf's
//! early stopping at 99 % confidence (at least 459 queries and 2 s a probe), and the rate found
//! by bracketing then bisection to 2 %. Each probe prints its verdict.
//!
//! Run: `cargo bench --bench scenario_peak` (needs ONNX Runtime: `scripts/setup-ort.sh`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chipbench_backend_ort::OrtBackend;
use chipbench_core::Backend;
use chipbench_core::result::{ModelRecord, Status};
use chipbench_harness::scenario::Scenario;
use chipbench_harness::scenario::cell::measure_cell;
use chipbench_harness::scenario::peak::{PeakSearch, find_peak};
use chipbench_harness::scenario::settings::{
    DEFAULT_SAMPLES_PER_QUERY, ScenarioSettings, parse_latency_bound,
};
use chipbench_optimize::suite::Suite;
use chipbench_runner::{MeasureSettings, ModelUnderTest, Target, WarmUp};

fn main() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models"));
    let suite = Suite::load(dir).expect("models/suite.toml");
    let backend = OrtBackend::new(None);
    let Some(device) = backend
        .devices()
        .ok()
        .and_then(|d| d.into_iter().find(|d| d.id == "cpu"))
    else {
        println!("ONNX Runtime is not available here: no figures");
        return;
    };
    let target = Target {
        backend: &backend,
        device,
    };
    let settings = MeasureSettings {
        warmup: WarmUp {
            min_iterations: 10,
            min_duration: Duration::from_millis(200),
        },
        ..MeasureSettings::default()
    };
    let bound = parse_latency_bound("p99=10ms").unwrap();
    let search = PeakSearch {
        start_qps: 100.0,
        tolerance: 0.02,
        max_probes: 12,
    };
    for model in &suite.models {
        let path = model.path(dir);
        let m = ModelUnderTest {
            record: ModelRecord {
                name: model.name.clone(),
                path: path.display().to_string(),
                variant: "fp32".into(),
                ..ModelRecord::default()
            },
            path: path.clone(),
            specs: model.inputs.clone(),
            bound: model.bound_inputs().unwrap(),
            fixed_inputs: BTreeMap::new(),
            real: None,
            reference: path,
        };
        let peak = find_peak(&search, |qps| {
            let server = ScenarioSettings {
                scenario: Scenario::Server,
                batch: None,
                concurrency: 1,
                target_qps: Some(qps),
                samples_per_query: DEFAULT_SAMPLES_PER_QUERY,
                query_interval: None,
                latency_bound: Some(bound),
                min_queries: 459,
                min_duration: Duration::from_secs(2),
                seed: 0,
            };
            let cell = measure_cell(&m, &target, None, &settings, &server);
            if cell.status != Status::Ok {
                return Err(cell.error.unwrap_or_default());
            }
            let run = cell.scenario_run.unwrap();
            let verdict = run.verdict.unwrap();
            println!(
                "  {} at {qps:.0} QPS: {} ({} of {} queries over 10 ms, {} allowed), p99 {:.2} ms, \
                 generator lateness p99 {:.0} us{}",
                model.name,
                if verdict.valid { "VALID" } else { "INVALID" },
                verdict.over_bound,
                verdict.queries,
                verdict
                    .allowed_over_bound
                    .map_or("none".into(), |a| a.to_string()),
                run.query_latency_ms.p99,
                run.issue_lateness_us.p99,
                if run.generator_behind {
                    " (generator behind)"
                } else {
                    ""
                },
            );
            Ok(verdict.valid)
        });
        match peak {
            Ok(p) => println!(
                "{}: peak {} QPS under p99 = 10 ms (first INVALID at {}), {} probes{}",
                model.name,
                p.valid_qps.map_or("none".into(), |q| format!("{q:.0}")),
                p.invalid_qps.map_or("none".into(), |q| format!("{q:.0}")),
                p.probes.len(),
                if p.converged {
                    ", within 2 %"
                } else {
                    ", not converged"
                }
            ),
            Err(e) => println!("{}: a probe failed: {e}", model.name),
        }
    }
}
