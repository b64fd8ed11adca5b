//! The fuzzer through its binary: every input it found (saved under `regressions/`, each one a
//! panic or an allocation bomb in chipbench before its fix) now runs through without either,
//! under the allocation limit; and a fixed-seed run counts its executions and finds nothing.

use std::process::{Command, Output};

fn fuzz(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chipbench-fuzz"))
        .args(args)
        .output()
        .expect("the fuzzer runs")
}

fn printed(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_input_the_fuzzer_found_is_handled_now() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 7,
        "the regression inputs are there: {inputs:?}"
    );
    for input in inputs {
        let o = fuzz(&[
            "--replay",
            input.to_str().unwrap(),
            "--max-alloc-mib",
            "1024",
        ]);
        assert!(o.status.success(), "{}: {}", input.display(), printed(&o));
    }
}

#[test]
fn a_fixed_seed_run_counts_its_executions_and_finds_nothing() {
    let findings = tempfile::tempdir().unwrap();
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/mlp.onnx");
    let o = fuzz(&[
        "--execs",
        "20000",
        "--seed",
        "3",
        "--findings",
        findings.path().to_str().unwrap(),
        suite,
    ]);
    let text = printed(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("20000 executions"), "{text}");
    assert!(text.contains("findings: 0"), "{text}");
    // Most mutants still decode: the structural mutations keep the protobuf well-formed.
    assert!(text.contains("Derived"), "{text}");
}

#[test]
fn too_few_executions_fail_the_run() {
    let findings = tempfile::tempdir().unwrap();
    let o = fuzz(&[
        "--execs",
        "10",
        "--min-execs",
        "11",
        "--findings",
        findings.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", printed(&o));
    assert!(printed(&o).contains("fewer than --min-execs 11"));
}
