//! Renders run results for people and for CI: the terminal table, report formats (Markdown,
//! CSV, HTML with SVG charts, JSON, Bencher and github-action-benchmark exports), the comparison of
//! two runs with its regression verdicts, and the SQLite history of runs.

mod charts;
pub mod edge;
pub mod error;
pub mod export;
pub mod figures;
pub mod fleet;
pub mod gate;
pub mod generation;
pub mod history;
pub mod markdown;
pub mod peaks;
pub mod terminal;
#[cfg(test)]
mod test_support;
pub mod trend;

pub use error::{ReportError, Result};

/// Reads a run: a `run.json` file, or a run folder that holds one.
pub fn load_run(path: &std::path::Path) -> Result<chipbench_core::result::RunResult> {
    let file = if path.is_dir() {
        path.join("run.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| ReportError::io(&file, e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ReportError::NotARun {
            path: file.clone(),
            reason: e.to_string(),
        })?;
    let schema = value
        .get("schema")
        .and_then(|s| s.as_str())
        .unwrap_or("none");
    let readable = chipbench_core::result::READABLE_SCHEMAS;
    if !readable.contains(&schema) {
        return Err(ReportError::NotARun {
            path: file,
            reason: format!("schema '{schema}', expected one of {}", readable.join(", ")),
        });
    }
    serde_json::from_value(value).map_err(|e| ReportError::NotARun {
        path: file,
        reason: e.to_string(),
    })
}

use chipbench_core::DeviceKind;
use chipbench_core::result::{CellEnergy, CellResult, RunResult, Status};

/// One row of the summary table, shared by the terminal and Markdown renderers.
pub(crate) struct Row {
    pub cells: Vec<String>,
}

pub(crate) const HEADER: [&str; 14] = [
    "model",
    "variant",
    "backend",
    "device",
    "threads",
    "scenario",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "inf/s",
    "CPU ms/inf",
    "energy/inf",
    "peak RSS",
    "status",
];

/// Columns that hold numbers (right-aligned).
pub(crate) const NUMERIC: [bool; 14] = [
    false, false, false, false, true, false, true, true, true, true, true, true, true, false,
];

pub(crate) fn row(cell: &CellResult, failure_index: Option<usize>) -> Row {
    let latency = cell.latency_ms.as_ref();
    let status = match (cell.status, failure_index) {
        (Status::Ok, _) => "ok".to_string(),
        (Status::Failed, Some(i)) => format!("failed [{i}]"),
        (Status::Skipped, Some(i)) => format!("skipped [{i}]"),
        (s, None) => format!("{s:?}").to_lowercase(),
    };
    Row {
        cells: vec![
            cell.model.name.clone(),
            cell.model.variant.clone(),
            cell.backend.name.clone(),
            device_label(cell),
            cell.backend
                .threads
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            cell.scenario_label(),
            opt(latency.map(|l| l.p50), fmt_ms),
            opt(latency.map(|l| l.p90), fmt_ms),
            opt(latency.map(|l| l.p99), fmt_ms),
            opt(cell.throughput_per_s, |v| format!("{v:.1}")),
            opt(cell.cpu_ms_per_inference, fmt_ms),
            opt(cell.energy.as_ref(), energy_label),
            opt(cell.peak_rss_bytes, |b| format_bytes(b as f64)),
            status,
        ],
    }
}

/// The device, marked when its timings are not what its API suggests (a software rasterizer is
/// not a GPU).
pub fn device_label(cell: &CellResult) -> String {
    let device = match cell.backend.device_kind {
        DeviceKind::SoftwareRasterizer => {
            format!("{} (software rasterizer, not a GPU)", cell.backend.device)
        }
        _ => cell.backend.device.clone(),
    };
    match &cell.edge {
        Some(edge) => format!("{device} (this host, {} limits)", edge.profile),
        None => device,
    }
}

/// The explanations for the footnote markers of failed and skipped cells, numbered from 1.
pub(crate) fn footnotes(cells: &[CellResult]) -> Vec<(usize, &CellResult)> {
    cells
        .iter()
        .filter(|c| c.status != Status::Ok)
        .enumerate()
        .map(|(i, c)| (i + 1, c))
        .collect()
}

/// The cells whose decisions were compared with the fp32 model's (zoo models, see
/// [`chipbench_core::task`]), each as `model variant on backend:device`.
pub(crate) fn task_accuracies(
    cells: &[CellResult],
) -> Vec<(String, &chipbench_core::task::TaskAccuracy)> {
    cells
        .iter()
        .filter_map(|c| {
            let task = c.accuracy.as_ref()?.task.as_ref()?;
            let label = format!(
                "{} {} on {}:{}",
                c.model.name, c.model.variant, c.backend.name, c.backend.device
            );
            Some((label, task))
        })
        .collect()
}

/// What the task accuracy sections say of how it was obtained.
pub(crate) const TASK_ACCURACY_HOW: &str = "measured: each cell's outputs on the accuracy check's \
    samples decoded into the model's decisions (class, boxes, text, yes/no) and compared with the \
    fp32 reference's decisions on the same inputs";

/// Each distinct engine warning of the run once, with the cells that logged it
/// (`model variant on backend:device`), in the order first logged.
pub(crate) fn engine_warnings(cells: &[CellResult]) -> Vec<(&str, Vec<String>)> {
    let mut warnings: Vec<(&str, Vec<String>)> = Vec::new();
    for cell in cells {
        let label = format!(
            "{} {} on {}:{}",
            cell.model.name, cell.model.variant, cell.backend.name, cell.backend.device
        );
        for warning in &cell.warnings {
            match warnings.iter_mut().find(|(w, _)| *w == warning.as_str()) {
                Some((_, from)) => from.push(label.clone()),
                None => warnings.push((warning, vec![label.clone()])),
            }
        }
    }
    warnings
}

pub(crate) fn rows(cells: &[CellResult]) -> Vec<Row> {
    let mut next = 0;
    cells
        .iter()
        .map(|c| {
            let index = (c.status != Status::Ok).then(|| {
                next += 1;
                next
            });
            row(c, index)
        })
        .collect()
}

/// How the table's figures were obtained.
pub(crate) const LEGEND: &str = "Figures measured on this host, except those marked ~...* (estimated). Latency: host monotonic clock around each \
inference, outputs copied back (single-stream; p50/p90/p99 by linear interpolation). inf/s: timed \
inferences / wall time of the timed loop. CPU ms/inf: getrusage user+sys of the whole process per \
inference (can exceed latency with several threads). energy/inf: joules per inference over a window of many \
inferences, measured by the sensor its method names (RAPL, NVML, hwmon, INA3221); ~...* = estimated, not \
measured (CPU time x per-core active power; the method is in run.json). Peak RSS: the process's high-water \
mark during the cell. Scenarios other than single-stream (offline, server, multi-stream; the point says \
batch b, concurrency c, rate q, samples per query k): p50/p90/p99 are query latencies from each query's scheduled \
arrival (queueing included), inf/s is samples per second from the first issue to the last end, CPU ms/inf is per \
sample. generate (the point says batch b, prompt tokens p, decode steps g): p50/p90/p99 are the requests' \
end-to-end times and inf/s is generated tokens per second; TTFT and TPOT are in the generate section.";

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// Energy per inference in readable units; an estimate (any `estimated:` part in its method)
/// is marked `~...*` so it never passes for a measurement.
pub fn energy_label(energy: &CellEnergy) -> String {
    let joules = energy.joules_per_inference;
    let (scaled, unit) = if joules >= 1.0 {
        (joules, "J")
    } else if joules >= 1e-3 {
        (joules * 1e3, "mJ")
    } else {
        (joules * 1e6, "µJ")
    };
    // Three significant digits: neither sensors nor estimates are finer than that.
    let digits = if scaled >= 100.0 {
        0
    } else if scaled >= 10.0 {
        1
    } else {
        2
    };
    let value = format!("{scaled:.digits$} {unit}");
    if energy.is_estimate() {
        format!("~{value}*")
    } else {
        value
    }
}

/// How steady the host was during a run, from its speed checks: one sentence, `None` for runs
/// without checks. The spread is the slowest check over the fastest; "steady" only below the
/// gate's default threshold (3 %), since a host that varied by as much as the threshold can make
/// or hide a change the gate flags.
pub fn host_speed_line(run: &RunResult) -> Option<String> {
    let times: Vec<f64> = run.speed_checks.iter().map(|c| c.kernel_ms).collect();
    let fastest = times.iter().copied().reduce(f64::min)?;
    let slowest = times.iter().copied().reduce(f64::max)?;
    let spread = (slowest / fastest - 1.0) * 100.0;
    let threshold = gate::GateSettings::default().threshold * 100.0;
    let verdict = if spread >= threshold {
        format!(
            "the host was not steady (as much as the gate's {threshold:.0} % threshold); the cells measured while \
             it was slow carry that noise"
        )
    } else {
        format!("steady (under the gate's {threshold:.0} % threshold)")
    };
    Some(format!(
        "Host speed during the run: {} checks of a fixed kernel (measured, monotonic clock), slowest {spread:.1} % \
         above the fastest: {verdict}.",
        times.len()
    ))
}

/// Milliseconds with three significant digits at least (0.0123, 1.23, 12.3, 123).
pub fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else if v >= 0.1 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

pub use chipbench_core::format_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_speed_line_says_how_steady_the_host_was() {
        let mut run = crate::test_support::sample_run();
        assert_eq!(host_speed_line(&run), None);
        let check = |before_cell, kernel_ms| chipbench_core::result::SpeedCheck {
            before_cell,
            at_s: before_cell as f64,
            kernel_ms,
        };
        run.speed_checks = vec![check(0, 0.300), check(1, 0.303), check(2, 0.301)];
        let line = host_speed_line(&run).unwrap();
        assert!(
            line.contains("3 checks")
                && line.contains("1.0 %")
                && line.ends_with("steady (under the gate's 3 % threshold)."),
            "{line}"
        );
        run.speed_checks.push(check(3, 0.330));
        let line = host_speed_line(&run).unwrap();
        assert!(
            line.contains("10.0 %") && line.contains("not steady"),
            "{line}"
        );
        // A 4 % spread is beyond the gate's 3 % threshold: not steady either.
        run.speed_checks[3].kernel_ms = 0.312;
        let line = host_speed_line(&run).unwrap();
        assert!(
            line.contains("4.0 %") && line.contains("not steady"),
            "{line}"
        );
        assert!(markdown::render(&run).contains("not steady"));
        assert!(terminal::render(&run).contains("not steady"));
    }

    #[test]
    fn load_run_names_the_file_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let run = crate::test_support::sample_run();
        std::fs::write(
            dir.path().join("run.json"),
            serde_json::to_vec(&run).unwrap(),
        )
        .unwrap();
        assert_eq!(
            load_run(dir.path()).unwrap(),
            run,
            "a folder means its run.json"
        );
        let missing = load_run(&dir.path().join("nope.json"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.json: "), "{missing}");
        let other = dir.path().join("other.json");
        std::fs::write(&other, r#"{"schema": "something/2"}"#).unwrap();
        let err = load_run(&other).unwrap_err().to_string();
        assert!(
            err.contains("not a chipbench run: schema 'something/2'"),
            "{err}"
        );
        // A version 1 run (before fleets: no `hosts`) still loads, as a run of one host.
        let mut v1 = serde_json::to_value(&run).unwrap();
        v1["schema"] = "chipbench.run/1".into();
        v1.as_object_mut().unwrap().remove("hosts");
        std::fs::write(&other, v1.to_string()).unwrap();
        let old = load_run(&other).unwrap();
        assert!(old.hosts.is_empty() && old.cells == run.cells);
        std::fs::write(&other, "{").unwrap();
        assert!(
            load_run(&other)
                .unwrap_err()
                .to_string()
                .contains("not a chipbench run")
        );
    }

    #[test]
    fn formats_numbers_readably() {
        assert_eq!(fmt_ms(0.01234), "0.0123");
        assert_eq!(fmt_ms(1.234), "1.23");
        assert_eq!(fmt_ms(123.4), "123");
        assert_eq!(format_bytes(1536.0), "1.5 KiB");
        assert_eq!(format_bytes(12.0), "12 B");
        assert_eq!(format_bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
        let energy = |joules_per_inference, method: &str| CellEnergy {
            method: method.into(),
            joules_per_inference,
            avg_power_w: 10.0,
            window_s: 1.0,
            inferences: 1000,
            domains: Vec::new(),
            idle_power_w: None,
            joules_per_inference_above_idle: None,
        };
        assert_eq!(
            energy_label(&energy(0.000151, "estimated:cpu-time x active-power")),
            "~151 µJ*"
        );
        assert_eq!(energy_label(&energy(0.0123, "measured:rapl")), "12.3 mJ");
        assert_eq!(
            energy_label(&energy(
                1.5,
                "measured:rapl + estimated:gpu-busy x active-power"
            )),
            "~1.50 J*"
        );
        assert_eq!(
            energy_label(&energy(
                0.0123,
                "measured:hwmon + estimated:cpu-time x active-power"
            )),
            "~12.3 mJ*"
        );
    }
}
