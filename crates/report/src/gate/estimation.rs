//! The mathematics of the gate's CI: bootstrap replicates of a cell's figure, the spread of fresh
//! sessions, run-to-run noise, Student's t for a spread estimated from a few sessions, and the
//! spread of a history of runs.

use chipbench_core::result::CellResult;
use chipbench_core::stats::{self, QuantileBootstrap};
use rand::Rng;
use rand_distr::{Distribution, Normal, StandardNormal, StudentT};

use super::settings::Metric;
use super::special::two_sided_t;

/// Draws bootstrap replicates of one cell's figure.
pub(super) enum Replicator {
    Quantile(QuantileBootstrap),
    /// The recorded figure scaled by a replicate of the mean latency relative to the mean:
    /// `value * mean / replicate` (throughput) or `value * replicate / mean` (energy).
    Scaled {
        value: f64,
        mean: f64,
        spread: Normal<f64>,
        per_time: bool,
    },
    /// The geometric mean of a cell's session medians: exp(mean log + se · T), T ~ t(K - 1).
    Sessions {
        log_mean: f64,
        standard_error: f64,
        t: StudentT<f64>,
        df: f64,
    },
}

impl Replicator {
    pub(super) fn sessions(cell: &CellResult) -> Option<Self> {
        let (mean, k) = geometric_mean(&cell.session_p50_ms)?;
        let sd = session_spread(std::iter::once(cell))?.0;
        Some(Replicator::Sessions {
            log_mean: mean.ln(),
            standard_error: sd / (k as f64).sqrt(),
            t: StudentT::new((k - 1) as f64).ok()?,
            df: (k - 1) as f64,
        })
    }

    pub(super) fn new(metric: Metric, cell: &CellResult) -> Option<Self> {
        match metric.quantile() {
            Some(q) => QuantileBootstrap::new(&metric.samples(cell), q).map(Replicator::Quantile),
            // A load-generator cell's throughput: its figure scaled by a replicate of the mean
            // of its windows' rates (workers overlap, so the mean latency does not give it).
            None if metric == Metric::Throughput && throughput_windows(cell).is_some() => {
                let windows = throughput_windows(cell)?;
                let (mean, variance_of_mean) = mean_and_variance_of_mean(windows);
                Some(Replicator::Scaled {
                    value: metric.value(cell)?,
                    mean,
                    spread: Normal::new(mean, variance_of_mean.sqrt()).ok()?,
                    per_time: false,
                })
            }
            None => {
                let value = metric.value(cell)?;
                let n = cell.samples_ms.len() as f64;
                let mean = cell.samples_ms.iter().sum::<f64>() / n;
                let var = cell
                    .samples_ms
                    .iter()
                    .map(|x| (x - mean).powi(2))
                    .sum::<f64>()
                    / (n - 1.0).max(1.0);
                let spread = Normal::new(mean, (var / n).sqrt()).ok()?;
                Some(Replicator::Scaled {
                    value,
                    mean,
                    spread,
                    per_time: metric == Metric::Throughput,
                })
            }
        }
    }

    /// The degrees of freedom of the Student's t the replicates carry, `None` when normal-like.
    pub(super) fn df(&self) -> Option<f64> {
        match self {
            Replicator::Sessions { df, .. } => Some(*df),
            _ => None,
        }
    }

    pub(super) fn draw(&self, rng: &mut impl Rng) -> f64 {
        match self {
            Replicator::Quantile(b) => b.sample(rng),
            Replicator::Sessions {
                log_mean,
                standard_error,
                t,
                ..
            } => (log_mean + standard_error * t.sample(rng)).exp(),
            Replicator::Scaled {
                value,
                mean,
                spread,
                per_time,
            } => {
                let replicate = spread.sample(rng).max(f64::MIN_POSITIVE);
                if *per_time {
                    value * mean / replicate
                } else {
                    value * replicate / mean
                }
            }
        }
    }
}

pub(super) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    stats::percentile(values, 0.5)
}

/// The run-level factor each replicate of the current figure is scaled by (the gate's module docs):
/// exp(scale · T), T from Student's t when the scale comes from a few sessions, else normal.
pub(super) struct RunToRun {
    scale: f64,
    t: Option<StudentT<f64>>,
    df: Option<f64>,
}

impl RunToRun {
    pub(super) fn new(sessions: Option<(f64, usize)>, base_values: &[f64], prior: f64) -> Self {
        let (s, df) = sessions.unwrap_or((0.0, 0));
        if base_values.len() == 1 {
            // One session and one run on each side.
            let (estimated, known) = (2.0 * s.powi(2), 2.0 * prior.powi(2));
            return RunToRun {
                scale: (estimated + known).sqrt(),
                t: spread_distribution(estimated, df, known),
                df: effective_df(estimated, df, known),
            };
        }
        // The history's runs vary in the bootstrap; the current run is one more of them.
        let history = log_sd(base_values).unwrap_or(0.0);
        let estimated = s > prior.max(history);
        RunToRun {
            scale: s.max(prior).max(history),
            t: estimated
                .then(|| spread_distribution(s.powi(2), df, 0.0))
                .flatten(),
            df: estimated
                .then(|| effective_df(s.powi(2), df, 0.0))
                .flatten(),
        }
    }

    /// The degrees of freedom of its Student's t, `None` when normal.
    pub(super) fn df(&self) -> Option<f64> {
        self.df
    }

    pub(super) fn draw(&self, rng: &mut impl Rng) -> f64 {
        let z = match &self.t {
            Some(t) => t.sample(rng),
            None => StandardNormal.sample(rng),
        };
        (self.scale * z).exp()
    }
}

/// Student's t for a spread whose square is `estimated` (from `df` degrees of freedom) plus
/// `known` (assumed, exact): Welch–Satterthwaite degrees of freedom, normal when nothing is
/// estimated.
pub(super) fn spread_distribution(estimated: f64, df: usize, known: f64) -> Option<StudentT<f64>> {
    StudentT::new(effective_df(estimated, df, known)?).ok()
}

/// The Welch–Satterthwaite degrees of freedom of [`spread_distribution`]; `None` when nothing
/// is estimated (normal).
pub(super) fn effective_df(estimated: f64, df: usize, known: f64) -> Option<f64> {
    if estimated <= 0.0 || df == 0 {
        return None;
    }
    let effective = (estimated + known).powi(2) / (estimated.powi(2) / df as f64);
    Some(effective.min(1e6))
}

/// Two-sided p of the two-sample quantile test (Mood's median test generalised to the
/// q-quantile): the share of each side's samples above the pooled q-quantile, compared by the
/// two-proportion z test. Equal q-quantiles leave about 1 - q of each side above it; a worse tail
/// puts more of the current side there. `None` when a side is empty.
pub(super) fn quantile_test_p(a: &[f64], b: &[f64], q: f64) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    pooled.sort_by(f64::total_cmp);
    let cut = stats::percentile(&pooled, q);
    let above = |s: &[f64]| s.iter().filter(|&&x| x > cut).count() as f64;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (ka, kb) = (above(a), above(b));
    let share = (ka + kb) / (na + nb);
    let se = (share * (1.0 - share) * (1.0 / na + 1.0 / nb)).sqrt();
    if se <= 0.0 {
        return Some(1.0);
    }
    Some(two_sided_t((kb / nb - ka / na) / se, f64::INFINITY))
}

/// Two-sided p of Welch's t test that `a` and `b` have the same mean; `None` under two samples
/// on a side.
/// The samples per second of each window of a load-generator cell's run (`None` for
/// single-stream, or with fewer than two windows).
pub(super) fn throughput_windows(cell: &CellResult) -> Option<&[f64]> {
    let windows = &cell.scenario_run.as_ref()?.throughput.windows;
    (windows.len() >= 2).then_some(windows.as_slice())
}

/// The mean of `x` and the variance of that mean (s² / n).
fn mean_and_variance_of_mean(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var / n)
}

pub(super) fn welch_p(a: &[f64], b: &[f64]) -> Option<f64> {
    let moments = |s: &[f64]| {
        let n = s.len() as f64;
        let mean = s.iter().sum::<f64>() / n;
        let var = s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var / n, n)
    };
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let ((ma, va, na), (mb, vb, nb)) = (moments(a), moments(b));
    let se2 = va + vb;
    if se2 <= 0.0 {
        return Some(if ma == mb { 1.0 } else { 0.0 });
    }
    let df = se2.powi(2) / (va.powi(2) / (na - 1.0) + vb.powi(2) / (nb - 1.0));
    Some(two_sided_t((mb - ma) / se2.sqrt(), df))
}

/// The logs of the positive values: their mean, their sum of squared deviations from it, and
/// how many there were.
fn log_moments(values: &[f64]) -> (f64, f64, usize) {
    let logs: Vec<f64> = values
        .iter()
        .filter(|v| **v > 0.0)
        .map(|v| v.ln())
        .collect();
    let n = logs.len();
    let mean = logs.iter().sum::<f64>() / n.max(1) as f64;
    let squares = logs.iter().map(|l| (l - mean).powi(2)).sum();
    (mean, squares, n)
}

/// Geometric mean of the positive values and how many there were; `None` under two.
pub(super) fn geometric_mean(values: &[f64]) -> Option<(f64, usize)> {
    let (mean, _, n) = log_moments(values);
    (n >= 2).then(|| (mean.exp(), n))
}

/// Pooled standard deviation of the log session medians of the given cells, each around its own
/// mean, with its degrees of freedom; `None` when no cell has two sessions.
pub(super) fn session_spread<'a>(
    cells: impl Iterator<Item = &'a CellResult>,
) -> Option<(f64, usize)> {
    let (squares, df) = cells
        .map(|c| log_moments(&c.session_p50_ms))
        .filter(|&(_, _, n)| n >= 2)
        .fold((0.0, 0), |(s, d), (_, squares, n)| (s + squares, d + n - 1));
    (df > 0).then(|| ((squares / df as f64).sqrt(), df))
}

/// Standard deviation of the logs of three or more values: of the baseline runs' figures, how much
/// a run's figure varies from run to run.
fn log_sd(values: &[f64]) -> Option<f64> {
    let (_, squares, n) = log_moments(values);
    (n >= 3).then(|| (squares / (n - 1) as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Baseline, CellComparison, GateSettings, Verdict, compare};
    use crate::test_support::{baseline_of, run_with_host};
    use chipbench_core::result::RunResult;

    #[test]
    fn sessions_that_vary_widen_the_ci_and_steady_ones_do_not() {
        let s = GateSettings::default();
        let with_sessions = |id: &str, median: f64, seed: u64, sessions: [f64; 5]| {
            let mut run = run_with_host(id, median, seed, 0.3);
            run.cells[0].session_p50_ms = sessions.to_vec();
            run
        };
        let base = with_sessions("a", 1.0, 1, [1.0, 1.001, 0.999, 1.0, 1.002]);
        let slower = with_sessions("b", 1.05, 2, [1.05, 1.049, 1.051, 1.05, 1.048]);
        let r = &compare(&baseline_of(&base), &slower, &s, None).cells[0];
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        // Fresh sessions 3-5 % apart: a 5 % change is within what one more session could show.
        let base = with_sessions("a", 1.0, 1, [1.0, 1.04, 0.97, 1.03, 0.98]);
        let slower = with_sessions("b", 1.05, 2, [1.05, 1.0, 1.08, 1.02, 1.09]);
        let r = &compare(&baseline_of(&base), &slower, &s, None).cells[0];
        assert_eq!(r.verdict, Verdict::Inconclusive, "{}", r.reason);
        assert!(r.p_value >= s.alpha, "{}", r.p_value);
        assert!(r.ci95.0 < 1.0 && r.ci95.1 - r.ci95.0 > 0.08, "{:?}", r.ci95);
        assert!(
            r.notes.iter().any(|n| n.contains("fresh sessions vary")),
            "{:?}",
            r.notes
        );
        let (spread, df) = session_spread([&base.cells[0], &slower.cells[0]].into_iter()).unwrap();
        assert_eq!(df, 8);
        assert!(spread > 0.02 && spread < 0.05, "{spread}");
    }

    #[test]
    fn a_shift_one_run_cannot_tell_from_run_to_run_noise_is_not_a_regression() {
        // 3.2 % slower with a tight CI of the samples: beyond ±3 %, but within 2.6 sd of a
        // run-to-run noise of 0.9 % per run (√2 × 0.9 % for the pair).
        let base = run_with_host("a", 1.0, 1, 0.3);
        let shifted = run_with_host("b", 1.032, 2, 0.3);
        let noisy = GateSettings {
            run_noise: 0.009,
            ..GateSettings::default()
        };
        let r = &compare(&baseline_of(&base), &shifted, &noisy, None).cells[0];
        assert_eq!(r.verdict, Verdict::Inconclusive, "{}", r.reason);
        assert!(r.p_value > 0.01, "{}", r.p_value);
        let trusting = GateSettings {
            run_noise: 0.0,
            ..GateSettings::default()
        };
        let r = &compare(&baseline_of(&base), &shifted, &trusting, None).cells[0];
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        // The same run on both sides has no run-to-run noise at all.
        let r = &compare(&baseline_of(&base), &base, &noisy, None).cells[0];
        assert_eq!(r.verdict, Verdict::Unchanged, "{}", r.reason);
        assert!(r.ci95.1 - r.ci95.0 < 0.01, "{:?}", r.ci95);
    }

    #[test]
    fn against_a_history_the_current_run_carries_the_run_to_run_spread() {
        // Five baseline runs whose medians spread by about 2 %, and a current run 3.5 % slower
        // than their median: beyond the ±3 % band, but within what one more run could show.
        let runs: Vec<RunResult> = [1.0, 0.98, 1.02, 1.01, 0.985]
            .iter()
            .enumerate()
            .map(|(i, &m)| run_with_host(&format!("h{i}"), m, i as u64, 0.3))
            .collect();
        let current = run_with_host("c", 1.035, 9, 0.3);
        let history = Baseline {
            label: "history".into(),
            runs: runs.iter().collect(),
            window: None,
        };
        let s = GateSettings::default();
        let r = &compare(&history, &current, &s, None).cells[0];
        assert_ne!(r.verdict, Verdict::Regressed, "{}", r.reason);
        // One baseline run, trusted as measured, gives the narrow CI of two runs' samples.
        let trusting = GateSettings {
            run_noise: 0.0,
            ..GateSettings::default()
        };
        let r1 = &compare(&baseline_of(&runs[0]), &current, &trusting, None).cells[0];
        let width = |r: &CellComparison| r.ci95.1 - r.ci95.0;
        assert!(width(r) > 3.0 * width(r1), "{:?} vs {:?}", r.ci95, r1.ci95);
        assert_eq!(log_sd(&[1.0, 1.0]), None);
        let spread = log_sd(&[1.0, 1.1, 0.9]).unwrap();
        assert!((spread - 0.1).abs() < 0.01, "{spread}");
    }
}
