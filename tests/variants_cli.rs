//! `chipbench optimize` and `chipbench bench --variant`: what they print, what they record, and
//! the variant cache that saves a second run the work.

use std::path::Path;
use std::process::Command;

mod common;

fn chipbench(args: &[&str], cwd: &Path) -> (bool, String, String) {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let out = Command::new(env!("CARGO_BIN_EXE_chipbench"))
        .args(args)
        .arg("--suite")
        .arg(&models)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn optimize_prints_sizes_sparsity_counts_and_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = chipbench(
        &[
            "optimize",
            "resnet-mini",
            "--variant",
            "prune-2:4+int8-static",
            "-o",
            "v.onnx",
        ],
        dir.path(),
    );
    assert!(ok, "{stderr}");
    for expected in [
        "file size",
        "weight bytes",
        "params",
        "MACs",
        "sparsity",
        "kept in float: stem (Conv)",
        "cosine",
        "top-1 agreement",
    ] {
        assert!(
            stdout.contains(expected),
            "missing '{expected}' in:\n{stdout}"
        );
    }
    assert!(dir.path().join("v.onnx").is_file());

    let (ok, _, stderr) = chipbench(
        &[
            "optimize",
            "resnet-mini",
            "--variant",
            "int8",
            "-o",
            "v.onnx",
        ],
        dir.path(),
    );
    assert!(!ok && stderr.contains("unknown variant 'int8'"), "{stderr}");
    let (ok, _, stderr) = chipbench(
        &[
            "optimize",
            "resnet-mini",
            "--variant",
            "int8-static",
            "--calibration",
            "none.npz",
            "-o",
            "v.onnx",
        ],
        dir.path(),
    );
    assert!(!ok && stderr.contains("none.npz"), "{stderr}");

    // --keep-float none: every layer in int8, the policy said in the output.
    let (ok, stdout, stderr) = chipbench(
        &[
            "optimize",
            "mlp",
            "--variant",
            "int8-static",
            "--keep-float",
            "none",
            "-o",
            "v.onnx",
        ],
        dir.path(),
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("kept in float by policy none") && !stdout.contains("kept in float:"),
        "{stdout}"
    );
    let (ok, _, stderr) = chipbench(
        &[
            "optimize",
            "mlp",
            "--variant",
            "int8-static",
            "--keep-float",
            "most",
            "-o",
            "v.onnx",
        ],
        dir.path(),
    );
    assert!(
        !ok && stderr.contains("unknown float-keeping policy 'most'")
            && stderr.contains("first-last"),
        "{stderr}"
    );
}

#[test]
fn bench_measures_variants_against_fp32_and_reuses_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "-m",
        "mlp",
        "--backend",
        "tract",
        "--variant",
        "fp32,int8-static,prune-channels:0.3",
        "--quick",
        "--variant-cache",
        "cache",
        "--out",
        "run",
    ];
    let (ok, stdout, stderr) = chipbench(&args, dir.path());
    assert!(ok, "{stderr}");
    assert!(stderr.contains("derived mlp int8-static"), "{stderr}");
    assert!(
        stdout.contains("mlp int8-static on tract:cpu: cosine"),
        "{stdout}"
    );
    assert!(stdout.contains("top-1 agreement"), "{stdout}");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/run.json")).unwrap())
            .unwrap();
    assert_eq!(
        run["config"]["variants"],
        serde_json::json!(["fp32", "int8-static", "prune-channels:0.3"])
    );
    let cells = run["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3);
    let int8 = &cells[1];
    assert_eq!(int8["model"]["recipe"], "int8-static");
    assert_eq!(
        int8["model"]["derivation"]["kept_float"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "the first and last layers"
    );
    assert_eq!(int8["model"]["derivation"]["keep_float"], "auto");
    assert!(int8["accuracy"]["cosine"].as_f64().unwrap() > 0.99);
    assert!(
        int8["accuracy"]["reference"]
            .as_str()
            .unwrap()
            .contains("fp32")
    );
    let pruned = &cells[2]["model"];
    assert!(pruned["params"].as_u64() < cells[0]["model"]["params"].as_u64());
    common::validate(&run);

    let (ok, _, stderr) = chipbench(&args, dir.path());
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("reusing cached mlp int8-static"),
        "{stderr}"
    );

    // Another float-keeping policy is another variant, and the run records it.
    let none = [
        "bench",
        "-m",
        "mlp",
        "--backend",
        "tract",
        "--variant",
        "int8-static",
        "--keep-float",
        "none",
        "--quick",
        "--variant-cache",
        "cache",
        "--out",
        "run-none",
    ];
    let (ok, _, stderr) = chipbench(&none, dir.path());
    assert!(ok, "{stderr}");
    assert!(stderr.contains("derived mlp int8-static"), "{stderr}");
    let run: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run-none/run.json")).unwrap(),
    )
    .unwrap();
    let derivation = &run["cells"][0]["model"]["derivation"];
    assert_eq!(derivation["keep_float"], "none");
    assert_eq!(derivation["kept_float"], serde_json::json!([]));
    common::validate(&run);
}

/// A model file given by path has no suite dims: the error suggests `--dim` and `--input`, and
/// `optimize` takes both (it once suggested an `--input` it did not have).
#[test]
fn optimize_takes_the_input_options_its_errors_suggest() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mobilenet-v2-0.5.onnx");
    let model = model.to_str().unwrap();
    let base = ["optimize", model, "--variant", "prune-2:4", "-o", "v.onnx"];
    let (ok, _, stderr) = chipbench(&base, dir.path());
    assert!(
        !ok && stderr.contains("--dim batch=N") && stderr.contains("--input"),
        "{stderr}"
    );
    let with = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        chipbench(&args, dir.path())
    };
    let (ok, _, stderr) = with(&["--input", "input:1x3x224x224", "--accuracy-samples", "1"]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = with(&["--dim", "batch=1", "--accuracy-samples", "1"]);
    assert!(ok, "{stderr}");
    assert!(dir.path().join("v.onnx").is_file());
}

/// A weight-only variant takes the representation each backend runs: MatMulNBits (packed, the
/// smaller file) on ONNX Runtime, DequantizeLinear on tract, each a file of its own and each
/// recorded in its cells. A representation the recipe names goes to every backend, and where the
/// engine cannot run it the cell fails with the engine's reason (tract's MatMulNBits reads 2 and
/// 4 bits, not 8).
#[test]
fn weight_only_variants_take_the_representation_each_backend_runs() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gpt-tiny.onnx");
    let mut args = vec![
        "bench",
        "-m",
        model.to_str().unwrap(),
        "--backend",
        "tract",
        "--variant",
        "int4-weight:b64:asym,int8-weight:nbits",
        "--quick",
        "--variant-cache",
        "cache",
        "--out",
        "run",
    ];
    let ort = common::backend_available("ort", "CHIPBENCH_REQUIRE_ORT");
    if ort {
        args.extend(["--backend", "ort:cpu"]);
    }
    let (_, stdout, stderr) = chipbench(&args, dir.path());
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/run.json")).unwrap())
            .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    common::validate(&run);
    let cells = run["cells"].as_array().unwrap();
    assert_eq!(cells.len(), if ort { 4 } else { 2 }, "{stdout}");
    let file = |c: &serde_json::Value| c["model"]["file_bytes"].as_u64().unwrap();
    let mut int4_files = Vec::new();
    for c in cells {
        let (variant, backend) = (
            c["model"]["variant"].as_str().unwrap(),
            c["backend"]["name"].as_str().unwrap(),
        );
        let label = format!("{variant} on {backend}");
        let derivation = &c["model"]["derivation"];
        let notes = derivation["notes"].to_string();
        match (variant, backend) {
            ("int4-weight:b64:asym", _) => {
                assert_eq!(c["status"], "ok", "{label}: {}", c["error"]);
                let (recipe, form) = if backend == "ort" {
                    ("int4-weight:b64:asym:nbits", "MatMulNBits")
                } else {
                    ("int4-weight:b64:asym:dq", "DequantizeLinear")
                };
                assert_eq!(c["model"]["recipe"], recipe, "{label}");
                assert!(notes.contains(form), "{label}: {notes}");
                assert!(notes.contains("blocks of 64"), "{label}: {notes}");
                assert!(notes.contains("zero point"), "{label}: {notes}");
                // Each file is for its backend alone when the run needs both.
                let only = if ort {
                    serde_json::json!([backend])
                } else {
                    serde_json::Value::Null
                };
                assert_eq!(derivation["backends"], only, "{label}");
                assert!(c["accuracy"]["cosine"].as_f64().unwrap() > 0.99, "{label}");
                int4_files.push((backend, file(c)));
            }
            ("int8-weight:nbits", "tract") => {
                assert_eq!(c["status"], "failed", "{label}");
                let error = c["error"].as_str().unwrap();
                assert!(error.contains("MatMulNBits"), "{label}: {error}");
            }
            ("int8-weight:nbits", "ort") => {
                assert_eq!(c["status"], "ok", "{label}: {}", c["error"]);
                assert_eq!(c["model"]["recipe"], "int8-weight:nbits");
                assert_eq!(derivation["backends"], serde_json::Value::Null);
            }
            other => panic!("unexpected cell {other:?}"),
        }
    }
    if let [("tract", dq), ("ort", nbits)] = int4_files[..] {
        assert!(nbits < dq, "packed {nbits} bytes, one level a byte {dq}");
    }
}
