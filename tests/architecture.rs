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
            // The fuzzer links no engine: chipbench's own model handling only.
            "chipbench-fuzz" => &["chipbench-core", "chipbench-optimize"],
            // The zoo fetches and verifies files; what runs them is the CLI's business.
            "chipbench-zoo" => &["chipbench-core"],
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

/// The CLI's modules (`src/cmd/<command>.rs` and the helpers beside `main.rs`) use each other
/// without a cycle, so that each can be read, and moved, on its own.
#[test]
fn the_cli_modules_form_no_cycle() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("cmd")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            if path.extension().is_some_and(|e| e == "rs") && name != "main" && name != "mod" {
                let module = match dir == root {
                    true => name,
                    false => format!("cmd::{name}"),
                };
                files.push((module, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    // What each module names with a `crate::` path.
    let uses: BTreeMap<String, BTreeSet<String>> = files
        .iter()
        .map(|(module, text)| {
            let used = text
                .match_indices("crate::")
                .filter_map(|(at, _)| {
                    let rest = &text[at + "crate::".len()..];
                    let word = |s: &str| -> String {
                        s.chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect()
                    };
                    let first = word(rest);
                    let name = match first.as_str() {
                        "cmd" => format!("cmd::{}", word(&rest[5..])),
                        _ => first,
                    };
                    (modules.contains(&name) && &name != module).then_some(name)
                })
                .collect();
            (module.clone(), used)
        })
        .collect();
    // Depth-first search for a path back to where it started.
    fn cycle_from(
        start: &str,
        at: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
    ) -> bool {
        for next in &uses[at] {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if !path.contains(next) {
                path.push(next.clone());
                if cycle_from(start, next, uses, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    for module in uses.keys() {
        let mut path = vec![module.clone()];
        assert!(
            !cycle_from(module, module, &uses, &mut path),
            "module cycle: {}",
            path.join(" -> ")
        );
    }
}
