//! `bench --edge-profile`: threads capped to the profile's cores, each cell in its own pinned and
//! memory-capped process, a variant that does not fit failing alone with an out-of-memory reason
//! while the sweep goes on, and reports that call every timing a host timing.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::{bench, chipbench, validate};

fn cells(run: &Value) -> &Vec<Value> {
    run["cells"].as_array().expect("cells")
}

fn cell<'a>(run: &'a Value, model: &str) -> &'a Value {
    cells(run)
        .iter()
        .find(|c| c["model"]["name"] == model)
        .unwrap_or_else(|| panic!("no cell for {model}"))
}

/// A profile file for a one-core board with 1 GiB.
fn one_core_profile(dir: &Path) -> PathBuf {
    let path = dir.join("one-core.toml");
    std::fs::write(
        &path,
        r#"
[[profile]]
id = "one-core"
name = "A one-core test board"
chip = "raspberry-pi-4"
target = "aarch64-unknown-linux-gnu"
cpu = "1x Cortex-A72"
cores = 1
clock_ghz = 1.5
memory_gib = 1.0
isa = ["asimd"]
backends = [{ backend = "tract", device = "cpu", runs_on = "cpu", why = "the test" }]
source = [{ title = "This test", url = "https://example.com/test", gives = ["cores", "clock_ghz", "memory_gib", "isa"] }]
"#,
    )
    .unwrap();
    path
}

fn allowed_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[test]
fn a_profile_caps_the_threads_and_pins_each_cell_to_its_cores() {
    let dir = tempfile::tempdir().unwrap();
    let profile = one_core_profile(dir.path());
    let (code, run, out) = bench(&[
        "--edge-profile",
        profile.to_str().unwrap(),
        "--model",
        "mlp",
    ]);
    validate(&run);
    assert_eq!(code, 0, "{run:#}");
    let edge = &run["config"]["edge_profile"];
    assert_eq!(edge["profile"], "one-core");
    assert_eq!(
        edge["label"],
        "host timings under the profile's constraints, not measurements of the device"
    );
    assert_eq!(edge["pinned_cpus"].as_array().unwrap().len(), 1);
    let c = cell(&run, "mlp");
    assert_eq!(c["status"], "ok", "{}", c["error"]);
    assert_eq!(
        c["backend"]["name"], "tract",
        "the profile's CPU backends are the default"
    );
    assert_eq!(
        c["backend"]["threads"], 1,
        "tract reports the thread count it ran with"
    );
    assert_eq!(
        c["edge"]["cpus"], edge["pinned_cpus"],
        "the cell's own process saw the pinning"
    );
    assert_eq!(c["edge"]["fits"], true);
    assert!(
        c["provenance"]["latency_ms"]
            .as_str()
            .unwrap()
            .contains("not a measurement of the device")
    );
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(report.contains("## Edge profile `one-core`"), "{report}");
    assert!(
        report.contains("host timings under the profile's constraints"),
        "{report}"
    );
    assert!(
        report.contains("cpu (this host, one-core limits)"),
        "{report}"
    );
    assert!(
        report.contains("raspberry-pi-4 projection"),
        "the catalog projection sits beside the cells: {report}"
    );

    let o = chipbench(&[
        "bench",
        "--quick",
        "--quiet",
        "--no-history",
        "--edge-profile",
        profile.to_str().unwrap(),
        "--threads",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("--threads 2: edge profile one-core has 1 cores")
    );

    // The Raspberry Pi 4 has 4 cores: its cells run with 4 threads, or as many as this host has.
    let (code, run, _out) = bench(&[
        "--edge-profile",
        "rpi4",
        "--backend",
        "tract",
        "--model",
        "mlp",
    ]);
    assert_eq!(code, 0, "{run:#}");
    let threads = cell(&run, "mlp")["backend"]["threads"].as_u64().unwrap() as usize;
    assert_eq!(threads, allowed_cpus().min(4));
    assert_eq!(
        cell(&run, "mlp")["edge"]["cpus"].as_array().unwrap().len(),
        threads
    );
}

#[test]
fn a_gpu_profile_skips_what_this_host_cannot_emulate() {
    let (code, run, _out) = bench(&["--edge-profile", "jetson-orin-nano-gpu", "--model", "mlp"]);
    validate(&run);
    assert_eq!(code, 0);
    assert!(!cells(&run).is_empty());
    for c in cells(&run) {
        assert_eq!(c["status"], "skipped");
        assert!(
            c["error"].as_str().unwrap().contains("chipbench remote"),
            "{}",
            c["error"]
        );
    }
    let o = chipbench(&[
        "bench",
        "--quick",
        "--quiet",
        "--no-history",
        "--edge-profile",
        "rpi9",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no profile 'rpi9' (built in: rpi4, rpi5"));
}

/// Runs mobilenet then mlp under `cap` with `mechanism`; the run JSON.
fn capped(mechanism: &str, cap: &str, models: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "--edge-profile",
        "rpi4",
        "--memory-limit",
        mechanism,
        "--memory-cap",
        cap,
        "--backend",
        "tract",
        "--threads",
        "1",
    ];
    for m in models {
        args.extend(["--model", m]);
    }
    let (code, run, _out) = bench(&args);
    validate(&run);
    (code, run)
}

fn assert_out_of_memory(c: &Value, cap: &str) {
    assert_eq!(c["status"], "failed");
    let error = c["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "out of memory: edge profile rpi4 caps memory at {cap}"
        )),
        "{error}"
    );
    assert_eq!(c["edge"]["out_of_memory"], true);
    assert_eq!(
        c["edge"]["fits"],
        Value::Null,
        "a cap below the RAM says nothing about the device"
    );
}

/// Whether this host lets chipbench create memory cgroups; prints why not.
fn cgroups_usable() -> bool {
    let o = chipbench(&[
        "bench",
        "--quick",
        "--quiet",
        "--no-history",
        "--edge-profile",
        "rpi4",
        "--memory-limit",
        "cgroup",
        "--model",
        "/nonexistent.onnx",
        "--json",
    ]);
    let usable = o.status.code() != Some(2);
    if !usable {
        eprintln!(
            "skipping the cgroup case: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    usable
}

#[test]
fn a_variant_that_does_not_fit_fails_alone_with_an_out_of_memory_reason() {
    let mut mechanisms = vec![("rlimit", "rlimit-as")];
    if cgroups_usable() {
        mechanisms.push(("cgroup", "cgroup-v"));
    }
    for (mechanism, recorded) in mechanisms {
        // 1 MiB: nothing fits, and every cell says so; the sweep reaches the last one. Not a few
        // MiB: under a cgroup a small model's process gets by in ~6 MiB of its own memory by
        // evicting page cache (CI's clean machine ran mlp in 8 MiB), while the binary's relocated
        // data alone (.data.rel.ro and .got, 1.3 MiB) exceeds 1 MiB under either mechanism.
        let (code, run) = capped(mechanism, "1MiB", &["mobilenet-v2-0.5", "mlp"]);
        assert_eq!(code, 1, "{mechanism}");
        assert!(
            run["config"]["edge_profile"]["memory_limit"]
                .as_str()
                .unwrap()
                .starts_with(recorded)
        );
        assert_eq!(
            cells(&run).len(),
            2,
            "{mechanism}: the sweep went on after the first failure"
        );
        assert_out_of_memory(cell(&run, "mobilenet-v2-0.5"), "1.0 MiB");
        assert_out_of_memory(cell(&run, "mlp"), "1.0 MiB");
        // A larger cap: the small model runs, within the cap as the mechanism counts it.
        let (code, run) = capped(mechanism, "512MiB", &["mlp"]);
        assert_eq!(code, 0, "{mechanism}: {run:#}");
        let c = cell(&run, "mlp");
        assert_eq!(c["status"], "ok", "{}", c["error"]);
        assert_eq!(c["edge"]["fits"], true);
        assert!(c["edge"]["capped_peak_bytes"].as_u64().unwrap() <= 512 << 20);
    }
}

#[test]
fn under_a_cgroup_cap_the_sweep_goes_on_past_an_out_of_memory_cell() {
    if !cgroups_usable() {
        return;
    }
    // Calibrate on this host: what each model's process needs as the cgroup counts it.
    let (code, run) = capped("cgroup", "1GiB", &["mobilenet-v2-0.5", "mlp"]);
    assert_eq!(code, 0, "{run:#}");
    let peak = |m: &str| cell(&run, m)["edge"]["capped_peak_bytes"].as_u64().unwrap();
    let (large, small) = (peak("mobilenet-v2-0.5"), peak("mlp"));
    assert!(
        large > small + (4 << 20),
        "mobilenet needs clearly more than mlp: {large} vs {small}"
    );
    // Between the two: mobilenet runs out of memory, then mlp still runs in the same sweep.
    // Nearer mlp's peak than the midpoint: the peaks count page cache, which a process under a
    // cgroup cap evicts rather than fail, so mobilenet's own need lies somewhat below its peak.
    let cap = format!("{}", small + (large - small) / 4);
    let (code, run) = capped("cgroup", &cap, &["mobilenet-v2-0.5", "mlp"]);
    assert_eq!(code, 1);
    let mobilenet = cell(&run, "mobilenet-v2-0.5");
    assert_eq!(mobilenet["status"], "failed");
    assert_eq!(
        mobilenet["edge"]["out_of_memory"], true,
        "{}",
        mobilenet["error"]
    );
    assert!(
        mobilenet["error"]
            .as_str()
            .unwrap()
            .contains("out of memory: edge profile rpi4 caps memory at")
    );
    let mlp = cell(&run, "mlp");
    assert_eq!(mlp["status"], "ok", "{}", mlp["error"]);
    assert_eq!(mlp["edge"]["out_of_memory"], false);
}
