//! `chipbench ab`, the paired A/B gate, end to end on tract: A against itself gives no
//! `regressed`; A against a model 50 % slower gives `regressed` and exit code 1; another build
//! of the same protocol runs as a worker, and one that speaks another protocol version runs as
//! whole `bench` processes, and the result says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use chipbench_optimize::builder::GraphBuilder;
use chipbench_optimize::onnx::DataType;
use serde_json::Value;

fn ab(args: &[&str], out: &Path) -> (i32, Value, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_chipbench"))
        .arg("ab")
        .args(args)
        .args(["--json", "--out"])
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let run: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    assert_eq!(run["schema"], "chipbench.ab/1");
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(out.join("ab.json")).unwrap()).unwrap();
    assert_eq!(on_disk, run, "--json prints what ab.json holds");
    (o.status.code().unwrap_or(-1), run, stderr)
}

/// A chain of `layers` 256x256 matrix products on a 16x256 input: its time follows `layers`.
fn chain(dir: &Path, layers: usize) -> PathBuf {
    let name = format!("chain{layers}");
    let mut g = GraphBuilder::new(&name);
    let mut x = g.input("x", DataType::Float, &["16", "256"]);
    let values: Vec<f32> = (0..256 * 256)
        .map(|i| ((i % 17) as f32 - 8.0) / 256.0)
        .collect();
    for l in 0..layers {
        let w = g.weight(&format!("w{l}"), &[256, 256], &values);
        x = g.node("MatMul", &format!("y{l}"), &[&x, &w], vec![]);
    }
    g.output(&x, DataType::Float, &["16", "256"]);
    let path = dir.join(format!("{name}.onnx"));
    chipbench_optimize::model::save(&g.into_model().unwrap(), &path).unwrap();
    path
}

fn cell(run: &Value) -> &Value {
    let cells = run["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 1, "{run}");
    &cells[0]
}

#[test]
fn a_against_itself_never_regresses_and_a_slower_b_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (chain(tmp.path(), 4), chain(tmp.path(), 6));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let quick = ["--rounds", "10", "--processes", "5", "--window", "50ms"];

    // At alpha 0.001 an unchanged pair of sides comes out regressed in well under 1 run in 1000
    // (the t test holds its level over process pairs; see gate::paired's tests).
    let (code, run, stderr) = ab(
        &[
            &["--a-model", a, "--b-model", a, "--alpha", "0.001"][..],
            &quick,
        ]
        .concat(),
        &tmp.path().join("aa"),
    );
    let c = cell(&run);
    assert!(c["error"].is_null(), "{c}");
    assert_eq!(c["rounds"].as_array().unwrap().len(), 10);
    let verdict = c["verdict"]["verdict"].as_str().unwrap();
    assert_ne!(verdict, "regressed", "A/A: {}", c["verdict"]);
    assert_eq!(code, 0, "{stderr}");
    for side in ["a", "b"] {
        assert_eq!(c[side]["mode"], "protocol");
    }

    let (code, run, stderr) = ab(
        &[&["--a-model", a, "--b-model", b][..], &quick].concat(),
        &tmp.path().join("ab"),
    );
    let c = cell(&run);
    assert_eq!(c["verdict"]["verdict"], "regressed", "{}", c["verdict"]);
    assert_eq!(code, 1, "{stderr}");
    let ratio = c["verdict"]["ratio"].as_f64().unwrap();
    // Two more layers of six: about 1.5; a loaded host squeezes or widens it, never to 1.2.
    assert!(ratio > 1.2 && ratio < 2.0, "{ratio}");
    let ci = &c["verdict"]["ci95"];
    assert!(ci[0].as_f64().unwrap() > 1.0, "{ci}");
    // Every round's pair is kept, each with its process pair, so the verdict can be checked.
    for r in c["rounds"].as_array().unwrap() {
        assert!(r["a_ms"].as_f64().unwrap() > 0.0 && r["b_ms"].as_f64().unwrap() > 0.0);
        assert!(r["process"].as_u64().unwrap() < 5);
    }
}

#[test]
fn another_build_runs_as_a_worker_or_else_as_whole_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let this = env!("CARGO_BIN_EXE_chipbench");
    let quick = ["--rounds", "5", "--processes", "5", "--window", "30ms"];
    let (code, run, stderr) = ab(
        &[&["-m", "mlp", "--a-bin", this, "--b-bin", this][..], &quick].concat(),
        &tmp.path().join("same"),
    );
    let c = cell(&run);
    assert_eq!(c["a"]["mode"], "protocol", "{c}");
    assert_eq!(c["b"]["mode"], "protocol", "{c}");
    assert_ne!(code, 2, "{stderr}");

    // A build whose worker announces protocol version 1: every round runs its `bench`.
    let stub = tmp.path().join("old-chipbench");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\nif [ \"$1\" = worker ]; then\n  echo '{{\"hello\":{{\"version\":1,\"tool_version\":\"0.0.1\"}}}}'\n  cat >/dev/null\n  exit 0\nfi\nexec '{this}' \"$@\"\n"
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&stub).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&stub, permissions).unwrap();
    let (_, run, stderr) = ab(
        &[
            &["-m", "mlp", "--b-bin", stub.to_str().unwrap()][..],
            &quick,
        ]
        .concat(),
        &tmp.path().join("old"),
    );
    let c = cell(&run);
    assert!(c["error"].is_null(), "{c}\n{stderr}");
    assert_eq!(c["a"]["mode"], "protocol");
    assert_eq!(c["b"]["mode"], "whole-process", "{c}");
    let why = c["b"]["mode_reason"].as_str().unwrap();
    assert!(why.contains("protocol version 1"), "{why}");
    assert_eq!(c["rounds"].as_array().unwrap().len(), 5);
    assert!(c["rounds"][0]["b_inferences"].as_u64().unwrap() > 0);
}

#[test]
fn bad_options_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, says) in [
        (vec!["--processes", "2"], "--processes 2"),
        (vec!["--rounds", "6", "--processes", "8"], "--rounds 6"),
        (vec!["--a-bin", "/no/such/chipbench"], "/no/such/chipbench"),
        (vec!["--a-ort-lib", "/no/such/lib.so"], "/no/such/lib.so"),
        (vec!["--b-set", "ort.opt_level=fastest"], "ort.opt_level"),
        (vec!["--a-set", "threads"], "expected KEY=VALUE"),
        (vec!["--b-variant", "int7"], "--variant"),
        (
            vec!["--b-variant", "prune-unstructured:0.1..0.3"],
            "one recipe each",
        ),
        (vec!["--b-threads", "0"], "--threads"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_chipbench"))
            .arg("ab")
            .args(&args)
            .arg("--out")
            .arg(tmp.path())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// `--duet`: both sides at once, each pinned to half of the CPUs (one each on a 2-CPU host);
/// every round pairs the same time slice. A host with one CPU cannot split and refuses.
#[test]
fn a_duet_runs_both_sides_at_once_on_cpus_of_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let args = [
        "-m",
        "mlp",
        "--duet",
        "--rounds",
        "5",
        "--processes",
        "5",
        "--window",
        "30ms",
    ];
    if cpus < 2 {
        let o = Command::new(env!("CARGO_BIN_EXE_chipbench"))
            .arg("ab")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        return;
    }
    let (code, run, stderr) = ab(&args, &tmp.path().join("duet"));
    assert_ne!(code, 2, "{stderr}");
    assert_eq!(run["settings"]["duet"], true);
    let c = cell(&run);
    assert!(c["error"].is_null(), "{c}");
    let rounds = c["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 5);
    assert!(
        rounds
            .iter()
            .all(|r| r["a_ms"].as_f64().unwrap() > 0.0 && r["b_ms"].as_f64().unwrap() > 0.0)
    );
    assert!(
        c["provenance"]["rounds"]
            .as_str()
            .unwrap()
            .contains("at the same time")
    );
}

/// Sides that differ in variant, threads and backend settings: side B's model is the variant
/// chipbench derived (a file of its own in the variant cache), and each side's record says what
/// its session ran with.
#[test]
fn sides_differ_by_variant_threads_and_backend_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("variants");
    let args = [
        "-m",
        "mlp",
        "--b-variant",
        "fp16",
        "--variant-cache",
        cache.to_str().unwrap(),
        "--set",
        "ort.spinning=on",
        "--b-set",
        "ort.spinning=off",
        "--b-threads",
        "2",
        "--rounds",
        "5",
        "--processes",
        "5",
        "--window",
        "20ms",
    ];
    let (code, run, stderr) = ab(&args, &tmp.path().join("sides"));
    assert_ne!(code, 2, "{stderr}");
    let c = cell(&run);
    assert!(c["error"].is_null(), "{c}");
    assert!(c["verdict"]["verdict"].is_string(), "{c}");
    let (a, b) = (&c["a"], &c["b"]);
    assert_eq!(a["variant"], "fp32");
    assert_eq!(b["variant"], "fp16");
    assert!(
        a["path"].as_str().unwrap().ends_with("models/mlp.onnx"),
        "{a}"
    );
    let derived = Path::new(b["path"].as_str().unwrap());
    assert!(derived.starts_with(&cache) && derived.is_file(), "{b}");
    assert_eq!(
        (a["threads"].as_u64(), b["threads"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        a["settings"]["ort.spinning"], "on",
        "--set reaches both sides"
    );
    assert_eq!(
        b["settings"]["ort.spinning"], "off",
        "--b-set overrides it on B"
    );
    for round in c["rounds"].as_array().unwrap() {
        assert!(round["a_inferences"].as_u64().unwrap() > 0, "{round}");
        assert!(round["b_inferences"].as_u64().unwrap() > 0, "{round}");
    }
}
