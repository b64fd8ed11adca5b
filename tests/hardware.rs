//! End-to-end tests of the hardware side of the `chipbench` binary: `devices`, `roofline`
//! (measure, store, project) and what `bench` records from them (energy, roofline bound,
//! projections), against the result schema.

use std::path::Path;
use std::process::{Command, Output};

use chipbench_optimize::builder::GraphBuilder;
use chipbench_optimize::onnx::DataType;
use serde_json::Value;

mod common;
use common::validate;

fn chipbench(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_chipbench"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    assert!(
        o.status.success(),
        "chipbench {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}

/// A 256 x 512 x 512 fp32 MatMul: one big matrix product, the kind of work the ceilings measure.
fn matmul_model(dir: &Path) -> String {
    let weights: Vec<f32> = (0..512 * 512)
        .map(|i| ((i % 17) as f32 - 8.0) / 64.0)
        .collect();
    let mut g = GraphBuilder::new("matmul");
    g.input("a", DataType::Float, &["256", "512"]);
    let b = g.weight("b", &[512, 512], &weights);
    g.node("MatMul", "y", &["a", &b], vec![]);
    g.output("y", DataType::Float, &["256", "512"]);
    let path = dir.join("matmul.onnx");
    chipbench_optimize::model::save(&g.into_model().unwrap(), &path).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn devices_reports_the_isa_sensors_and_the_estimate_source() {
    let v = json(&chipbench(&["devices", "--json"]));
    let host = &v["host"];
    let flags: Vec<&str> = host["isa_flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    if let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") {
        let listed = chipbench_probe::cpu::cpuinfo_flags(&cpuinfo);
        for flag in chipbench_probe::cpu::TRACKED_FLAGS {
            assert_eq!(
                flags.contains(flag),
                listed.iter().any(|l| l == flag),
                "{flag}"
            );
        }
    }
    for sensor in host["energy_sensors"].as_array().unwrap() {
        assert!(
            sensor["readable"] == true || sensor["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{sensor}"
        );
    }
    assert!(
        v["energy_estimate"]["watts_per_busy_core"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        v["energy_estimate"]["method"]
            .as_str()
            .unwrap()
            .starts_with("estimated:")
    );
}

#[test]
fn achieved_rates_stay_under_the_measured_roofline() {
    let tmp = tempfile::tempdir().unwrap();
    let model = matmul_model(tmp.path());
    let mut quick = true;
    let run = loop {
        let run = ceilings_then_bench(tmp.path(), &model, quick);
        // The ceilings are the fastest of many runs, the achieved rate is at the median: only
        // interference can put it above (10 % allows for measurement noise). The one kind a
        // fastest-of-many cannot escape is a neighbour busy on the same physical core for the
        // whole of the ceiling's 200 ms: then a measurement without --quick (1 s per size, one
        // size more) is taken, and that one must hold.
        match above_the_bound(&run) {
            Some(over) if quick => {
                eprintln!("{over}; measuring the ceilings again without --quick");
                quick = false;
            }
            _ => break run,
        }
    };
    validate(&run);
    if let Some(over) = above_the_bound(&run) {
        panic!("{over}");
    }
    let cells = run["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for cell in cells {
        assert_eq!(cell["status"], "ok", "{cell}");
        let r = &cell["roofline"];
        let bound = r["bound_gflops"]
            .as_f64()
            .unwrap_or_else(|| panic!("no bound: {}", r["ceilings"]));
        assert!(bound > 0.0, "{r}");
        assert!(r["ceilings"].as_str().unwrap().starts_with("measured:"));
        let e = &cell["energy"];
        assert!(e["joules_per_inference"].as_f64().unwrap() > 0.0);
        let method = e["method"].as_str().unwrap();
        assert!(
            method.starts_with("measured:") || method.starts_with("estimated:"),
            "{method}"
        );
    }
    let p = &run["projections"];
    // Where a catalog entry names this host's CPU, its lower bounds held for every cell.
    for check in p["checks"].as_array().unwrap() {
        assert_eq!(check["holds"], true, "{check}");
    }
    assert_eq!(
        p["label"],
        "projection (roofline lower bound from datasheet figures)"
    );
    let h100 = p["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["model"] == "matmul" && e["chip"] == "nvidia-h100-sxm")
        .unwrap();
    let expected_ms = 2.0 * 256.0 * 512.0 * 512.0 / 67e12 * 1e3;
    assert!(
        (h100["latency_lower_bound_ms"].as_f64().unwrap() - expected_ms).abs() < 1e-9,
        "{h100}"
    );
}

/// Measures the CPU's ceilings at one thread (checking what they hold), then benches mlp and
/// `model` bounded by them; the run.
fn ceilings_then_bench(dir: &Path, model: &str, quick: bool) -> Value {
    let ceilings = dir.join("ceilings.json");
    let mut args = vec!["roofline", "--threads", "1", "--json", "--out"];
    args.push(ceilings.to_str().unwrap());
    if quick {
        args.push("--quick");
    }
    let c = json(&chipbench(&args));
    let cpu = &c["devices"][0];
    assert_eq!(cpu["threads"], 1);
    let fp32 = cpu["fp32_gflops"].as_f64().unwrap();
    let memory = cpu["memory_gbs"].as_f64().unwrap();
    assert!(fp32 > 0.1 && memory > 0.1, "{cpu}");
    let levels = cpu["cache_bandwidth"].as_array().unwrap();
    if let Some(l1) = levels.iter().find(|l| l["level"] == "L1") {
        assert!(
            l1["gbs"].as_f64().unwrap() > memory,
            "L1 is faster than memory: {cpu}"
        );
    }
    assert!(
        cpu["provenance"]["fp32_gflops"]
            .as_str()
            .unwrap()
            .starts_with("measured:")
    );
    let out = dir.join("run");
    let _ = std::fs::remove_dir_all(&out);
    json(&chipbench(&[
        "bench",
        "--quick",
        "--json",
        "--quiet",
        "--no-history",
        "--backend",
        "tract",
        "--threads",
        "1",
        "--accuracy-samples",
        "0",
        "--model",
        "mlp",
        "--model",
        model,
        "--ceilings",
        ceilings.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]))
}

/// The first cell whose achieved rate lies more than 10 % above its roofline bound, described.
fn above_the_bound(run: &Value) -> Option<String> {
    run["cells"].as_array().unwrap().iter().find_map(|cell| {
        let r = &cell["roofline"];
        let (bound, achieved) = (r["bound_gflops"].as_f64()?, r["achieved_gflops"].as_f64()?);
        (achieved > bound * 1.10).then(|| {
            format!(
                "{}: achieved {achieved} GFLOP/s above the bound {bound}",
                cell["model"]["name"]
            )
        })
    })
}

#[test]
fn projections_of_the_suite_are_labelled_and_never_measured() {
    let o = chipbench(&["roofline", "--project"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with("projection (roofline lower bound from datasheet figures) — not measured"),
        "{text}"
    );
    assert!(text.contains("nvidia-h100-sxm") && text.contains("google-edge-tpu"));
    let p = json(&chipbench(&["roofline", "--project", "--json"]));
    let entries = p["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["precision"] == "int8" && e["latency_lower_bound_ms"].is_number())
    );
    assert!(
        entries
            .iter()
            .all(|e| e["latency_lower_bound_ms"].is_number() || e["note"].is_string())
    );
}

#[test]
fn a_bad_ceilings_file_is_a_one_line_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{}").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_chipbench"))
        .args([
            "bench",
            "--quick",
            "--quiet",
            "--no-history",
            "--model",
            "mlp",
            "--backend",
            "tract",
        ])
        .args([
            "--ceilings",
            bad.to_str().unwrap(),
            "--out",
            tmp.path().join("run").to_str().unwrap(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.json") && err.lines().count() == 1,
        "{err}"
    );
}
