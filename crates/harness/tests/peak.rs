//! `--find-peak` through the harness's run with a mock executor of known capacity: every probe is
//! a journaled cell, the search's record names them, and a resume replays the journal's probes
//! into the search and measures only the rest.

use std::cell::RefCell;
use std::rc::Rc;

use chipbench_core::result::{CellResult, LatencyVerdict, ScenarioRun, Status, Throughput};
use chipbench_harness::plan::{self, ids_of};
use chipbench_harness::scenario::Scenario;
use chipbench_harness::scenario::peak::PeakSettings;
use chipbench_harness::scenario::settings::{
    DEFAULT_MIN_DURATION, DEFAULT_SAMPLES_PER_QUERY, ScenarioSettings, parse_latency_bound,
};
use chipbench_harness::{Cell, Executor, Journal, Observer, Plan, Prepared, Resumed};
use chipbench_runner::{FreshSession, MeasureSettings};

mod common;
use common::{Zeros, cpu_of, model};

/// Queries per second the mock serves within the bound.
const CAPACITY: f64 = 1234.5;
/// What its offline run serves: the search's first rate.
const OFFLINE_QPS: f64 = 3000.0;

/// Answers a server probe VALID up to [`CAPACITY`], an offline run with [`OFFLINE_QPS`]; logs
/// each cell it measures by its scenario point.
struct Capacity {
    log: Rc<RefCell<Vec<String>>>,
    offline_qps: f64,
}

fn scenario_run(settings: &ScenarioSettings, offline_qps: f64) -> ScenarioRun {
    let stats = chipbench_core::stats::summarize(&[1.0]).unwrap();
    let valid = settings.target_qps.map(|q| q <= CAPACITY);
    ScenarioRun {
        batch: 1,
        concurrency: settings.concurrency,
        sessions: "per-worker".into(),
        sessions_reason: None,
        sessions_memory_bytes: None,
        arrivals: "poisson".into(),
        target_qps: settings.target_qps,
        seed: Some(settings.seed),
        samples_per_query: 1,
        queries: 500,
        samples: 500,
        duration_s: 1.0,
        throughput: Throughput {
            samples_per_s: offline_qps,
            ci95: [offline_qps; 2],
            window_s: 0.1,
            windows: vec![offline_qps; 10],
        },
        query_latency_ms: stats.clone(),
        queue_wait_ms: stats.clone(),
        issue_lateness_us: stats,
        generator_behind: false,
        verdict: valid.map(|valid| LatencyVerdict {
            valid,
            percentile: 0.99,
            bound_ms: 10.0,
            confidence: 0.99,
            queries: 500,
            over_bound: if valid { 0 } else { 50 },
            allowed_over_bound: Some(0),
        }),
    }
}

impl Executor for Capacity {
    fn measure(&mut self, cell: &Cell, _: &MeasureSettings) -> CellResult {
        let settings = cell.scenario.expect("a search measures scenario cells");
        assert!(settings.find_peak.is_none(), "the search cell itself ran");
        self.log.borrow_mut().push(settings.point());
        let mut result = cell.failed(String::new());
        result.status = Status::Ok;
        result.error = None;
        result.scenario_run = Some(scenario_run(settings, self.offline_qps));
        result
    }

    fn rounds(&self) -> Option<&'static str> {
        None
    }

    fn further_session(&mut self, _: &Cell, _: &MeasureSettings) -> Result<FreshSession, String> {
        unreachable!("scenario cells have no further sessions")
    }
}

struct Quiet;
impl Observer for Quiet {}

fn search(repeats: usize) -> ScenarioSettings {
    ScenarioSettings {
        scenario: Scenario::Server,
        batch: None,
        concurrency: 2,
        target_qps: None,
        samples_per_query: DEFAULT_SAMPLES_PER_QUERY,
        query_interval: None,
        latency_bound: Some(parse_latency_bound("p99=10ms").unwrap()),
        min_queries: 500,
        min_duration: DEFAULT_MIN_DURATION,
        seed: 7,
        find_peak: Some(PeakSettings {
            tolerance: 0.02,
            repeats,
        }),
        probe: None,
        generation: None,
        token_bounds: Vec::new(),
    }
}

#[test]
fn each_probe_is_a_journaled_cell_and_a_resume_replays_them_into_the_search() {
    let targets = [cpu_of(&Zeros)];
    let models = vec![Prepared::Ready(model("mlp"))];
    let scenarios = [Some(search(2))];
    let work = plan::plan(&models, &[Some(1)], &targets, &[], &scenarios);
    assert_eq!(work.len(), 1, "the plan holds the search, not its probes");
    assert_eq!(work[0].cell.id, "mlp.fp32@tract:cpu/server/c2-peak/t1");
    let dir = tempfile::tempdir().unwrap();
    let plan: Plan = serde_json::from_value(serde_json::json!({
        "run_id": "r", "tool_version": "0", "started_at": "t",
        "host": serde_json::to_value(chipbench_core::result::Host::default()).unwrap(),
        "config": serde_json::to_value(chipbench_core::result::RunConfig::default()).unwrap(),
        "cells": work.iter().map(|w| &w.cell).collect::<Vec<_>>(),
        "argv": ["-m", "mlp"],
    }))
    .unwrap();
    plan.write(dir.path()).unwrap();

    let log = Rc::new(RefCell::new(Vec::new()));
    let mut mock = Capacity {
        log: log.clone(),
        offline_qps: OFFLINE_QPS,
    };
    let mut journal = Journal::create(dir.path()).unwrap();
    let settings = MeasureSettings::default();
    let whole = chipbench_harness::run(&work, &settings, &mut mock, &mut journal, None, &mut Quiet)
        .unwrap();
    drop(journal);
    let ids = ids_of(&whole.cells);
    assert_eq!(whole.peaks.len(), 2);
    for (n, peak) in whole.peaks.iter().enumerate() {
        assert_eq!((peak.search, peak.point.as_str()), (n + 1, "c2"));
        assert!(peak.converged && peak.stopped.is_none(), "{peak:?}");
        let (lo, hi) = (peak.valid_qps.unwrap(), peak.invalid_qps.unwrap());
        assert!(
            lo <= CAPACITY && CAPACITY < hi && (hi - lo) / lo <= 0.02,
            "{peak:?}"
        );
        // The first rate is the offline capacity in queries per second.
        assert_eq!(peak.start_qps, Some(OFFLINE_QPS));
        assert_eq!(
            peak.cells[0],
            format!("mlp.fp32@tract:cpu/offline/c2-peak{}-start/t1", n + 1)
        );
        assert!(peak.cells.iter().all(|id| ids.contains(id)), "{peak:?}");
    }
    // Every cell of the run belongs to exactly one search, in order.
    let listed: Vec<String> = whole.peaks.iter().flat_map(|p| p.cells.clone()).collect();
    assert_eq!(listed, ids);
    assert!(ids[1].starts_with("mlp.fp32@tract:cpu/server/c2-peak1-p1-q3000/"));
    let journaled = std::fs::read_to_string(dir.path().join("cells.jsonl")).unwrap();
    assert_eq!(journaled.lines().count(), whole.cells.len());

    // Killed after five cells: the resume replays them and measures the rest.
    let kept: Vec<&str> = journaled.lines().take(5).collect();
    std::fs::write(dir.path().join("cells.jsonl"), kept.join("\n") + "\n").unwrap();
    let mut resumed = Resumed::load(dir.path()).unwrap();
    resumed.check(&work).unwrap();
    log.borrow_mut().clear();
    let mut journal = Journal::create(dir.path()).unwrap();
    let again = chipbench_harness::run(
        &work,
        &settings,
        &mut mock,
        &mut journal,
        Some(&mut resumed),
        &mut Quiet,
    )
    .unwrap();
    assert_eq!(resumed.left(), 0);
    assert_eq!(log.borrow().len(), whole.cells.len() - 5);
    assert_eq!(again.peaks, whole.peaks);
    assert_eq!(ids_of(&again.cells), ids);
}

/// An offline run slower than the bound allows (two workers at 150 queries/s: 13 ms a query,
/// over 10 ms) ends the search before any probe, with the reason.
#[test]
fn a_service_time_over_the_bound_ends_the_search_before_any_probe() {
    let targets = [cpu_of(&Zeros)];
    let models = vec![Prepared::Ready(model("slow"))];
    let scenarios = [Some(search(1))];
    let work = plan::plan(&models, &[Some(1)], &targets, &[], &scenarios);
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::create(dir.path()).unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut mock = Capacity {
        log: log.clone(),
        offline_qps: 150.0,
    };
    let settings = MeasureSettings::default();
    let run = chipbench_harness::run(&work, &settings, &mut mock, &mut journal, None, &mut Quiet)
        .unwrap();
    assert_eq!(*log.borrow(), ["c2-peak1-start"]);
    let peak = &run.peaks[0];
    assert_eq!(
        (peak.valid_qps, peak.converged, peak.cells.len()),
        (None, false, 1)
    );
    let why = peak.stopped.as_deref().unwrap();
    assert!(
        why.contains("no rate can be VALID") && why.contains("13.333 ms"),
        "{why}"
    );
}
