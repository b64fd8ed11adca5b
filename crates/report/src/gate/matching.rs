//! Pairs the cells of the current run with those of the baseline runs and says which cells are
//! on one side only or cannot be compared; each pair goes to `analysis`.

use chipbench_core::result::{CellResult, RunResult, Status};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::analysis::compare_cell;
use super::comparison::{CellKey, Comparison, NotCompared};
use super::decision::{Significance, decide, holm};
use super::estimation::{geometric_mean, median};
use super::settings::{GateSettings, Metric};
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
///
/// Each cell's bootstrap draws from a random stream of its own, chosen by its key
/// ([`cell_rng`]): adding, removing or reordering other cells leaves its CI as it was. The
/// verdicts of the tested cells are decided together, on p-values adjusted by Holm's method.
pub fn compare(
    baseline: &Baseline,
    current: &RunResult,
    settings: &GateSettings,
    host_warning: Option<String>,
) -> Comparison {
    // A run against itself: the same sessions on both sides, so nothing varies between them.
    let same_run = matches!(baseline.runs.as_slice(), [b] if b.run_id == current.run_id);
    let mut cells = Vec::new();
    let mut tested = Vec::new();
    let mut not_compared = Vec::new();
    let mut only_in_current = Vec::new();
    for (index, cell) in current.cells.iter().enumerate() {
        let key = CellKey::of(cell);
        if is_peak_search_cell(cell) {
            if baseline
                .runs
                .iter()
                .any(|r| r.cells.iter().any(|c| CellKey::of(c) == key))
            {
                not_compared.push(NotCompared {
                    key,
                    reason: "a --find-peak search's cell: its search's peak is compared instead"
                        .into(),
                });
            }
            continue;
        }
        let found: Vec<(&RunResult, usize, &CellResult)> = baseline
            .runs
            .iter()
            .filter_map(|r| {
                let (index, cell) = r
                    .cells
                    .iter()
                    .enumerate()
                    .find(|(_, c)| CellKey::of(c) == key && usable(c))?;
                Some((*r, index, cell))
            })
            .take(baseline.window.unwrap_or(usize::MAX))
            .collect();
        let matches: Vec<&CellResult> = found.iter().map(|(_, _, c)| *c).collect();
        // The p50 of cells with further sessions is mostly the sessions' (see `host_time`).
        let by_sessions = settings.metric_for(cell) == Metric::P50
            && matches
                .iter()
                .chain([&cell])
                .all(|c| geometric_mean(&c.session_p50_ms).is_some());
        let host_speed_ratio = found
            .iter()
            .map(|(r, i, c)| host_time(r, *i, c, by_sessions))
            .collect::<Option<Vec<f64>>>()
            .zip(host_time(current, index, cell, by_sessions))
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
            (Some(_), false) => {
                let mut rng = cell_rng(settings.seed, &key);
                let (result, was_tested) = compare_cell(
                    key,
                    &matches,
                    cell,
                    host_speed_ratio,
                    settings,
                    same_run,
                    &mut rng,
                );
                tested.push(was_tested);
                cells.push(result);
            }
        }
    }
    // Holm over the tested cells, then each tested cell's verdict.
    let p: Vec<f64> = cells
        .iter()
        .zip(&tested)
        .map(|(c, &t)| if t { c.p_value } else { f64::NAN })
        .collect();
    let adjusted = holm(&p);
    let family = tested.iter().filter(|&&t| t).count();
    for ((cell, adjusted), _) in cells
        .iter_mut()
        .zip(adjusted)
        .zip(&tested)
        .filter(|(_, t)| **t)
    {
        cell.p_adjusted = adjusted;
        let significance = Significance {
            p: cell.p_value,
            adjusted,
            family,
        };
        (cell.verdict, cell.reason) = decide(
            cell.ratio,
            cell.ci95,
            significance,
            cell.host_speed_ratio,
            cell.metric,
            settings,
        );
    }
    let mut only_in_baseline: Vec<CellKey> = baseline
        .runs
        .iter()
        .flat_map(|r| {
            r.cells
                .iter()
                .filter(|c| !is_peak_search_cell(c))
                .map(CellKey::of)
        })
        .filter(|k| !current.cells.iter().any(|c| CellKey::of(c) == *k))
        .collect();
    only_in_baseline.sort();
    only_in_baseline.dedup();
    Comparison {
        settings: settings.clone(),
        baseline: baseline.label.clone(),
        current: current.run_id.clone(),
        host_warning,
        tested: family,
        cells,
        not_compared,
        only_in_baseline,
        only_in_current,
        peaks: super::peaks::compare_peaks(&baseline.runs, current, settings),
    }
}

/// A probe of a `--find-peak` search, or the offline run that set its first rate: which rates a
/// search probed depends on the verdicts before, so these cells say nothing alone.
fn is_peak_search_cell(cell: &CellResult) -> bool {
    cell.scenario_point
        .as_deref()
        .is_some_and(|p| p.contains("-peak"))
}

/// The random stream of one cell's bootstrap: the settings' seed picks the generator, the cell's
/// key (FNV-1a of its fields, stable across platforms and Rust versions) the stream.
fn cell_rng(seed: u64, key: &CellKey) -> ChaCha8Rng {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let threads = key.threads.map(|t| t.to_string()).unwrap_or_default();
    for field in [
        &key.model,
        &key.variant,
        &key.backend,
        &key.device,
        &key.scenario,
        &threads,
    ] {
        for byte in field.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(hash);
    rng
}

/// The host's kernel time for the figure of cell `index` of `run` ([`host_time_around`] the
/// cell). For the p50 of a cell with K sessions (`by_sessions`), one session is the cell's first
/// and K - 1 ran in the rounds after the last cell, which no check brackets: their share of the
/// figure is weighted with the run's median check (its typical speed), so the figure's host
/// speed is exp((ln around + (K - 1) ln run) / K).
fn host_time(run: &RunResult, index: usize, cell: &CellResult, by_sessions: bool) -> Option<f64> {
    let around = host_time_around(run, index)?;
    let k = cell.session_p50_ms.iter().filter(|s| **s > 0.0).count();
    if !by_sessions || k < 2 {
        return Some(around);
    }
    let mut all: Vec<f64> = run.speed_checks.iter().map(|c| c.kernel_ms).collect();
    let typical = median(&mut all);
    let k = k as f64;
    Some(((around.ln() + (k - 1.0) * typical.ln()) / k).exp())
}

/// The host's speed around cell `index` of `run`: the mean kernel time of the check just before
/// the cell was measured and the one just after, `None` when the cell has no check after it
/// (it was not measured in this run: resumed, or skipped).
///
/// A check's `before_cell` is the number of cells recorded before it, and only measured cells
/// are followed by a check: cells recorded without one (skipped backends, cells taken over from
/// an interrupted run) shift the labels. So the check after cell `index` is the one labelled
/// `index + 1`, and the check before it the last one labelled `index` or less.
fn host_time_around(run: &RunResult, index: usize) -> Option<f64> {
    let after = run
        .speed_checks
        .iter()
        .find(|c| c.before_cell == index + 1)?;
    let before = run
        .speed_checks
        .iter()
        .filter(|c| c.before_cell <= index)
        .max_by_key(|c| c.before_cell);
    let around: Vec<f64> = before
        .into_iter()
        .chain([after])
        .map(|c| c.kernel_ms)
        .collect();
    Some(around.iter().sum::<f64>() / around.len() as f64)
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
    use chipbench_core::result::SpeedCheck;
    use rand::Rng;

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
    fn a_cell_s_ci_does_not_depend_on_the_other_cells() {
        let a = |seed| {
            cell(
                "a",
                "fp32",
                "tract",
                lognormal_samples(1.0, 0.05, 300, seed),
                None,
            )
        };
        let b = |seed| {
            cell(
                "b",
                "fp32",
                "tract",
                lognormal_samples(2.0, 0.05, 300, seed),
                None,
            )
        };
        let settings = GateSettings {
            metric: Metric::P90,
            ..GateSettings::default()
        };
        let alone = compare(
            &baseline_of(&run_with("x", vec![a(1)])),
            &run_with("y", vec![a(2)]),
            &settings,
            None,
        );
        // Another cell compared first: a shared random stream would have drawn its replicates
        // before this cell's.
        let with_other = compare(
            &baseline_of(&run_with("x", vec![b(3), a(1)])),
            &run_with("y", vec![b(4), a(2)]),
            &settings,
            None,
        );
        assert_eq!(with_other.cells[1].key.model, "a");
        assert_eq!(alone.cells[0].ci95, with_other.cells[1].ci95);
        assert_eq!(alone.cells[0].p_value, with_other.cells[1].p_value);
        // Another key draws another stream.
        let renamed = compare(
            &baseline_of(&run_with("x", vec![b(1)])),
            &run_with("y", vec![b(2)]),
            &settings,
            None,
        );
        assert_ne!(cell_rng(0, &alone.cells[0].key).random::<u64>(), {
            cell_rng(0, &renamed.cells[0].key).random::<u64>()
        });
    }

    fn check(before_cell: usize, kernel_ms: f64) -> SpeedCheck {
        SpeedCheck {
            before_cell,
            at_s: before_cell as f64,
            kernel_ms,
        }
    }

    #[test]
    fn the_checks_around_a_cell_after_a_skipped_one_are_found() {
        // Cell 1 was skipped: no check follows it, so the check before cell 2 is labelled 1.
        let run = |id: &str, checks: Vec<SpeedCheck>| {
            let mut skipped = cell("s", "fp32", "ort", Vec::new(), None);
            skipped.status = Status::Skipped;
            let mut r = run_with(
                id,
                vec![
                    cell(
                        "a",
                        "fp32",
                        "tract",
                        lognormal_samples(1.0, 0.02, 400, 1),
                        None,
                    ),
                    skipped,
                    cell(
                        "b",
                        "fp32",
                        "tract",
                        lognormal_samples(1.0, 0.02, 400, 2),
                        None,
                    ),
                ],
            );
            r.speed_checks = checks;
            r
        };
        let base = run("x", vec![check(0, 0.3), check(1, 0.3), check(3, 0.3)]);
        let current = run("y", vec![check(0, 0.3), check(1, 0.33), check(3, 0.3)]);
        let c = compare(
            &baseline_of(&base),
            &current,
            &GateSettings::default(),
            None,
        );
        let b = c.cells.iter().find(|r| r.key.model == "b").unwrap();
        // The mean of the checks before (0.33) and after (0.30) it, over the baseline's 0.30.
        assert!(
            (b.host_speed_ratio.unwrap() - 1.05).abs() < 1e-9,
            "{:?}",
            b.host_speed_ratio
        );
        let a = c.cells.iter().find(|r| r.key.model == "a").unwrap();
        assert!((a.host_speed_ratio.unwrap() - 1.05).abs() < 1e-9);
        // A cell no check follows (taken over from an interrupted run) has no host figure.
        let mut resumed = current.clone();
        resumed.speed_checks.pop();
        let c = compare(
            &baseline_of(&base),
            &resumed,
            &GateSettings::default(),
            None,
        );
        let b = c.cells.iter().find(|r| r.key.model == "b").unwrap();
        assert_eq!(b.host_speed_ratio, None);
    }

    #[test]
    fn the_host_speed_of_a_sessions_median_weighs_the_whole_run() {
        // Five cells; the p50 compares the geometric means of five sessions each, 5 % slower.
        // The host ran 4 % slower around the first cell only: that covers its first session,
        // one fifth of the figure, so it does not explain the change.
        let run = |id: &str, level: f64, kernel: [f64; 6]| {
            let cells = (0..5)
                .map(|i| {
                    let l = if i == 0 { level } else { 1.0 };
                    let mut c = cell(
                        &format!("m{i}"),
                        "fp32",
                        "tract",
                        lognormal_samples(l, 0.02, 400, i + 10 * level as u64),
                        None,
                    );
                    c.session_p50_ms = [1.0, 1.001, 0.999, 1.0, 1.002].map(|s| s * l).to_vec();
                    c
                })
                .collect();
            let mut r = run_with(id, cells);
            r.speed_checks = kernel
                .iter()
                .enumerate()
                .map(|(i, &k)| check(i, k))
                .collect();
            r
        };
        let s = GateSettings::default();
        let base = run("x", 1.0, [0.3; 6]);
        let slow_first = run("y", 1.05, [0.312, 0.312, 0.3, 0.3, 0.3, 0.3]);
        let r = &compare(&baseline_of(&base), &slow_first, &s, None).cells[0];
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        assert!((r.host_speed_ratio.unwrap() - 1.04f64.powf(0.2)).abs() < 1e-9);
        // A host 4 % slower over the whole run explains it: withheld.
        let slow_all = run("z", 1.05, [0.312; 6]);
        let r = &compare(&baseline_of(&base), &slow_all, &s, None).cells[0];
        assert_eq!(r.verdict, Verdict::Inconclusive, "{}", r.reason);
        // The first session's figures (p90 here) keep the checks around the cell.
        let p90 = GateSettings {
            metric: Metric::P90,
            ..GateSettings::default()
        };
        let r = &compare(&baseline_of(&base), &slow_first, &p90, None).cells[0];
        assert!((r.host_speed_ratio.unwrap() - 1.04).abs() < 1e-9);
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
