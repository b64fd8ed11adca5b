//! End-to-end tests of the wgpu backend through the `chipbench` binary: `--backend wgpu` runs one
//! adapter (the preferred one), labelled as what it is, with device-side time where the adapter
//! has timestamps; a software adapter is left out of a plain run with the reason; and with no
//! adapter (`WGPU_BACKEND` naming an API this machine lacks) the reason is given and the rest of
//! the run goes on. Skipped (with the reason) when no adapter exists, unless
//! CHIPBENCH_REQUIRE_GPU=1.

use std::process::{Command, Output};

use serde_json::Value;

fn chipbench(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chipbench"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The devices of the `wgpu` entry of `chipbench backends --json`, when it has any.
fn adapters_or_skip() -> Option<Vec<Value>> {
    let o = chipbench(&["backends", "--json"], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let wgpu = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "wgpu")
        .expect("wgpu is registered")
        .clone();
    if wgpu["available"] == true {
        return Some(wgpu["devices"].as_array().unwrap().clone());
    }
    let reason = wgpu["reason"].as_str().unwrap_or_default();
    if std::env::var("CHIPBENCH_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("CHIPBENCH_REQUIRE_GPU=1 but wgpu has no adapter: {reason}");
    }
    eprintln!("skipped: wgpu has no adapter here: {reason}");
    None
}

#[test]
fn backend_wgpu_runs_the_preferred_adapter_with_device_time() {
    let Some(devices) = adapters_or_skip() else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let o = chipbench(
        &[
            "bench",
            "--backend",
            "wgpu",
            "--model",
            "mlp",
            "--quick",
            "--json",
            "--quiet",
            "--out",
            out.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        !text(&o.stderr).contains("XDG_RUNTIME_DIR"),
        "driver noise on stderr: {}",
        text(&o.stderr)
    );
    let run: Value = serde_json::from_slice(&o.stdout).unwrap();
    let cells = run["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 1, "`--backend wgpu` is one adapter: {cells:?}");
    let cell = &cells[0];
    assert_eq!(cell["status"], "ok", "{}", cell["error"]);
    let rank = |kind: &str| {
        ["discrete-gpu", "integrated-gpu", "virtual-gpu"]
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(3)
    };
    let best = devices
        .iter()
        .map(|d| rank(d["kind"].as_str().unwrap()))
        .min()
        .unwrap();
    let kind = cell["backend"]["device_kind"].as_str().unwrap();
    assert_eq!(rank(kind), best, "picked {kind} out of {devices:?}");
    assert!(
        cell["accuracy"]["cosine"].as_f64().unwrap() >= 0.9999,
        "{}",
        cell["accuracy"]
    );
    let timestamps = cell["backend"]["settings"]["device_time"]
        .as_str()
        .unwrap()
        .starts_with("GPU timestamp");
    if timestamps {
        assert!(cell["device_latency_ms"]["p50"].as_f64().unwrap() > 0.0);
        assert_eq!(cell["device_time_discarded"], 0);
        assert!(
            cell["provenance"]["device_latency_ms"]
                .as_str()
                .unwrap()
                .contains("GPU timestamp queries")
        );
    }
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    if kind == "software-rasterizer" {
        assert!(report.contains("software rasterizer"), "{report}");
    }

    let o = chipbench(
        &[
            "bench",
            "--backend",
            "wgpu:99",
            "--model",
            "mlp",
            "--quick",
            "--json",
            "--quiet",
            "--out",
            out.path().join("none").to_str().unwrap(),
        ],
        &[],
    );
    let run: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert!(!text(&o.stderr).contains("panicked"), "{}", text(&o.stderr));
    let skipped = run["cells"]
        .as_array()
        .map(|c| c.iter().all(|c| c["status"] == "skipped"))
        .unwrap_or(true);
    assert!(skipped, "{run}");
}

#[test]
fn a_plain_run_leaves_software_adapters_out_with_the_reason() {
    let Some(devices) = adapters_or_skip() else {
        return;
    };
    let Some(software) = devices.iter().find(|d| d["kind"] == "software-rasterizer") else {
        return;
    };
    let listing = text(&chipbench(&["backends"], &[]).stdout);
    assert!(
        listing.contains("[software rasterizer (CPU), not a GPU]"),
        "{listing}"
    );
    let out = tempfile::tempdir().unwrap();
    let o = chipbench(
        &[
            "bench",
            "--model",
            "mlp",
            "--quick",
            "--out",
            out.path().to_str().unwrap(),
        ],
        &[],
    );
    let stderr = text(&o.stderr);
    let label = format!("skipping wgpu:{}: ", software["id"].as_str().unwrap());
    assert!(
        stderr.contains(&label) && stderr.contains("software rasterizer"),
        "{stderr}"
    );
}

#[test]
fn without_an_adapter_the_reason_is_given_and_the_run_goes_on() {
    let no_adapter = [("WGPU_BACKEND", "metal")];
    if cfg!(target_os = "macos") {
        return; // Metal is the API that exists there
    }
    let listing = text(&chipbench(&["backends"], &no_adapter).stdout);
    assert!(
        listing.contains("wgpu 30.0.2: unavailable: no graphics adapter found for Metal"),
        "{listing}"
    );
    let out = tempfile::tempdir().unwrap();
    let o = chipbench(
        &[
            "bench",
            "--backend",
            "wgpu",
            "--backend",
            "tract",
            "--model",
            "mlp",
            "--quick",
            "--json",
            "--quiet",
            "--out",
            out.path().to_str().unwrap(),
        ],
        &no_adapter,
    );
    let run: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o.stderr)));
    let cells = run["cells"].as_array().unwrap();
    let tract = cells
        .iter()
        .find(|c| c["backend"]["name"] == "tract")
        .expect("the tract cell ran");
    assert_eq!(tract["status"], "ok");
    let wgpu = cells
        .iter()
        .find(|c| c["backend"]["name"] == "wgpu")
        .expect("a skipped wgpu cell");
    assert_eq!(wgpu["status"], "skipped");
    assert!(
        wgpu["error"]
            .as_str()
            .unwrap()
            .contains("no graphics adapter"),
        "{wgpu}"
    );
}
