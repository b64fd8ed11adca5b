//! What the end-to-end tests share: running the binary from the package root, and showing what
//! it printed when an assertion fails. Each test binary uses part of it.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `chipbench` with `args` from the package root (where `models/` is) and waits for it.
pub fn chipbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chipbench"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

/// Both streams of a finished command, for assertion messages.
pub fn printed(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
