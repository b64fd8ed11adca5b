//! End-to-end tests of the `chipbench` binary: the README's main command (in its --quick form),
//! the result schema, and bad input that must fail only its own cell.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::{bench, chipbench, validate};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn cells(run: &Value) -> &Vec<Value> {
    run["cells"].as_array().expect("cells")
}

fn cell<'a>(run: &'a Value, model: &str, backend: &str) -> &'a Value {
    cells(run)
        .iter()
        .find(|c| c["model"]["name"] == model && c["backend"]["name"] == backend)
        .unwrap_or_else(|| panic!("no cell for {model} on {backend}"))
}

/// The README's main job, in its --quick form: every suite model on every available backend,
/// all ok, with a schema-valid run.json, report.md and cells.jsonl in the run folder.
#[test]
fn the_main_job_runs_the_whole_suite() {
    let (code, run, out) = bench(&[]);
    validate(&run);
    let names: Vec<&str> = cells(&run)
        .iter()
        .map(|c| c["model"]["name"].as_str().unwrap())
        .collect();
    for model in ["mlp", "mobilenet-v2-0.5", "resnet-mini", "bert-tiny"] {
        assert!(names.contains(&model), "{model} missing from {names:?}");
        let c = cell(&run, model, "tract");
        assert_eq!(c["status"], "ok", "{model} on tract: {}", c["error"]);
        let latency = &c["latency_ms"];
        assert!(latency["p50"].as_f64().unwrap() > 0.0);
        assert!(latency["median_ci95"][0].as_f64().unwrap() <= latency["p50"].as_f64().unwrap());
        assert!(
            c["samples_ms"].as_array().unwrap().len() >= 20,
            "--quick still runs 20 iterations"
        );
        assert!(c["cpu_ms_per_inference"].as_f64().unwrap() > 0.0);
        assert!(c["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
        assert!(c["model"]["macs"].as_u64().unwrap() > 0);
        assert_eq!(
            c["backend"]["threads"].as_u64(),
            run["config"]["threads"].as_u64()
        );
        // The reference is the fp32 model on tract itself: it must agree with itself exactly.
        assert_eq!(
            c["accuracy"]["max_abs_err"].as_f64(),
            Some(0.0),
            "{model}: {}",
            c["accuracy"]
        );
        for key in [
            "latency_ms",
            "cpu_ms_per_inference",
            "peak_rss_bytes",
            "throughput_per_s",
            "accuracy",
        ] {
            assert!(
                c["provenance"][key].is_string(),
                "{model}: no provenance for {key}"
            );
        }
    }
    assert_eq!(code, 0, "every cell ran");
    for file in ["run.json", "report.md", "cells.jsonl"] {
        assert!(out.path().join(file).is_file(), "{file} missing");
    }
    let journal = std::fs::read_to_string(out.path().join("cells.jsonl")).unwrap();
    assert_eq!(
        journal.lines().count(),
        cells(&run).len(),
        "one journal line per cell"
    );
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("run.json")).unwrap()).unwrap();
    assert_eq!(on_disk, run, "--json prints exactly what run.json holds");
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(report.contains("| mobilenet-v2-0.5 |"), "{report}");
}

#[test]
fn a_corrupt_model_fails_only_its_own_cell() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(models_dir().join("mlp.onnx")).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"this is not a protobuf message at all").unwrap();
    let missing = dir.path().join("missing.onnx");
    let (code, run, _out) = bench(&[
        "--backend",
        "tract",
        "--model",
        "mlp",
        "--model",
        truncated.to_str().unwrap(),
        "--model",
        garbage.to_str().unwrap(),
        "--model",
        missing.to_str().unwrap(),
    ]);
    validate(&run);
    assert_eq!(code, 1, "some cells failed");
    assert_eq!(cell(&run, "mlp", "tract")["status"], "ok");
    for (name, path) in [
        ("truncated", &truncated),
        ("garbage", &garbage),
        ("missing", &missing),
    ] {
        let c = cell(&run, name, "tract");
        assert_eq!(c["status"], "failed");
        let error = c["error"].as_str().unwrap();
        assert!(
            error.contains(path.to_str().unwrap()),
            "the error names the file: {error}"
        );
        assert_eq!(error.lines().count(), 1, "one line: {error}");
    }
    // The cause once, not "...(os error 2): No such file or directory (os error 2)".
    let error = cell(&run, "missing", "tract")["error"].as_str().unwrap();
    assert_eq!(error.matches("os error 2").count(), 1, "{error}");
}

#[test]
fn an_unsupported_operator_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frobnicate.onnx");
    chipbench_optimize::model::save(&chipbench_optimize::fixtures::custom_op(), &path).unwrap();
    let (code, run, _out) = bench(&[
        "--backend",
        "tract",
        "--model",
        "mlp",
        "--model",
        path.to_str().unwrap(),
        "--dim",
        "batch=1",
    ]);
    assert_eq!(code, 1);
    assert_eq!(cell(&run, "mlp", "tract")["status"], "ok");
    let error = cell(&run, "frobnicate", "tract")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("Frobnicate") && error.contains("frobnicate.onnx"),
        "{error}"
    );
}

#[test]
fn a_wrong_input_shape_fails_its_cell_with_the_reason() {
    let (code, run, _out) = bench(&[
        "--backend",
        "tract",
        "--model",
        "mlp",
        "--input",
        "input:1x100",
    ]);
    assert_eq!(code, 1);
    let error = cell(&run, "mlp", "tract")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("mlp.onnx") && error.contains("784") && error.contains("1x100"),
        "{error}"
    );
}

#[test]
fn a_user_model_with_dynamic_dims_needs_and_takes_a_shape() {
    let mlp = models_dir().join("mlp.onnx");
    let mlp = mlp.to_str().unwrap();
    // The file declares [batch, 784]: without a binding its cell says how to give one.
    let (code, run, _out) = bench(&["--backend", "tract", "--model", mlp]);
    assert_eq!(code, 1);
    let error = cell(&run, "mlp", "tract")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("--dim batch=N"), "{error}");
    let (code, run, _out) = bench(&[
        "--backend",
        "tract",
        "--model",
        mlp,
        "--input",
        "input:4x784:f32",
    ]);
    assert_eq!(code, 0, "{}", run);
    let c = cell(&run, "mlp", "tract");
    assert_eq!(c["inputs"][0]["shape"], serde_json::json!([4, 784]));
    let (code, _, _out) = bench(&["--backend", "tract", "--model", mlp, "--dim", "batch=2"]);
    assert_eq!(code, 0);
}

#[test]
fn user_inputs_from_npy_files_are_used() {
    use ndarray_npy::WriteNpyExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let zeros = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[1, 784]));
    zeros
        .write_npy(std::fs::File::create(&path).unwrap())
        .unwrap();
    let arg = format!("input={}", path.display());
    let (code, run, _out) = bench(&["--backend", "tract", "--model", "mlp", "--input-file", &arg]);
    assert_eq!(code, 0, "{run}");
    // A wrong shape in the file fails the cell, naming the input.
    let bad = dir.path().join("bad.npy");
    ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[1, 10]))
        .write_npy(std::fs::File::create(&bad).unwrap())
        .unwrap();
    let arg = format!("input={}", bad.display());
    let (code, run, _out) = bench(&["--backend", "tract", "--model", "mlp", "--input-file", &arg]);
    assert_eq!(code, 1);
    let error = cell(&run, "mlp", "tract")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("input 'input'") && error.contains("1x784"),
        "{error}"
    );
}

#[test]
fn thread_counts_are_cells_and_reported() {
    let (code, run, _out) = bench(&["--backend", "tract", "--model", "mlp", "--threads", "1,2"]);
    assert_eq!(code, 0);
    let threads: Vec<u64> = cells(&run)
        .iter()
        .map(|c| c["backend"]["threads"].as_u64().unwrap())
        .collect();
    assert_eq!(threads, vec![1, 2]);
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        vec!["bench", "--backend", "nonexistent", "--no-history"],
        vec!["bench", "--model", "no-such-suite-model"],
        vec!["bench", "--dim", "batch"],
        vec!["bench", "--input", "x"],
        vec!["bench", "--min-duration", "soon"],
        vec!["bench", "--threads", "0"],
    ] {
        let o = chipbench(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("error"), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
}

#[test]
fn models_lists_the_suite_with_sizes() {
    let o = chipbench(&["models"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for model in ["mlp", "mobilenet-v2-0.5", "resnet-mini", "bert-tiny"] {
        assert!(text.contains(model), "{text}");
    }
    // mlp: 784*512+512 + 512*256+256 + 256*10+10 parameters.
    assert!(text.contains("535.8k"), "{text}");
}

#[test]
fn backends_lists_tract() {
    let o = chipbench(&["backends"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("tract:cpu"), "{}", stdout(&o));
}

/// Ctrl-C ends the cell in flight, keeps its samples, skips the rest and still writes run.json.
#[test]
fn ctrl_c_keeps_what_was_measured() {
    let out = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_chipbench"))
        .args([
            "bench",
            "--backend",
            "tract",
            "--model",
            "resnet-mini",
            "--model",
            "mlp",
            "--quiet",
            "--no-history",
        ])
        .args([
            "--min-duration",
            "60s",
            "--max-duration",
            "60s",
            "--out",
            out.path().to_str().unwrap(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .spawn()
        .unwrap();
    // Wait until the first cell is in its timed loop (load + warm-up take well under a second).
    std::thread::sleep(std::time::Duration::from_secs(3));
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(130));
    let run: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("run.json")).unwrap()).unwrap();
    validate(&run);
    assert_eq!(run["interrupted"], true);
    assert_eq!(cells(&run).len(), 1, "the second model was not started");
    let c = &cells(&run)[0];
    assert_eq!(c["status"], "ok");
    assert_eq!(c["stop_reason"], "interrupted");
    assert!(c["samples_ms"].as_array().unwrap().len() > 10);
}

/// The README's main command itself (`scripts/bench.sh`), with the binary these tests built
/// (`CHIPBENCH_BIN`: cargo would rebuild it without the test features); with an ONNX Runtime
/// library installed as CI installs it (or required), it compares at least tract and ort.
#[test]
fn the_readme_main_command_compares_two_engines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = Command::new(root.join("scripts/bench.sh"))
        .env("CHIPBENCH_BIN", env!("CARGO_BIN_EXE_chipbench"))
        .args([
            "--quick",
            "--quiet",
            "--no-history",
            "-m",
            "mlp",
            "--sessions",
            "1",
        ])
        .arg("--out")
        .arg(&out)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    validate(&run);
    assert_eq!(cell(&run, "mlp", "tract")["status"], "ok");
    let ort_expected = std::env::var_os("CHIPBENCH_REQUIRE_ORT").is_some()
        || root.join(".ort/cpu").is_dir()
        || std::env::var_os("ORT_DYLIB_PATH").is_some();
    if ort_expected {
        assert_eq!(cell(&run, "mlp", "ort")["status"], "ok", "{}", stderr(&o));
    } else {
        eprintln!("SKIPPED the ort half: no ONNX Runtime library installed here");
    }
}

/// `--profile` was renamed `--operator-times` ("profile" is the edge device profile); the old
/// name still works and says the new one.
#[test]
fn the_old_profile_option_works_and_names_the_new_one() {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_chipbench"))
        .args([
            "bench",
            "--profile",
            "--quick",
            "--no-history",
            "--sessions",
            "1",
        ])
        .args([
            "-m",
            "mlp",
            "-b",
            "tract",
            "--accuracy-samples",
            "0",
            "--out",
        ])
        .arg(out.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("note: --profile is now called --operator-times"),
        "{}",
        stderr(&o)
    );
}

/// A valid model whose input is declared `float[1, 2147483648]` (8 GiB, a typo'd shape or a
/// hostile file): its cells fail at once with the figures, the other model's cells run, and no
/// process of the run comes near allocating it.
#[test]
fn an_8_gib_input_fails_its_cells_at_once_and_the_run_goes_on() {
    use chipbench_optimize::builder::GraphBuilder;
    use chipbench_optimize::onnx::DataType;
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge_input.onnx");
    let mut g = GraphBuilder::new("huge_input");
    g.input("x", DataType::Float, &["1", "2147483648"]);
    g.node("Relu", "y", &["x"], vec![]);
    g.output("y", DataType::Float, &["1", "2147483648"]);
    chipbench_optimize::model::save(&g.into_model().unwrap(), &huge).unwrap();

    let started = std::time::Instant::now();
    let (code, run, _out) = bench(&[
        "--backend",
        "tract",
        "--model",
        "mlp",
        "--model",
        huge.to_str().unwrap(),
        "--sessions",
        "1",
    ]);
    validate(&run);
    assert_eq!(code, 1, "a cell failed");
    assert_eq!(cell(&run, "mlp", "tract")["status"], "ok");
    let c = cell(&run, "huge_input", "tract");
    assert_eq!(c["status"], "failed");
    let error = c["error"].as_str().unwrap();
    assert!(
        error.contains("input 'x' is 8.0 GiB; the cell needs at least")
            && error.contains("set --memory-cap to change it"),
        "{error}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(120),
        "the refusal comes before any allocation, not after a long one"
    );
    // The largest resident set of any process this test binary has waited for (the run and its
    // cells' processes; the other tests here run small models).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    let peak_kib = usage.ru_maxrss as u64;
    assert!(
        peak_kib < 1 << 20,
        "a process of the run reached {peak_kib} KiB"
    );
}
