//! End-to-end tests of the ONNX Runtime backend through the `chipbench` binary: the discovery
//! steps of `chipbench backends`, `--backend ort:cpu` with `--profile` (the old name of `--operator-times`) and `--set`, a provider the
//! library lacks as a skipped cell, and a bad `--set` as a usage error. Skipped (with the reason)
//! when no ONNX Runtime library is installed, unless CHIPBENCH_REQUIRE_ORT=1.

use serde_json::Value;

mod common;
use common::chipbench;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `ort` entry of `chipbench backends --json` when the backend is available.
fn ort_or_skip() -> Option<Value> {
    let o = chipbench(&["backends", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ort = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "ort")
        .expect("ort is registered")
        .clone();
    if ort["available"] == true {
        return Some(ort);
    }
    let reason = ort["reason"].as_str().unwrap_or_default();
    if std::env::var("CHIPBENCH_REQUIRE_ORT").as_deref() == Ok("1") {
        panic!("CHIPBENCH_REQUIRE_ORT=1 but ort is unavailable: {reason}");
    }
    eprintln!("skipped: ort is unavailable here: {reason}");
    None
}

#[test]
fn backends_shows_every_discovery_step() {
    let Some(ort) = ort_or_skip() else { return };
    let steps: Vec<&str> = ort["discovery"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(steps[0].starts_with("1. "), "{steps:?}");
    assert!(
        steps[1].starts_with("2. project-local copy (scripts/setup-ort.sh): "),
        "{steps:?}"
    );
    assert!(
        steps[2].starts_with("3. python3's onnxruntime package"),
        "{steps:?}"
    );
    assert!(steps[3].starts_with("using "), "{steps:?}");
    let o = chipbench(&["backends"]);
    let listing = text(&o.stdout);
    assert!(
        listing.contains("  ort:cpu  CPUExecutionProvider [CPU]"),
        "{listing}"
    );
    assert!(listing.contains("  discovery:\n    1. "), "{listing}");

    let o = chipbench(&["backends", "--ort-lib", "/nonexistent/libonnxruntime.so"]);
    let listing = text(&o.stdout);
    assert!(o.status.success());
    assert!(
        listing.contains("unavailable: /nonexistent/libonnxruntime.so: no such file"),
        "{listing}"
    );
    assert!(
        listing.contains("    1. --ort-lib: /nonexistent/libonnxruntime.so"),
        "{listing}"
    );
}

#[test]
fn an_ort_cell_records_profile_settings_and_placement_and_a_missing_provider_is_skipped() {
    let Some(_) = ort_or_skip() else { return };
    let out = tempfile::tempdir().unwrap();
    let o = chipbench(&[
        "bench",
        "--quick",
        "--json",
        "--quiet",
        "--out",
        out.path().to_str().unwrap(),
        "--model",
        "mlp",
        "--backend",
        "ort:cpu",
        "--backend",
        "ort:cuda",
        "--backend",
        "ort:nosuch",
        "--threads",
        "2",
        "--profile",
        "--set",
        "ort.spinning=off",
        "--set",
        "ort.opt_level=extended",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let run: Value = serde_json::from_slice(&o.stdout).unwrap();
    common::validate(&run);

    let cells = run["cells"].as_array().unwrap();
    let cpu = cells
        .iter()
        .find(|c| c["backend"]["device"] == "cpu")
        .expect("the ort:cpu cell");
    assert_eq!(cpu["status"], "ok", "{}", cpu["error"]);
    assert_eq!(cpu["backend"]["threads"], 2);
    assert_eq!(cpu["backend"]["settings"]["ort.spinning"], "off");
    assert_eq!(cpu["backend"]["settings"]["ort.opt_level"], "extended");
    assert_eq!(
        cpu["backend"]["settings"]["ort.worker_threads_started"],
        "1"
    );
    assert_eq!(cpu["placement"][0]["provider"], "CPUExecutionProvider");
    let top = cpu["profile"]["top_operators"].as_array().unwrap();
    assert!(
        !top.is_empty() && top[0]["total_ms"].as_f64().unwrap() > 0.0,
        "{}",
        cpu["profile"]
    );
    assert!(cpu["accuracy"]["cosine"].as_f64().unwrap() >= 0.99999);

    // A CPU-only library (or a GPU build where CUDA cannot load) has no usable CUDA provider:
    // the cell is skipped with that reason, never run on the CPU provider instead.
    let cuda = cells
        .iter()
        .find(|c| c["backend"]["device"] == "cuda")
        .expect("the ort:cuda cell");
    if cuda["status"] != "ok" {
        assert_eq!(cuda["status"], "skipped");
        assert!(
            cuda["error"]
                .as_str()
                .unwrap()
                .contains("CUDAExecutionProvider"),
            "{}",
            cuda["error"]
        );
    }
    let missing = cells
        .iter()
        .find(|c| c["backend"]["device"] == "nosuch")
        .expect("the ort:nosuch cell");
    assert_eq!(missing["status"], "skipped");
    let reason = missing["error"].as_str().unwrap();
    assert!(
        reason.starts_with("unknown execution provider 'nosuch' (known: cpu, cuda"),
        "{reason}"
    );
}

#[test]
fn a_bad_ort_setting_is_a_usage_error_before_anything_runs() {
    let Some(_) = ort_or_skip() else { return };
    let o = chipbench(&[
        "bench",
        "--quick",
        "--model",
        "mlp",
        "--set",
        "ort.arena=maybe",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("--set ort.arena: 'maybe': expected on or off"),
        "{}",
        text(&o.stderr)
    );
    let o = chipbench(&["bench", "--help"]);
    let help = text(&o.stdout);
    for key in [
        "ort.inter_threads",
        "ort.execution_mode",
        "ort.opt_level",
        "ort.spinning",
        "ort.arena",
    ] {
        assert!(help.contains(key), "--help lacks {key}");
    }
    assert!(
        help.contains("--ort-lib") && help.contains("--operator-times"),
        "{help}"
    );
}

/// A model tract cannot run (tract 0.23 has no ONNX `Loop`) still gets accuracy: ONNX Runtime's
/// CPU provider computes the reference, and the provenance says so and why.
#[test]
fn a_model_tract_cannot_run_is_checked_against_ort_cpu() {
    if ort_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("loop.onnx");
    chipbench_optimize::model::save(&chipbench_optimize::fixtures::loop_model(), &model).unwrap();
    let out = dir.path().join("run");
    let o = chipbench(&[
        "bench",
        "--quick",
        "--quiet",
        "--json",
        "--no-history",
        "--sessions",
        "1",
        "--accuracy-samples",
        "2",
        "-b",
        "ort",
        "--dim",
        "batch=2",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let run: Value = serde_json::from_slice(&o.stdout).unwrap();
    common::validate(&run);
    let cell = &run["cells"][0];
    assert_eq!(cell["status"], "ok", "{cell}");
    // The same engine and inputs on both sides: the outputs agree exactly.
    assert_eq!(
        cell["accuracy"]["max_abs_err"].as_f64(),
        Some(0.0),
        "{cell}"
    );
    let how = cell["provenance"]["accuracy"].as_str().unwrap();
    assert!(
        how.contains("ort:cpu fp32 (fallback reference: tract:cpu could not run it")
            && how.contains("Loop"),
        "{how}"
    );
}

/// An `Expand` of one float to 1x100000x100000 (40 GB): ONNX Runtime refuses the allocation
/// and logs it. Its error must be the cell's, once, and none of its log lines may reach the
/// terminal raw (measured in-process, so that ONNX Runtime runs in the process whose stderr
/// the user sees).
#[test]
fn onnx_runtime_errors_reach_the_cell_and_not_the_terminal() {
    use chipbench_optimize::builder::GraphBuilder;
    use chipbench_optimize::onnx::{DataType, TensorProto};
    if ort_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("expand_bomb.onnx");
    let mut g = GraphBuilder::new("expand_bomb");
    g.input("x", DataType::Float, &["1", "1", "1"]);
    let shape: Vec<u8> = [1i64, 100_000, 100_000]
        .iter()
        .flat_map(|d| d.to_le_bytes())
        .collect();
    let shape = g.initializer(TensorProto::from_raw("shape", DataType::Int64, &[3], shape));
    g.node("Expand", "y", &["x", &shape], vec![]);
    g.output("y", DataType::Float, &["1", "100000", "100000"]);
    chipbench_optimize::model::save(&g.into_model().unwrap(), &model).unwrap();

    let out = dir.path().join("run");
    let o = chipbench(&[
        "bench",
        "--quick",
        "--json",
        "--no-history",
        "--in-process",
        "--sessions",
        "1",
        "--accuracy-samples",
        "0",
        // Past chipbench's own estimate (which refuses the 40 GB output before it runs): the
        // point here is ONNX Runtime's error.
        "--memory-cap",
        "1024GiB",
        "-b",
        "ort:cpu",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = text(&o.stderr);
    let run: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o.stdout)));
    common::validate(&run);
    let cell = &run["cells"][0];
    assert_eq!(cell["status"], "failed", "{cell}");
    let error = cell["error"].as_str().unwrap();
    // ONNX Runtime's cause, once, without its source locations.
    assert!(
        error.contains("Expand node")
            && error.contains("Failed to allocate memory")
            && !error.contains("onnxruntime_src"),
        "{error}"
    );
    assert_eq!(
        error.matches("Failed to allocate memory").count(),
        1,
        "{error}"
    );
    // Its own log lines look like `2026-12-05 03:40:00.1 [E:onnxruntime:chipbench, ...]`.
    assert!(
        !stderr.contains(":onnxruntime:"),
        "ONNX Runtime's log reached the terminal:\n{stderr}"
    );
}
