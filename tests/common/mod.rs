//! What the end-to-end tests share: running the binary from the package root, and showing what
//! it printed when an assertion fails. Each test binary uses part of it.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `chipbench` with `args` from the package root (where `models/` is) and waits for it.
pub fn chipbench(args: &[&str]) -> Output {
    chipbench_with(args, &[])
}

/// [`chipbench`] with environment variables set for it.
pub fn chipbench_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chipbench"))
        .args(args)
        .envs(env.iter().copied())
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

/// Asserts that a run's JSON matches `run.schema.json`, listing every violation.
pub fn validate(run: &serde_json::Value) {
    let schema: serde_json::Value =
        serde_json::from_str(chipbench_core::result::RUN_JSON_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(run)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "run.json does not match its schema:\n{}",
        errors.join("\n")
    );
}

/// `bench --quick --json --quiet --no-history` with `extra` into a fresh folder: the exit code,
/// the run JSON printed on stdout, and the folder (kept alive by the caller).
pub fn bench(extra: &[&str]) -> (i32, serde_json::Value, tempfile::TempDir) {
    bench_with(extra, &[])
}

/// [`bench`] with environment variables set for it.
pub fn bench_with(
    extra: &[&str],
    env: &[(&str, &str)],
) -> (i32, serde_json::Value, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let mut args = vec![
        "bench",
        "--quick",
        "--json",
        "--quiet",
        "--no-history",
        "--out",
        out.path().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = chipbench_with(&args, env);
    let run = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", printed(&o)));
    (o.status.code().unwrap_or(-1), run, out)
}

/// Whether `chipbench backends --json` lists `backend` as available; when it does not, panics if
/// the environment variable `require` is `1` (CI with the engine installed), else says why the
/// test is skipped.
pub fn backend_available(backend: &str, require: &str) -> bool {
    let o = chipbench(&["backends", "--json"]);
    assert!(o.status.success(), "{}", printed(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == backend)
        .unwrap_or_else(|| panic!("{backend} is registered"));
    if entry["available"] == true {
        return true;
    }
    let reason = entry["reason"].as_str().unwrap_or_default();
    if std::env::var(require).as_deref() == Ok("1") {
        panic!("{require}=1 but {backend} is unavailable: {reason}");
    }
    eprintln!("skipped: {backend} is unavailable here: {reason}");
    false
}

/// Headless Chromium, where it is installed.
pub fn chromium() -> Option<std::path::PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

/// Runs headless Chromium on the page with a time limit; returns (stdout, stderr). Output goes
/// through files: a dumped DOM overflows a pipe nobody reads until the browser exits.
pub fn headless(
    browser: &std::path::Path,
    profile: &std::path::Path,
    extra: &[&str],
    page: &std::path::Path,
) -> (String, String) {
    let (out_path, err_path) = (
        profile.with_extension("stdout"),
        profile.with_extension("stderr"),
    );
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--user-data-dir={}", profile.display()),
            "--window-size=1400,3000",
        ])
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("chromium starts");
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(90) {
            child.kill().ok();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let read =
        |p: &std::path::Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    (read(&out_path), read(&err_path))
}
