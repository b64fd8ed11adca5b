//! End-to-end tests of `chipbench report`, `compare` and `history` on a real quick run: every
//! export format, the HTML page in a real headless browser, exit codes of the gate, and the
//! history database (recording, listing, trends, corrupt and locked files).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chipbench_core::result::RunResult;
use serde_json::Value;

mod common;
use common::{chipbench, chromium, headless, printed};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One real quick run (two suite models on tract, recorded in a history database of its own),
/// shared by the tests of this file.
struct Fixture {
    _dir: tempfile::TempDir,
    run_dir: PathBuf,
    db: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let db = dir.path().join("history.db");
        let o = chipbench(&[
            "bench",
            "--quick",
            "--quiet",
            "-m",
            "mlp",
            "-m",
            "resnet-mini",
            "-b",
            "tract",
            "--threads",
            "1",
            "--out",
            s(&run_dir),
            "--history-db",
            s(&db),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", printed(&o));
        Fixture {
            _dir: dir,
            run_dir,
            db,
        }
    })
}

fn load(path: &Path) -> RunResult {
    chipbench_report::load_run(path).unwrap()
}

fn write_run(run: &RunResult, path: &Path) {
    std::fs::write(path, serde_json::to_vec(run).unwrap()).unwrap();
}

#[test]
fn every_format_says_how_its_figures_were_obtained() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let run = load(&f.run_dir);
    for format in ["md", "csv", "html", "json", "bmf", "gab"] {
        let out = dir.path().join(format!("report.{format}"));
        let o = chipbench(&["report", s(&f.run_dir), "--format", format, "-o", s(&out)]);
        assert_eq!(o.status.code(), Some(0), "{format}: {}", printed(&o));
        let body = std::fs::read_to_string(&out).unwrap();
        match format {
            "md" => {
                assert!(body.contains("How each figure was obtained"), "{body}");
                assert!(
                    body.contains("measured — measured: host monotonic clock"),
                    "{body}"
                );
            }
            "csv" => {
                let header = body.lines().next().unwrap();
                assert!(
                    header.starts_with(
                        "run_id,host_fingerprint,hostname,model,variant,backend,device"
                    )
                );
                assert!(header.contains(",p50_ms,") && header.contains("latency_provenance"));
                assert_eq!(body.lines().count(), 1 + run.cells.len());
            }
            "json" => {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["schema"], "chipbench.report/1");
                assert_eq!(v["cells"][0]["figures"]["p50_ms"]["origin"], "measured");
                assert_eq!(
                    v["cells"][0]["figures"]["throughput_per_s"]["origin"],
                    "derived"
                );
            }
            "bmf" => {
                let v: Value = serde_json::from_str(&body).unwrap();
                let first = v.as_object().unwrap().values().next().unwrap();
                let p50_ns = run.cells[0].latency_ms.as_ref().unwrap().p50 * 1e6;
                assert!(
                    (first["latency"]["value"].as_f64().unwrap() - p50_ns).abs() < 1e-6 * p50_ns
                );
                assert!(first["latency"]["lower_value"].as_f64().unwrap() <= p50_ns);
            }
            "gab" => {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v.as_array().unwrap().len(), 2 * run.cells.len());
                assert_eq!(v[0]["unit"], "ms");
            }
            _ => assert!(body.starts_with("<!DOCTYPE html>")),
        }
    }
    // Without -o the report goes to stdout.
    let o = chipbench(&["report", s(&f.run_dir)]);
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("# chipbench run"),
        "{}",
        printed(&o)
    );
}

#[test]
fn a_bad_output_path_fails_before_reading_the_runs() {
    let o = chipbench(&[
        "report",
        "/nonexistent/run",
        "--format",
        "html",
        "-o",
        "/nonexistent-dir/r.html",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", printed(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/nonexistent-dir/r.html"),
        "the output file is checked first: {err}"
    );
    let o = chipbench(&["report", "/nonexistent/run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/nonexistent/run: "),
        "{}",
        printed(&o)
    );
    let o = chipbench(&["report", "x", "--format", "pdf"]);
    assert_eq!(o.status.code(), Some(2));
}

/// The HTML report in a real browser: it renders (a non-blank screenshot), holds the expected
/// number of chart SVGs, and logs no console message (the page has no script and loads nothing).
#[test]
fn the_html_report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        let reason = "chromium is not installed (Debian: apt-get install chromium)";
        if std::env::var_os("CI").is_some() || std::env::var_os("CHIPBENCH_REQUIRE_GPU").is_some() {
            panic!("{reason}, and CI requires the browser test");
        }
        eprintln!("skipping the browser test: {reason}");
        return;
    };
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    // Two runs in one report: the second is the first slowed down by 10 %.
    let mut slower = load(&f.run_dir);
    for c in &mut slower.cells {
        slow_down(c, 1.1);
    }
    slower.run_id.push_str("-slower");
    let slower_path = dir.path().join("slower.json");
    write_run(&slower, &slower_path);
    let page = dir.path().join("report.html");
    let o = chipbench(&[
        "report",
        s(&f.run_dir),
        s(&slower_path),
        "--format",
        "html",
        "-o",
        s(&page),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", printed(&o));
    let expected =
        chipbench_report::export::html::chart_count(&[load(&f.run_dir), slower]).unwrap();
    // Two models: a latency chart each, the speedup chart and a Pareto chart each at least.
    assert!(expected >= 5, "{expected} charts");

    let png = dir.path().join("shot.png");
    let (_, log) = headless(
        &browser,
        &dir.path().join("profile-a"),
        &[&format!("--screenshot={}", png.display())],
        &page,
    );
    let (dom, log_dom) = headless(
        &browser,
        &dir.path().join("profile-b"),
        &["--dump-dom"],
        &page,
    );

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (1400, 3000));
    let channels = info.color_type.samples();
    let painted = pixels[..info.buffer_size()]
        .chunks(channels)
        .filter(|px| px.iter().take(3).any(|&v| v < 200))
        .count();
    let share = painted as f64 / (info.width * info.height) as f64;
    assert!(
        share > 0.01,
        "the screenshot is blank: {:.4} % of pixels painted",
        share * 100.0
    );

    let svgs = dom.matches("<svg").count();
    assert_eq!(svgs, expected, "chart SVGs in the rendered DOM");
    assert_eq!(dom.matches("class=\"chart\"").count(), expected);
    for l in [&log, &log_dom] {
        let console: Vec<&str> = l.lines().filter(|line| line.contains(":CONSOLE")).collect();
        assert!(console.is_empty(), "console messages: {console:?}");
    }
}

/// Scales a cell's samples and session medians by `factor`: the same run, slower.
fn slow_down(cell: &mut chipbench_core::result::CellResult, factor: f64) {
    cell.samples_ms.iter_mut().for_each(|x| *x *= factor);
    cell.session_p50_ms.iter_mut().for_each(|x| *x *= factor);
    cell.latency_ms = chipbench_core::stats::summarize(&cell.samples_ms);
}

#[test]
fn compare_exit_codes_follow_the_verdicts() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let base = load(&f.run_dir);
    // The same run slowed down by 30 %: real samples, a known shift, far beyond the gate's noise
    // even on a busy host (with builds beside the tests, mlp's fresh sessions spread by ±6 %,
    // which left a 10 % shift inconclusive).
    let mut slow = base.clone();
    slow.run_id.push_str("-slow");
    for c in &mut slow.cells {
        slow_down(c, 1.30);
    }
    let slow_path = dir.path().join("slow.json");
    write_run(&slow, &slow_path);
    let o = chipbench(&["compare", s(&f.run_dir), s(&slow_path)]);
    assert_eq!(o.status.code(), Some(1), "{}", printed(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("2 regressed"), "{out}");
    let o = chipbench(&["compare", s(&f.run_dir), s(&slow_path), "--format", "md"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("**Regression detected.**"));
    // The other way round it is an improvement: exit 0.
    let o = chipbench(&["compare", s(&slow_path), s(&f.run_dir)]);
    assert_eq!(o.status.code(), Some(0), "{}", printed(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 improved"));

    // Another host: refused (usage error) unless allowed, then said on top.
    let mut elsewhere = base.clone();
    elsewhere.host.fingerprint = "0123456789abcdef".into();
    let elsewhere_path = dir.path().join("elsewhere.json");
    write_run(&elsewhere, &elsewhere_path);
    let o = chipbench(&["compare", s(&f.run_dir), s(&elsewhere_path)]);
    assert_eq!(o.status.code(), Some(2), "{}", printed(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--allow-different-hosts"));
    let o = chipbench(&[
        "compare",
        s(&f.run_dir),
        s(&elsewhere_path),
        "--allow-different-hosts",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", printed(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .starts_with("WARNING: the runs come from different hosts")
    );

    // A cell on one side only is listed.
    let mut fewer = base.clone();
    fewer.cells.truncate(1);
    let fewer_path = dir.path().join("fewer.json");
    write_run(&fewer, &fewer_path);
    let o = chipbench(&["compare", s(&f.run_dir), s(&fewer_path)]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("only in baseline: resnet-mini fp32 tract:cpu"),
        "{}",
        printed(&o)
    );

    for bad in [
        vec!["compare", s(&f.run_dir)],
        vec!["compare", s(&f.run_dir), "/nonexistent"],
        vec![
            "compare",
            s(&f.run_dir),
            s(&f.run_dir),
            "--threshold",
            "abc",
        ],
    ] {
        let o = chipbench(&bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", printed(&o));
    }
}

#[test]
fn history_records_lists_shows_and_trends() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let base = load(&f.run_dir);
    // The fixture's run was recorded by bench itself.
    let o = chipbench(&["history", "list", "--db", s(&f.db)]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&base.run_id),
        "{}",
        printed(&o)
    );

    // Three runs with drifting medians, recorded by `history add`.
    let mut paths = Vec::new();
    for (i, factor) in [1.0, 1.02, 1.04].iter().enumerate() {
        let mut r = base.clone();
        r.run_id = format!("{}-{i}", base.run_id);
        r.started_at = format!("2026-11-28T10:0{i}:00Z");
        for c in &mut r.cells {
            slow_down(c, *factor);
        }
        let p = dir.path().join(format!("r{i}.json"));
        write_run(&r, &p);
        paths.push(p);
    }
    for p in &paths {
        let o = chipbench(&["history", "add", s(p), "--db", s(&db)]);
        assert_eq!(o.status.code(), Some(0), "{}", printed(&o));
    }
    let o = chipbench(&["history", "list", "--db", s(&db), "--json"]);
    let listed: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(
        listed[0]["run_id"],
        format!("{}-2", base.run_id),
        "newest first"
    );

    let o = chipbench(&[
        "history",
        "show",
        "latest",
        "--db",
        s(&db),
        "--format",
        "csv",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        1 + base.cells.len(),
        "{}",
        printed(&o)
    );

    let o = chipbench(&["history", "trend", "-m", "mlp", "--db", s(&db)]);
    assert_eq!(o.status.code(), Some(0), "{}", printed(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("3 runs") && out.contains('▁') && out.contains('█'),
        "{out}"
    );
    let trend_html = dir.path().join("trend.html");
    let o = chipbench(&[
        "history",
        "trend",
        "-m",
        "mlp",
        "--db",
        s(&db),
        "--format",
        "html",
        "-o",
        s(&trend_html),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", printed(&o));
    assert_eq!(
        std::fs::read_to_string(&trend_html)
            .unwrap()
            .matches("<svg")
            .count(),
        1
    );
    let o = chipbench(&["history", "trend", "-m", "nope", "--db", s(&db)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("recorded cells: mlp fp32 tract:cpu"),
        "{}",
        printed(&o)
    );

    // Against the history: the median of the three runs (the +2 % one) is the baseline.
    let o = chipbench(&[
        "compare",
        s(&f.run_dir),
        "--against-history",
        "3",
        "--db",
        s(&db),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", printed(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let cell = &v["cells"][0];
    // Each run's p50 is the geometric mean of its session medians.
    let sessions = &base.cells[0].session_p50_ms;
    let geometric_mean =
        (sessions.iter().map(|x| x.ln()).sum::<f64>() / sessions.len() as f64).exp();
    let expected = geometric_mean * 1.02;
    assert!(
        (cell["baseline"].as_f64().unwrap() - expected).abs() < 1e-9 * expected,
        "{cell}"
    );
    assert!(cell["notes"].to_string().contains("median of 3 runs"));
    let o = chipbench(&[
        "compare",
        s(&f.run_dir),
        "--against-history",
        "--db",
        s(&dir.path().join("empty.db")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", printed(&o));
}

#[test]
fn a_corrupt_history_keeps_the_run_and_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    std::fs::write(
        &db,
        b"this is not an SQLite database, but it is long enough to look like a header",
    )
    .unwrap();
    let out = dir.path().join("run");
    let o = chipbench(&[
        "bench",
        "--quick",
        "--quiet",
        "-m",
        "mlp",
        "-b",
        "tract",
        "--out",
        s(&out),
        "--history-db",
        s(&db),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", printed(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "history database {}: not an SQLite database",
            db.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("run.json"),
        "the message says where the results are: {err}"
    );
    assert!(
        load(&out)
            .cells
            .iter()
            .all(|c| c.status == chipbench_core::result::Status::Ok)
    );
}

#[test]
fn a_locked_history_keeps_the_run_and_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let o = chipbench(&["history", "add", s(&fixture().run_dir), "--db", s(&db)]);
    assert_eq!(o.status.code(), Some(0), "{}", printed(&o));
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = dir.path().join("run");
    let o = chipbench(&[
        "bench",
        "--quick",
        "--quiet",
        "-m",
        "mlp",
        "-b",
        "tract",
        "--out",
        s(&out),
        "--history-db",
        s(&db),
    ]);
    locker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", printed(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("locked by another process"),
        "{}",
        printed(&o)
    );
    assert!(out.join("run.json").is_file(), "the run's JSON is written");
}

#[test]
fn bench_exports_fail_before_measuring_and_are_written_after() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let start = Instant::now();
    let o = chipbench(&[
        "bench",
        "--quick",
        "--quiet",
        "--no-history",
        "-m",
        "mlp",
        "-b",
        "tract",
        "--out",
        s(&out),
        "--export",
        "html=/nonexistent-dir/report.html",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", printed(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/nonexistent-dir/report.html"),
        "{}",
        printed(&o)
    );
    assert!(!out.join("run.json").exists(), "nothing was measured");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "it failed at once"
    );

    let csv = dir.path().join("run.csv");
    let o = chipbench(&[
        "bench",
        "--quick",
        "--quiet",
        "--no-history",
        "-m",
        "mlp",
        "-b",
        "tract",
        "--out",
        s(&out),
        "--export",
        &format!("csv={}", csv.display()),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", printed(&o));
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 2);
}
