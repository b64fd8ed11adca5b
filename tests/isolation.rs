//! Cells in child processes of their own: an engine that aborts, segfaults or hangs costs its
//! own cell, never the run. The crashes are real signals in real children, provoked by a
//! backend that exists only in test builds (cargo feature `crash-test`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::validate;

/// Whether this build has the crash backend (scripts/test.sh builds it in; CI must have it).
fn crash_backend_or_skip() -> bool {
    let o = chipbench().args(["backends", "--json"]).output().unwrap();
    let listed = String::from_utf8_lossy(&o.stdout).contains("\"crash\"");
    if !listed {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs scripts/test.sh, which builds the crash backend in"
        );
        eprintln!("SKIPPED: this build has no crash backend (run scripts/test.sh)");
    }
    listed
}

fn chipbench() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chipbench"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CHIPBENCH_CRASH_BACKEND", "1");
    c
}

#[test]
fn a_crashing_or_hanging_cell_fails_alone() {
    if !crash_backend_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = chipbench()
        .args(["bench", "--quick", "--quiet", "--json", "--no-history"])
        .args(["--sessions", "1", "--accuracy-samples", "0", "-m", "mlp"])
        .args([
            "-b",
            "crash:abort",
            "-b",
            "crash:segfault",
            "-b",
            "crash:hang",
            "-b",
            "tract",
        ])
        .args(["--cell-timeout", "3s", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let run: Value = serde_json::from_slice(&o.stdout).unwrap();
    validate(&run);
    let cell = |device: &str| {
        run["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["backend"]["device"] == device)
            .unwrap_or_else(|| panic!("no cell on {device}: {run}"))
    };
    assert_eq!(
        cell("cpu")["status"],
        "ok",
        "the tract cell after the crashes"
    );
    for (device, expected) in [
        ("abort", "ended with signal 6 (SIGABRT) without a result"),
        (
            "segfault",
            "ended with signal 11 (SIGSEGV) without a result",
        ),
        ("hang", "timed out after 3s (--cell-timeout)"),
    ] {
        let c = cell(device);
        let error = c["error"].as_str().unwrap();
        assert_eq!(c["status"], "failed", "{c}");
        assert!(error.contains(expected), "{device}: {error}");
        if device != "hang" {
            // The last words of the child's stderr come with the signal.
            assert!(
                error.contains(&format!("crash backend: about to {device}")),
                "{error}"
            );
        }
    }
    // Every cell was journaled as it finished.
    let journal = std::fs::read_to_string(out.join("cells.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 4);
}

/// A child dies with its parent: `kill -9` of `bench` leaves no measuring process behind.
#[test]
fn a_killed_run_leaves_no_child_behind() {
    if !crash_backend_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = chipbench()
        .args([
            "bench",
            "--quick",
            "--quiet",
            "--no-history",
            "--sessions",
            "1",
        ])
        .args(["-m", "mlp", "-b", "crash:hang", "--out"])
        .arg(tmp.path().join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let parent_pid = parent.id();
    let child_of_parent = || -> Option<u32> {
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .find_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                // Field 4, after the parenthesised command name, is the parent's pid.
                let ppid: u32 = stat
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                let cmdline = std::fs::read_to_string(entry.path().join("cmdline")).ok()?;
                (ppid == parent_pid && cmdline.split('\0').nth(1) == Some("worker")).then_some(pid)
            })
    };
    let started = Instant::now();
    let child = loop {
        if let Some(pid) = child_of_parent() {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no worker child appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    parent.kill().unwrap();
    parent.wait().unwrap();
    let killed = Instant::now();
    while std::path::Path::new(&format!("/proc/{child}/cmdline")).exists()
        && std::fs::read_to_string(format!("/proc/{child}/cmdline")).is_ok_and(|c| !c.is_empty())
    {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the worker {child} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A model the memory estimate cannot see through: `Expand` to a shape given as an input's
/// value (1x60000x60000 floats, 14.4 GB), past a 1 GiB cap. Its process fails as out of memory
/// (a cgroup's OOM killer, or an allocation refused under RLIMIT_AS) and the other model's cell
/// in the same run is ok. On ONNX Runtime: tract refuses an `Expand` whose output rank it cannot
/// know before it runs.
#[test]
fn a_cell_that_grows_past_the_cap_fails_as_out_of_memory_alone() {
    if !common::backend_available("ort", "CHIPBENCH_REQUIRE_ORT") {
        return;
    }
    use chipbench_optimize::builder::GraphBuilder;
    use chipbench_optimize::onnx::DataType;
    use ndarray_npy::WriteNpyExt;
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("runtime_expand.onnx");
    let mut g = GraphBuilder::new("runtime_expand");
    g.input("x", DataType::Float, &["1"]);
    g.input("shape", DataType::Int64, &["3"]);
    g.node("Expand", "y", &["x", "shape"], vec![]);
    g.output("y", DataType::Float, &["a", "b", "c"]);
    chipbench_optimize::model::save(&g.into_model().unwrap(), &model).unwrap();
    let shape = tmp.path().join("shape.npy");
    ndarray::arr1(&[1i64, 60_000, 60_000])
        .write_npy(std::fs::File::create(&shape).unwrap())
        .unwrap();

    let out = tmp.path().join("run");
    let o = chipbench()
        .args(["bench", "--quick", "--quiet", "--json", "--no-history"])
        .args(["--sessions", "1", "-b", "ort:cpu", "--memory-cap", "1GiB"])
        .args(["-m", "mlp", "-m"])
        .arg(&model)
        .arg("--input-file")
        .arg(format!("shape={}", shape.display()))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let run: Value = serde_json::from_slice(&o.stdout).unwrap();
    validate(&run);
    let cells = run["cells"].as_array().unwrap();
    let cell = |name: &str| {
        cells
            .iter()
            .find(|c| c["model"]["name"] == name)
            .unwrap_or_else(|| panic!("no {name} cell"))
    };
    assert_eq!(cell("mlp")["status"], "ok", "{}", cell("mlp")["error"]);
    assert!(
        cell("mlp")["provenance"]["memory_cap"]
            .as_str()
            .unwrap()
            .contains("1.0 GiB by"),
        "{}",
        cell("mlp")["provenance"]
    );
    let expand = cell("runtime_expand");
    assert_eq!(expand["status"], "failed");
    let error = expand["error"].as_str().unwrap();
    assert!(
        error.starts_with("out of memory: the cell's process passed its memory cap of 1.0 GiB"),
        "{error}"
    );
}
