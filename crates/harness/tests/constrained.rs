//! The constrained executor's reading of its workers, with shell scripts standing in for
//! `chipbench worker`: a refused allocation is an out-of-memory cell, a hang is killed at the
//! deadline, a measured cell gets the profile's fit.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chipbench_core::result::{CellResult, Status};
use chipbench_harness::memory::MemoryLimit;
use chipbench_harness::protocol::{JobContext, Message, Observed, allowed_cpus};
use chipbench_harness::{Cell, Constrained, Executor};
use chipbench_runner::{MeasureSettings, ModelUnderTest};

mod common;

const MIB: u64 = 1 << 20;

/// Held by each test while it writes its worker script and runs it: a child another test forks
/// while a script is still open for writing keeps that file busy, and exec'ing it then fails
/// with ETXTBSY ("Text file busy") instead of running (seen once under load).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The model the workers pretend to measure (its file is 1 MiB).
fn model() -> ModelUnderTest {
    let mut m = common::model("m");
    m.record.file_bytes = Some(MIB);
    m
}

/// A worker that runs `body` (sh) after reading its requests.
fn worker(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("worker.sh");
    std::fs::write(&path, format!("#!/bin/sh\ncat >/dev/null\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The cell `exe` returns under a 1 GiB RLIMIT_AS cap on a profile with `ram` bytes.
fn measure(exe: PathBuf, ram: u64, timeout: Duration) -> CellResult {
    let target = common::cpu_of(&common::Zeros);
    let m = model();
    let cell = Cell {
        model: &m,
        target: &target,
        threads: Some(1),
        scenario: None,
    };
    let mut executor = Constrained::new(
        "tiny".into(),
        ram,
        allowed_cpus().unwrap(),
        1024 * MIB,
        MemoryLimit::RlimitAs,
        exe,
        JobContext::default(),
        timeout,
    );
    assert!(
        executor.rounds().is_none(),
        "its cells measure their own sessions"
    );
    executor.measure(&cell, &MeasureSettings::default())
}

#[test]
fn a_refused_allocation_is_an_out_of_memory_cell_that_does_not_fit() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let exe = worker(
        dir.path(),
        "echo 'chipbench worker: started' >&2\necho 'memory allocation of 4096 bytes failed' >&2\nkill -ABRT $$",
    );
    let cell = measure(exe, 512 * MIB, Duration::from_secs(60));
    assert_eq!(cell.status, Status::Failed);
    let error = cell.error.unwrap();
    assert!(
        error.starts_with("out of memory: edge profile tiny caps memory at 1.0 GiB"),
        "{error}"
    );
    assert!(
        error.contains("memory allocation of 4096 bytes failed"),
        "{error}"
    );
    let edge = cell.edge.unwrap();
    assert!(edge.out_of_memory);
    // Capped at 1 GiB it ran out; the profile has half that: it cannot fit there either.
    assert_eq!(edge.fits, Some(false));
}

#[test]
fn a_worker_past_the_deadline_is_killed_and_its_cell_says_so() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let exe = worker(dir.path(), "sleep 30");
    let started = Instant::now();
    let cell = measure(exe, 512 * MIB, Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(cell.status, Status::Failed);
    let error = cell.error.unwrap();
    assert!(error.starts_with("timed out after 300ms"), "{error}");
    assert!(!cell.edge.unwrap().out_of_memory);
}

#[test]
fn a_measured_cell_fits_when_its_peak_and_file_fit_the_profiles_ram() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut measured = common::ok_cell("m");
    measured.model = model().record;
    measured.peak_rss_bytes = Some(100 * MIB);
    measured
        .provenance
        .insert("latency_ms".into(), "measured".into());
    let replies = dir.path().join("replies.jsonl");
    let mut text = Vec::new();
    Message::hello().send(&mut text).unwrap();
    Message::Cell {
        cell: Box::new(measured),
        observed: Some(Observed {
            cpus: vec![0],
            vm_peak_bytes: Some(300 * MIB),
        }),
    }
    .send(&mut text)
    .unwrap();
    std::fs::write(&replies, text).unwrap();
    let exe = worker(dir.path(), &format!("cat '{}'", replies.display()));

    let fits = measure(exe.clone(), 512 * MIB, Duration::from_secs(60));
    assert_eq!(fits.status, Status::Ok);
    let edge = fits.edge.unwrap();
    assert_eq!(edge.fits, Some(true));
    assert_eq!(edge.cpus, [0]);
    assert_eq!(
        edge.capped_peak_bytes,
        Some(300 * MIB),
        "VmPeak under RLIMIT_AS"
    );
    assert!(fits.provenance["latency_ms"].contains("not a measurement of the device"));
    assert!(fits.provenance["energy"].starts_with("not estimated"));

    let too_big = measure(exe, 64 * MIB, Duration::from_secs(60));
    assert_eq!(too_big.edge.unwrap().fits, Some(false));
}
