//! Pairs the cells of the current run with those of the baseline runs and says which cells are
//! on one side only or cannot be compared; each pair goes to `analysis`.

use chipbench_core::result::{CellResult, RunResult, Status};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::analysis::compare_cell;
use super::comparison::{CellKey, Comparison, NotCompared};
use super::estimation::median;
use super::settings::GateSettings;
use crate::error::{ReportError, Result};

/// The baseline side: one run, or runs of a host from the history, newest first.
pub struct Baseline<'a> {
    pub label: String,
    pub runs: Vec<&'a RunResult>,
    /// Per cell, only the first (newest) this many runs that measured it count.
    pub window: Option<usize>,
}

/// Refuses runs of different host fingerprints unless allowed; when allowed, returns the warning.
pub fn check_hosts(
    baseline: &[&RunResult],
    current: &RunResult,
    allow: bool,
) -> Result<Option<String>> {
    let differing: Vec<&&RunResult> = baseline
        .iter()
        .filter(|b| b.host.fingerprint != current.host.fingerprint)
        .collect();
    let Some(first) = differing.first() else {
        return Ok(None);
    };
    let describe = |r: &RunResult| {
        format!(
            "{} ({}, fingerprint {})",
            r.run_id, r.host.cpu_brand, r.host.fingerprint
        )
    };
    let message = format!(
        "the runs come from different hosts: baseline {} and current {}",
        describe(first),
        describe(current)
    );
    if allow {
        Ok(Some(format!(
            "{message}; compared anyway (--allow-different-hosts): differences may be the hardware's"
        )))
    } else {
        Err(ReportError::Invalid(format!(
            "{message}; pass --allow-different-hosts to compare them anyway"
        )))
    }
}

/// Compares every cell of `current` with the baseline.
pub fn compare(
    baseline: &Baseline,
    current: &RunResult,
    settings: &GateSettings,
    host_warning: Option<String>,
) -> Comparison {
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    // A run against itself: the same sessions on both sides, so nothing varies between them.
    let same_run = matches!(baseline.runs.as_slice(), [b] if b.run_id == current.run_id);
    let mut cells = Vec::new();
    let mut not_compared = Vec::new();
    let mut only_in_current = Vec::new();
    for (index, cell) in current.cells.iter().enumerate() {
        let key = CellKey::of(cell);
        let found: Vec<(&CellResult, Option<f64>)> = baseline
            .runs
            .iter()
            .filter_map(|r| {
                let (index, cell) = r
                    .cells
                    .iter()
                    .enumerate()
                    .find(|(_, c)| CellKey::of(c) == key && usable(c))?;
                Some((cell, host_time_around(r, index)))
            })
            .take(baseline.window.unwrap_or(usize::MAX))
            .collect();
        let matches: Vec<&CellResult> = found.iter().map(|(c, _)| *c).collect();
        let host_speed_ratio = found
            .iter()
            .map(|(_, t)| *t)
            .collect::<Option<Vec<f64>>>()
            .zip(host_time_around(current, index))
            .map(|(mut base, current)| current / median(&mut base));
        let any_match = baseline
            .runs
            .iter()
            .find_map(|r| r.cells.iter().find(|c| CellKey::of(c) == key));
        match (any_match, matches.is_empty()) {
            (None, _) => only_in_current.push(key),
            _ if !usable(cell) => not_compared.push(NotCompared {
                key,
                reason: format!("current: {}", unusable_reason(cell)),
            }),
            (Some(b), true) => not_compared.push(NotCompared {
                key,
                reason: format!("baseline: {}", unusable_reason(b)),
            }),
            (Some(_), false) => cells.push(compare_cell(
                key,
                &matches,
                cell,
                host_speed_ratio,
                settings,
                same_run,
                &mut rng,
            )),
        }
    }
    let mut only_in_baseline: Vec<CellKey> = baseline
        .runs
        .iter()
        .flat_map(|r| r.cells.iter().map(CellKey::of))
        .filter(|k| !current.cells.iter().any(|c| CellKey::of(c) == *k))
        .collect();
    only_in_baseline.sort();
    only_in_baseline.dedup();
    Comparison {
        settings: settings.clone(),
        baseline: baseline.label.clone(),
        current: current.run_id.clone(),
        host_warning,
        cells,
        not_compared,
        only_in_baseline,
        only_in_current,
    }
}

/// The host's speed around cell `index` of `run`: the mean kernel time of the checks just before
/// and just after the cell, `None` when the run has neither.
fn host_time_around(run: &RunResult, index: usize) -> Option<f64> {
    let around: Vec<f64> = run
        .speed_checks
        .iter()
        .filter(|c| c.before_cell == index || c.before_cell == index + 1)
        .map(|c| c.kernel_ms)
        .collect();
    (!around.is_empty()).then(|| around.iter().sum::<f64>() / around.len() as f64)
}

fn usable(cell: &CellResult) -> bool {
    cell.status == Status::Ok && !cell.samples_ms.is_empty()
}

fn unusable_reason(cell: &CellResult) -> String {
    match cell.status {
        Status::Ok => "no latency samples recorded".into(),
        s => format!(
            "{} ({})",
            format!("{s:?}").to_lowercase(),
            cell.error.as_deref().unwrap_or("no reason recorded")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Metric, Verdict, render_markdown, render_text};
    use crate::test_support::{baseline_of, cell, lognormal_samples, run_with, sample_run};

    #[test]
    fn a_run_compared_with_itself_is_unchanged_everywhere() {
        let run = sample_run();
        // The p99 of a few hundred samples is too uncertain for a ±3 % band; the gate says so
        // (inconclusive) rather than calling it unchanged.
        for metric in [Metric::P50, Metric::P90, Metric::Throughput] {
            let settings = GateSettings {
                metric,
                ..GateSettings::default()
            };
            let c = compare(&baseline_of(&run), &run, &settings, None);
            let ok = run.cells.iter().filter(|c| c.status == Status::Ok).count();
            assert_eq!(c.cells.len(), ok);
            for r in &c.cells {
                assert_eq!(
                    r.verdict,
                    Verdict::Unchanged,
                    "{metric:?} {}: {}",
                    r.key,
                    r.reason
                );
                assert_eq!(r.ratio, 1.0);
            }
            assert_eq!(c.not_compared.len(), 1, "the failed cell is listed");
            assert!(!c.regressed());
        }
    }

    #[test]
    fn one_sided_cells_are_listed() {
        let base = run_with(
            "a",
            vec![
                cell(
                    "m",
                    "fp32",
                    "tract",
                    lognormal_samples(1.0, 0.03, 100, 1),
                    None,
                ),
                cell(
                    "gone",
                    "fp32",
                    "tract",
                    lognormal_samples(1.0, 0.03, 100, 2),
                    None,
                ),
            ],
        );
        let cur = run_with(
            "b",
            vec![
                cell(
                    "m",
                    "fp32",
                    "tract",
                    lognormal_samples(1.0, 0.03, 100, 3),
                    None,
                ),
                cell(
                    "new",
                    "fp32",
                    "tract",
                    lognormal_samples(1.0, 0.03, 100, 4),
                    None,
                ),
            ],
        );
        let c = compare(&baseline_of(&base), &cur, &GateSettings::default(), None);
        assert_eq!(c.cells.len(), 1);
        assert_eq!(c.only_in_baseline[0].model, "gone");
        assert_eq!(c.only_in_current[0].model, "new");
        let text = render_text(&c);
        assert!(
            text.contains("only in baseline: gone fp32")
                && text.contains("only in current: new fp32"),
            "{text}"
        );
        let md = render_markdown(&c);
        assert!(md.contains("only in baseline: gone fp32"), "{md}");
    }

    #[test]
    fn different_hosts_are_refused_unless_allowed() {
        let a = sample_run();
        let mut b = sample_run();
        b.host.fingerprint = "ffffffffffffffff".into();
        let err = check_hosts(&[&a], &b, false).unwrap_err().to_string();
        assert!(
            err.contains("different hosts") && err.contains("--allow-different-hosts"),
            "{err}"
        );
        let warning = check_hosts(&[&a], &b, true).unwrap().unwrap();
        let c = compare(
            &baseline_of(&a),
            &b,
            &GateSettings::default(),
            Some(warning),
        );
        assert!(render_text(&c).starts_with("WARNING: the runs come from different hosts"));
        assert!(render_markdown(&c).contains("> **Warning:** the runs come from different hosts"));
        assert_eq!(check_hosts(&[&a], &a, false).unwrap(), None);
    }

    #[test]
    fn history_baseline_is_the_median_of_the_runs() {
        let runs: Vec<RunResult> = [1.0, 1.02, 5.0]
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                run_with(
                    &format!("h{i}"),
                    vec![cell(
                        "m",
                        "fp32",
                        "tract",
                        lognormal_samples(m, 0.02, 200, i as u64),
                        None,
                    )],
                )
            })
            .collect();
        let cur = run_with(
            "c",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.01, 0.02, 200, 9),
                None,
            )],
        );
        let baseline = Baseline {
            label: "history".into(),
            runs: runs.iter().collect(),
            window: Some(3),
        };
        let c = compare(&baseline, &cur, &GateSettings::default(), None);
        let r = &c.cells[0];
        // The outlier run (5 ms) does not drag the baseline: the median run is ~1.02 ms.
        assert!((r.baseline - 1.02).abs() < 0.02, "{}", r.baseline);
        assert_ne!(r.verdict, Verdict::Regressed);
        assert!(r.notes.iter().any(|n| n.contains("median of 3 runs")));
    }
}
