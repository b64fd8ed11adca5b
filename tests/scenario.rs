//! Each load-generator scenario measured on the real clock with a session of known service time,
//! its record placed in a run, and the run checked against `run.schema.json`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chipbench_core::DeviceKind;
use chipbench_core::result::{
    BackendRecord, CellResult, Host, ModelRecord, RunConfig, RunResult, SCHEMA, Status,
};
use chipbench_harness::scenario::figures::Workers;
use chipbench_harness::scenario::pool::Serve;
use chipbench_harness::scenario::settings::{ScenarioSettings, parse_latency_bound};
use chipbench_harness::scenario::{Scenario, measure};

/// An inference of 200 us.
struct Sleeper;
impl Serve for Sleeper {
    fn serve(&mut self, _: usize) -> Result<(), String> {
        std::thread::sleep(Duration::from_micros(200));
        Ok(())
    }
}

fn settings(scenario: Scenario) -> ScenarioSettings {
    ScenarioSettings {
        scenario,
        batch: 4,
        concurrency: 2,
        target_qps: Some(500.0),
        samples_per_query: 3,
        query_interval: None,
        latency_bound: Some(parse_latency_bound("p99=1s").unwrap()),
        min_queries: 500,
        min_duration: Duration::from_millis(100),
        seed: 3,
    }
}

fn cell(scenario: Scenario) -> CellResult {
    let s = settings(scenario);
    s.check().unwrap();
    let workers = Workers {
        concurrency: s.concurrency,
        shared_session: false,
        sessions_memory_bytes: Some(1 << 20),
    };
    let run = measure(&s, &|_| Ok(Box::new(Sleeper)), &workers).unwrap();
    let backend = BackendRecord {
        name: "test".into(),
        version: "0".into(),
        device: "cpu".into(),
        device_name: "CPU".into(),
        device_kind: DeviceKind::Cpu,
        threads: Some(1),
        settings: BTreeMap::new(),
    };
    let mut cell = CellResult::not_run(
        ModelRecord::default(),
        backend,
        scenario.name(),
        Status::Ok,
        String::new(),
    );
    cell.error = None;
    cell.latency_ms = Some(run.query_latency_ms.clone());
    cell.samples_ms = vec![run.query_latency_ms.p50];
    cell.scenario_run = Some(run);
    cell
}

#[test]
fn every_scenario_records_what_the_schema_describes() {
    let cells: Vec<CellResult> = [Scenario::Offline, Scenario::Server, Scenario::MultiStream]
        .into_iter()
        .map(cell)
        .collect();
    let server = cells[1].scenario_run.as_ref().unwrap();
    assert_eq!(
        (server.arrivals.as_str(), server.target_qps),
        ("poisson", Some(500.0))
    );
    // 500 queries of 4 samples at 500 QPS, served far within a second.
    assert_eq!((server.queries, server.samples), (500, 2000));
    assert!(
        server
            .verdict
            .as_ref()
            .is_some_and(|v| v.valid && v.queries == 500)
    );
    let multi = cells[2].scenario_run.as_ref().unwrap();
    assert_eq!(
        (multi.arrivals.as_str(), multi.samples_per_query),
        ("after-previous", 12)
    );
    let offline = cells[0].scenario_run.as_ref().unwrap();
    assert_eq!(offline.arrivals, "all-at-once");
    assert!(offline.throughput.samples_per_s > 0.0);
    let run = RunResult {
        schema: SCHEMA.into(),
        run_id: "scenarios".into(),
        tool_version: "0".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        finished_at: None,
        interrupted: false,
        host: Host {
            logical_cores: 2,
            fingerprint: "test".into(),
            ..Host::default()
        },
        config: RunConfig::default(),
        cells,
        idle_baseline: None,
        projections: None,
        speed_checks: Vec::new(),
    };
    let json = serde_json::to_value(&run).unwrap();
    common::validate(&json);
    let back: RunResult = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, run);
    // The schema checks the section rather than letting anything through.
    let schema: serde_json::Value =
        serde_json::from_str(chipbench_core::result::RUN_JSON_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut broken = json;
    broken["cells"][0]["scenario_run"]["sessions"] = "every other".into();
    broken["cells"][1]["scenario_run"]["verdict"]["valid"] = "yes".into();
    assert_eq!(validator.iter_errors(&broken).count(), 2);
}
