//! `bench --resume`: a run killed with SIGKILL in the middle continues from its plan and
//! journal, and a plan whose models changed on disk is refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::validate;

fn chipbench() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chipbench"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn journaled(dir: &Path) -> usize {
    complete_lines(dir).len()
}

/// The journal's complete lines: a kill can land while a line is being written, and the resume
/// drops such a last piece.
fn complete_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("cells.jsonl"))
        .map(|t| {
            t.split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .map(|l| l.trim_end().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_killed_run_resumes_with_every_planned_cell_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let models = ["mlp", "resnet-mini", "bert-tiny", "mobilenet-v2-0.5"];
    let mut parent = chipbench()
        .args([
            "bench",
            "--quick",
            "--quiet",
            "--no-history",
            "--sessions",
            "2",
        ])
        .args(["-b", "tract", "--threads", "1", "--accuracy-samples", "1"])
        .args(models.iter().flat_map(|m| ["-m", m]))
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while journaled(&out) < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no cell was journaled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    parent.kill().unwrap();
    parent.wait().unwrap();
    let before = journaled(&out);
    assert!(before < models.len(), "the run ended before the kill");
    assert!(!out.join("run.json").exists());

    let o = chipbench()
        .args(["bench", "--resume"])
        .arg(&out)
        .args(["--quiet", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run: Value = serde_json::from_slice(&o.stdout).unwrap();
    validate(&run);
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(run["run_id"], plan["run_id"]);
    let cells = run["cells"].as_array().unwrap();
    let names: Vec<&str> = cells
        .iter()
        .map(|c| c["model"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names, models,
        "every planned cell once, in the plan's order"
    );
    for (i, cell) in cells.iter().enumerate() {
        assert_eq!(cell["status"], "ok", "{cell}");
        // Cells journaled before the kill are kept as they were; the others are marked.
        assert_eq!(
            cell["resumed"].as_bool().unwrap_or(false),
            i >= before,
            "{i}: {cell}"
        );
        // The further sessions ran for the kept cells too.
        assert_eq!(
            cell["session_p50_ms"].as_array().unwrap().len(),
            2,
            "{cell}"
        );
    }
    assert_eq!(journaled(&out), models.len());
}

#[test]
fn a_plan_whose_model_changed_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = tmp.path().join("m.onnx");
    std::fs::copy(root.join("models/mlp.onnx"), &model).unwrap();
    let out = tmp.path().join("run");
    let o = chipbench()
        .args([
            "bench",
            "--quick",
            "--quiet",
            "--no-history",
            "--sessions",
            "1",
            "-b",
            "tract",
        ])
        .args(["--dim", "batch=1", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::copy(root.join("models/resnet-mini.onnx"), &model).unwrap();
    let o = chipbench()
        .args(["bench", "--resume"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("changed on disk") && err.contains("m.onnx"),
        "{err}"
    );
}

/// A `--find-peak` run killed after its first probes resumes the search: the journaled probes
/// are replayed into it (kept as they were), the rest measured, and the search recorded once
/// with every cell it ran.
#[test]
fn a_killed_peak_search_resumes_from_its_journaled_probes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut parent = chipbench()
        .args(["bench", "--quick", "--quiet", "--no-history"])
        .args(["-m", "mlp", "-b", "tract", "--threads", "1"])
        .args([
            "--scenario",
            "server",
            "--find-peak",
            "--target-qps",
            "1000",
        ])
        .args(["--latency-bound", "p99=20ms", "--peak-tolerance", "20"])
        .args(["--min-query-duration", "0.3s"])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while journaled(&out) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no probe was journaled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    parent.kill().unwrap();
    parent.wait().unwrap();
    assert!(
        !out.join("run.json").exists(),
        "the run ended before the kill"
    );
    let before = journaled(&out);
    let kept: Vec<Value> = complete_lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let o = chipbench()
        .args(["bench", "--resume"])
        .arg(&out)
        .args(["--quiet", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run: Value = serde_json::from_slice(&o.stdout).unwrap();
    validate(&run);
    let cells = run["cells"].as_array().unwrap();
    assert!(cells.len() >= before, "{}", cells.len());
    for (i, cell) in cells.iter().enumerate() {
        assert_eq!(cell["status"], "ok", "{cell}");
        assert_eq!(
            cell["scenario_point"].as_str().unwrap(),
            format!(
                "c1-peak1-p{}-q{}",
                i + 1,
                cell["scenario_run"]["target_qps"].as_f64().unwrap()
            )
        );
        if i < before {
            assert_eq!(cell, &kept[i], "a journaled probe is kept as it was");
        } else {
            assert_eq!(cell["resumed"], true, "{cell}");
        }
    }
    let peaks = run["peaks"].as_array().unwrap();
    assert_eq!(peaks.len(), 1);
    assert_eq!(peaks[0]["cells"].as_array().unwrap().len(), cells.len());
    assert_eq!(peaks[0]["start_qps"], 1000.0);
    assert_eq!(journaled(&out), cells.len());
}
