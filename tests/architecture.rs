//! The layering of ARCHITECTURE.md, checked on `cargo metadata`: a backend depends on core
//! alone, the runner on no backend, core on no other chipbench crate.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Each workspace crate's normal (not dev, not build) dependencies among the workspace crates.
fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let metadata: Value = serde_json::from_slice(&o.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| names.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn crates_depend_only_down_the_layers() {
    let deps = workspace_dependencies();
    let allowed = |krate: &str| -> Option<&[&str]> {
        Some(match krate {
            "chipbench-core" => &[],
            k if k.starts_with("chipbench-backend-") => &["chipbench-core"],
            "chipbench-optimize" | "chipbench-report" | "chipbench-energy" => &["chipbench-core"],
            "chipbench-probe" | "chipbench-runner" => &["chipbench-core", "chipbench-energy"],
            // The harness drives the runner and never knows a backend.
            "chipbench-harness" => &[
                "chipbench-core",
                "chipbench-energy",
                "chipbench-probe",
                "chipbench-runner",
            ],
            _ => return None,
        })
    };
    let mut broken = Vec::new();
    for (krate, uses) in &deps {
        if krate == "chipbench" {
            continue;
        }
        let allowed = allowed(krate).unwrap_or_else(|| {
            panic!("{krate} is not in ARCHITECTURE.md's map: add it there and here")
        });
        for dep in uses.iter().filter(|d| !allowed.contains(&d.as_str())) {
            broken.push(format!("{krate} depends on {dep}"));
        }
    }
    assert!(broken.is_empty(), "layering broken: {broken:?}");
    // The root package is the only one that knows every crate.
    assert!(deps["chipbench"].len() >= 10, "{:?}", deps["chipbench"]);
}
