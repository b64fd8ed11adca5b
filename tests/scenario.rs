//! Every load-generator scenario end to end through the binary on tract, ort:cpu and wgpu, its
//! run checked against `run.schema.json`; and the options it refuses.

mod common;

/// Offline, server and multi-stream of the suite's mlp at batch 2 on two workers, each in its
/// own process as a default run measures them.
fn every_scenario_through_the_binary(backend: &str) {
    let (code, run, _out) = common::bench(&[
        "--model",
        "mlp",
        "--backend",
        backend,
        "--scenario",
        "offline,server,multi-stream",
        "--batch",
        "2",
        "--concurrency",
        "2",
        "--target-qps",
        "400",
        "--latency-bound",
        "p99=1s",
        "--samples-per-query",
        "4",
        "--min-query-duration",
        "0.2s",
    ]);
    assert_eq!(code, 0, "{run}");
    common::validate(&run);
    // The schema checks the section rather than letting anything through.
    let schema: serde_json::Value =
        serde_json::from_str(chipbench_core::result::RUN_JSON_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut broken = run.clone();
    broken["cells"][0]["scenario_run"]["sessions"] = "every other".into();
    broken["cells"][1]["scenario_run"]["verdict"]["valid"] = "yes".into();
    assert_eq!(validator.iter_errors(&broken).count(), 2);
    // And the run reads back into the result types.
    let back: chipbench_core::result::RunResult = serde_json::from_value(run.clone()).unwrap();
    assert!(back.cells.iter().all(|c| c.scenario_run.is_some()));
    let cells = run["cells"].as_array().unwrap();
    let points: Vec<(&str, &str)> = cells
        .iter()
        .map(|c| {
            (
                c["scenario"].as_str().unwrap(),
                c["scenario_point"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        points,
        [
            ("offline", "b2-c2"),
            ("server", "b2-c2-q400"),
            ("multi-stream", "b2-c2-k4")
        ]
    );
    for c in cells {
        assert_eq!(c["status"], "ok", "{c}");
        assert_eq!(c["inputs"][0]["shape"][0], 2, "{c}");
        let s = &c["scenario_run"];
        assert_eq!(
            (s["batch"].as_u64(), s["concurrency"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(s["sessions"], "per-worker");
        assert!(
            s["sessions_reason"].as_str().unwrap().contains("&mut self"),
            "{s}"
        );
        // Energy over the generator's run, per sample served (measured where a meter is, else
        // the labelled estimate).
        let energy = &c["energy"];
        assert_eq!(energy["inferences"], s["samples"], "{c}");
        assert!(
            energy["joules_per_inference"].as_f64().unwrap() > 0.0,
            "{c}"
        );
        assert!(
            c["provenance"]["energy"]
                .as_str()
                .unwrap()
                .contains("energy per sample"),
            "{c}"
        );
        let per_query = s["samples_per_query"].as_u64().unwrap();
        assert_eq!(
            s["samples"].as_u64(),
            Some(s["queries"].as_u64().unwrap() * per_query)
        );
        assert!(s["throughput"]["samples_per_s"].as_f64().unwrap() > 0.0);
        assert_eq!(
            c["samples_ms"].as_array().unwrap().len() as u64,
            s["queries"].as_u64().unwrap()
        );
        assert!(
            c["provenance"]["latency_ms"]
                .as_str()
                .unwrap()
                .contains("scheduled arrival")
        );
    }
    assert_eq!(cells[1]["scenario_run"]["arrivals"], "poisson");
    // 459 queries at least: the fewest with which p99 can be shown within its bound.
    assert!(cells[1]["scenario_run"]["queries"].as_u64().unwrap() >= 459);
    assert!(cells[1]["scenario_run"]["verdict"]["valid"].is_boolean());
    assert_eq!(cells[2]["scenario_run"]["samples_per_query"], 8);
}

#[test]
fn every_scenario_runs_on_tract() {
    every_scenario_through_the_binary("tract");
}

#[test]
fn every_scenario_runs_on_ort_cpu() {
    if common::backend_available("ort", "CHIPBENCH_REQUIRE_ORT") {
        every_scenario_through_the_binary("ort:cpu");
    }
}

#[test]
fn every_scenario_runs_on_wgpu() {
    if common::backend_available("wgpu", "CHIPBENCH_REQUIRE_GPU") {
        every_scenario_through_the_binary("wgpu");
    }
}

/// Bad settings are refused before any cell runs, naming the option.
#[test]
fn bad_scenario_settings_name_their_option_before_any_cell() {
    let mlp_fixed = format!("{}/models/mlp.onnx", env!("CARGO_MANIFEST_DIR"));
    let cases: [(&[&str], &str); 8] = [
        (&["--scenario", "server", "--target-qps=0"], "--target-qps"),
        (&["--scenario", "server", "--target-qps=-3"], "--target-qps"),
        (
            &["--scenario", "offline", "--concurrency", "0"],
            "--concurrency",
        ),
        (
            &[
                "--scenario",
                "offline",
                "--batch",
                "4",
                "--model",
                &mlp_fixed,
                "--input",
                "input:1x784:f32",
            ],
            "--batch 4",
        ),
        (
            &[
                "--scenario",
                "server",
                "--target-qps",
                "10",
                "--latency-bound",
                "p99=10ms",
                "--min-queries",
                "100",
            ],
            "--min-queries",
        ),
        (&["--scenario", "server", "--find-peak"], "--latency-bound"),
        (
            &["--scenario", "offline", "--find-peak"],
            "--find-peak applies to --scenario server",
        ),
        (
            &[
                "--scenario",
                "server",
                "--find-peak",
                "--latency-bound",
                "p99=10ms",
                "--peak-tolerance",
                "0",
            ],
            "--peak-tolerance",
        ),
    ];
    for (args, option) in cases {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("run");
        let mut all = vec![
            "bench",
            "--quick",
            "--no-history",
            "--backend",
            "tract",
            "--out",
            dir.to_str().unwrap(),
        ];
        if !args.contains(&"--model") {
            all.extend(["--model", "mlp"]);
        }
        all.extend_from_slice(args);
        let o = common::chipbench(&all);
        assert_eq!(o.status.code(), Some(2), "{}", common::printed(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(option), "{option}: {stderr}");
        assert!(!dir.exists(), "a run folder was made before the refusal");
    }
}

/// A real session (the test backend's `stall` device: it answers at once but stalls 200 ms once,
/// a second after its load) served at 200 QPS through the binary: the stall shows in the cell's
/// maximum, and the queries that arrived during it waited for it (wide margins: a busy host only
/// adds to both).
#[cfg(feature = "crash-test")]
#[test]
fn a_real_session_that_stalls_once_shows_it_in_the_cells_max() {
    let (code, run, _out) = common::bench_with(
        &[
            "--model",
            "mlp",
            "--backend",
            "crash:stall",
            "--scenario",
            "server",
            "--target-qps",
            "200",
            "--min-query-duration",
            "2s",
        ],
        &[("CHIPBENCH_CRASH_BACKEND", "1")],
    );
    assert_eq!(code, 0, "{run}");
    let cell = &run["cells"][0];
    assert_eq!(cell["status"], "ok", "{cell}");
    let max = cell["latency_ms"]["max"].as_f64().unwrap();
    assert!(max >= 200.0, "max {max} ms");
    let waited = cell["scenario_run"]["queue_wait_ms"]["max"]
        .as_f64()
        .unwrap();
    assert!(waited >= 100.0, "longest queue wait {waited} ms");
}

/// `--find-peak` on tract: every probe is a cell with its verdict, the search is recorded once
/// and names cells of the run, and the rates it reports are the probes' (wide bound, a short
/// probe; the search converges or says why not, which depends on this host's speed).
#[test]
fn find_peak_runs_each_probe_as_a_cell_and_records_the_search_once() {
    let (code, run, out) = common::bench(&[
        "--model",
        "mlp",
        "--backend",
        "tract",
        "--threads",
        "1",
        "--scenario",
        "server",
        "--find-peak",
        "--latency-bound",
        "p99=20ms",
        "--peak-tolerance",
        "10",
        "--min-query-duration",
        "0.1s",
    ]);
    assert_eq!(code, 0, "{run}");
    common::validate(&run);
    let back: chipbench_core::result::RunResult = serde_json::from_value(run.clone()).unwrap();
    let ids: Vec<String> = back
        .cells
        .iter()
        .map(|c| {
            format!(
                "{}.{}@{}:{}/{}/t1",
                c.model.name,
                c.model.variant,
                c.backend.name,
                c.backend.device,
                c.scenario_label()
            )
        })
        .collect();
    assert_eq!(back.peaks.len(), 1, "one search, recorded once");
    let peak = &back.peaks[0];
    assert_eq!((peak.point.as_str(), peak.search), ("c1", 1));
    assert_eq!(
        peak.cells, ids,
        "the search's cells are the run's, in order"
    );
    // The first rate comes from an offline run of its own.
    assert_eq!(ids[0], "mlp.fp32@tract:cpu/offline/c1-peak1-start/t1");
    assert!(peak.start.contains(&ids[0]), "{}", peak.start);
    let probes = &back.cells[1..];
    assert!(!probes.is_empty());
    let mut verdicts = Vec::new();
    for (n, probe) in probes.iter().enumerate() {
        assert_eq!(
            probe.status,
            chipbench_core::result::Status::Ok,
            "{probe:?}"
        );
        let s = probe.scenario_run.as_ref().unwrap();
        let qps = s.target_qps.unwrap();
        assert_eq!(
            probe.scenario_point.as_deref(),
            Some(format!("c1-peak1-p{}-q{qps}", n + 1).as_str())
        );
        verdicts.push((qps, s.verdict.as_ref().unwrap().valid));
    }
    assert_eq!(peak.start_qps, Some(verdicts[0].0));
    // The peak is the highest VALID probe, the first INVALID above it the lowest INVALID one.
    let highest_valid = verdicts
        .iter()
        .filter(|v| v.1)
        .map(|v| v.0)
        .reduce(f64::max);
    let lowest_invalid = verdicts
        .iter()
        .filter(|v| !v.1 && highest_valid.is_none_or(|h| v.0 > h))
        .map(|v| v.0)
        .reduce(f64::min);
    assert_eq!(
        (peak.valid_qps, peak.invalid_qps),
        (highest_valid, lowest_invalid)
    );
    match (peak.converged, peak.valid_qps, peak.invalid_qps) {
        (true, Some(lo), Some(hi)) => assert!((hi - lo) / lo <= 0.1, "{peak:?}"),
        (false, _, _) => assert!(peak.stopped.is_some(), "{peak:?}"),
        _ => panic!("converged without a bracket: {peak:?}"),
    }
    // The reports show it.
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(
        report.contains("## Peak QPS under the latency bound"),
        "{report}"
    );
}
