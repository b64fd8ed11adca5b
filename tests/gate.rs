//! The regression gate on real runs of this machine: a run compared with itself, and a real A/A
//! pair (two `--quick` runs of part of the suite). One test in this file, so nothing else in the
//! same test binary measures at the same time.

use std::path::Path;

use serde_json::Value;

mod common;
use common::{chipbench, printed};

/// Part of the suite on the reference backend, one thread (on a 2-core machine a second thread
/// would compete with the harness and the system).
fn quick_run(out: &Path) {
    let o = chipbench(&[
        "bench",
        "--quick",
        "--quiet",
        "--no-history",
        "-m",
        "mlp",
        "-m",
        "resnet-mini",
        "-b",
        "tract",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", printed(&o));
}

fn compare_json(baseline: &Path, current: &Path) -> (i32, Value) {
    let o = chipbench(&[
        "compare",
        baseline.to_str().unwrap(),
        current.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let code = o.status.code().unwrap_or(-1);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", printed(&o)));
    (code, v)
}

fn verdicts(v: &Value) -> Vec<(String, String, String)> {
    v["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let key = &c["key"];
            (
                ["model", "variant", "backend", "device"]
                    .map(|k| key[k].as_str().unwrap_or("?"))
                    .join(" "),
                c["verdict"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_run_against_itself_and_a_real_a_a_pair_do_not_regress() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    quick_run(&a);
    quick_run(&b);

    // Identical samples: every cell unchanged, exit 0.
    let (code, v) = compare_json(&a, &a);
    let cells = verdicts(&v);
    assert_eq!(cells.len(), 2, "{v}");
    for (cell, verdict, reason) in &cells {
        assert_eq!(verdict, "unchanged", "{cell}: {reason}");
    }
    assert_eq!(code, 0);

    // Two runs of the same code on the same machine: whatever the noise, no regression.
    let (code, v) = compare_json(&a, &b);
    let cells = verdicts(&v);
    assert_eq!(cells.len(), 2, "{v}");
    for (cell, verdict, reason) in &cells {
        assert_ne!(verdict, "regressed", "A/A false alarm on {cell}: {reason}");
        eprintln!("A/A {cell}: {verdict}: {reason}");
    }
    assert_eq!(code, 0, "{v}");
}
