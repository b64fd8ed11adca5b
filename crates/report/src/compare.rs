//! The regression gate: compares a current run with a baseline (one run, or the last N runs of
//! the same host from the history) cell by cell and gives each cell a verdict.
//!
//! For each cell present on both sides (matched by model, variant, backend, device, scenario and
//! threads):
//! - **ratio** = current / baseline of the metric. Latency quantiles are computed from the raw
//!   samples (linear interpolation, as everywhere in chipbench); throughput is the recorded
//!   figure.
//! - **95 % CI of the ratio**: percentile bootstrap. Each replicate draws the baseline and the
//!   current figure independently: a latency quantile from its exact bootstrap distribution
//!   ([`QuantileBootstrap`]); throughput and energy per inference by scaling the recorded figure
//!   with a bootstrap replicate of the mean latency relative to the sample mean (throughput by
//!   mean / replicate, energy by replicate / mean: the meter reads one window, so the energy CI
//!   reflects the timing variation at the window's average power). Replicates of the mean are drawn
//!   from its normal limit, mean ± s/√n, which the minimum sample count makes accurate.
//! - **p-value**: two-sided Mann–Whitney U test of the raw latency samples of both sides.
//! - **verdict**: `regressed` / `improved` when the change is *significant* (p < α **and** the CI
//!   excludes 1) **and** the ratio lies beyond the threshold (above 1 + t or below 1 / (1 + t),
//!   so the band is symmetric in log space and means the same for latency and throughput);
//!   `unchanged` when the whole CI lies inside that band; `inconclusive` otherwise, with the reason.
//!
//! Against a history of N runs, the baseline figure is the median of the N runs' figures, its
//! bootstrap replicate the median of N runs drawn with replacement, each contributing a replicate
//! of its own figure (a two-stage bootstrap, so run-to-run variation widens the CI), and the
//! Mann–Whitney test takes the union of the N runs' samples.
//!
//! **From one session to the next, and one run to the next.** A figure comes from one session
//! of the model, and a fresh session in a fresh process runs at a different speed (memory
//! placement, the host's phase): on a 2-core VM the 22 µs mlp ran at 0.0222 ms in one process
//! and 0.0231 ms in the next, while each session's own CI was ±0.2 %. Cells therefore record the
//! medians of further sessions, each in a process of its own, in rounds across the run
//! (`session_p50_ms`, `bench --sessions`). From them the gate pools the spread s of the log
//! session medians of both sides, with its degrees of freedom. A slow phase of the host that
//! spans a whole run shows in no session: the gate assumes a run-level noise p per run for it
//! ([`GateSettings::run_noise`], default [`RUN_NOISE`]).
//!
//! - The median (`p50`) against one baseline run is compared as the geometric mean of each
//!   side's session medians (K_b and K_c of them): log ratio ± se·T with
//!   se² = s²(1/K_b + 1/K_c) + 2p² and T from Student's t (Welch–Satterthwaite degrees of
//!   freedom, since only s is estimated), drawn as replicates.
//! - Other figures come from the first session only; their replicates are scaled by
//!   exp(k·T), k² = 2s² + 2p² against one baseline run, and against a history (whose runs vary in
//!   the bootstrap already) k = the largest of s, p and the spread of the history's figures.
//! - The p-value is the larger of the samples' Mann–Whitney p and the ratio's own two-sided p
//!   (twice the share of replicates on the far side of 1).
//!
//! A run compared with itself has no run-to-run noise: neither term applies.
//!
//! **The host's own speed.** Runs record a check of the host's speed before the first cell and
//! after each cell (`SpeedCheck`: a fixed compute kernel on one thread). The checks around a
//! cell, current over baseline, say how much slower the host itself ran while that cell was
//! measured. When a change is significant and beyond the threshold but falls inside the band once
//! the host's change is taken out, and the host changed by more than the check's own noise
//! ([`HOST_CHECK_NOISE`]), the verdict is `inconclusive`: the code cannot be told from the host.
//! The checks never make a regression out of an unchanged cell; they only withhold a verdict that
//! the host explains.

use std::fmt;
use std::str::FromStr;

use chipbench_core::result::{CellResult, RunResult, Status};
use chipbench_core::stats::{self, QuantileBootstrap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, StandardNormal, StudentT};
use serde::Serialize;

use crate::error::{ReportError, Result};

/// The figure a comparison is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    P50,
    P90,
    P99,
    Throughput,
    Energy,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::P50,
        Metric::P90,
        Metric::P99,
        Metric::Throughput,
        Metric::Energy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P99 => "p99",
            Metric::Throughput => "throughput",
            Metric::Energy => "energy",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Metric::P50 => "median latency",
            Metric::P90 => "p90 latency",
            Metric::P99 => "p99 latency",
            Metric::Throughput => "throughput",
            Metric::Energy => "energy per inference",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::Throughput => "inf/s",
            Metric::Energy => "mJ",
            _ => "ms",
        }
    }

    /// The latency quantile the metric is, if it is one.
    pub fn quantile(self) -> Option<f64> {
        match self {
            Metric::P50 => Some(0.5),
            Metric::P90 => Some(0.9),
            Metric::P99 => Some(0.99),
            Metric::Throughput | Metric::Energy => None,
        }
    }

    pub fn higher_is_better(self) -> bool {
        self == Metric::Throughput
    }

    /// The figure of a cell, `None` when the cell lacks it.
    pub fn value(self, cell: &CellResult) -> Option<f64> {
        match self.quantile() {
            Some(q) if !cell.samples_ms.is_empty() => {
                let mut sorted = cell.samples_ms.clone();
                sorted.sort_by(f64::total_cmp);
                Some(stats::percentile(&sorted, q))
            }
            Some(_) => None,
            None if self == Metric::Throughput => cell.throughput_per_s,
            None => cell.energy.as_ref().map(|e| e.joules_per_inference * 1e3),
        }
    }
}

impl FromStr for Metric {
    type Err = ReportError;

    fn from_str(text: &str) -> Result<Self> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == text.to_ascii_lowercase())
            .ok_or_else(|| {
                let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                ReportError::Invalid(format!(
                    "unknown metric '{text}' (one of: {})",
                    names.join(", ")
                ))
            })
    }
}

/// What identifies a cell across runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct CellKey {
    pub model: String,
    pub variant: String,
    pub backend: String,
    pub device: String,
    pub scenario: String,
    pub threads: Option<usize>,
}

impl CellKey {
    pub fn of(cell: &CellResult) -> CellKey {
        CellKey {
            model: cell.model.name.clone(),
            variant: cell.model.variant.clone(),
            backend: cell.backend.name.clone(),
            device: cell.backend.device.clone(),
            scenario: cell.scenario.clone(),
            threads: cell.backend.threads,
        }
    }
}

impl fmt::Display for CellKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let threads = self.threads.map(|t| format!(" t{t}")).unwrap_or_default();
        write!(
            f,
            "{} {} {}:{} {}{threads}",
            self.model, self.variant, self.backend, self.device, self.scenario
        )
    }
}

/// How much the host speed ratio of two runs varies on a quiet host: the lower quartile of a
/// check varied by 0.4 % (sd) on an idle 2-core VM, so the ratio of two cells' bracketing checks
/// by about 0.4 %; a host change under 1 % is left as noise.
pub const HOST_CHECK_NOISE: f64 = 0.01;

/// The default run-level noise, for what no run shows: a slow phase of the host that spans a
/// whole run. The further sessions (each in its own process, in rounds over the run) show the
/// rest; with them, 76 real A/A cell pairs on a 2-vCPU VM gave no false alarm even with no
/// run-level noise assumed. 0.5 % keeps the gate's detection of a 5 % slowdown at 99 % when
/// sessions drift by 1 % (`scripts/gate-power.sh --run-offset 0.01`); `--run-noise` sets it.
pub const RUN_NOISE: f64 = 0.005;

/// The knobs of the gate. The defaults are what `scripts/gate-power.sh` measured against the
/// goal of >= 95 % detection of a 5 % slowdown and <= 1 % false alarms (see the README).
#[derive(Clone, Debug, Serialize)]
pub struct GateSettings {
    pub metric: Metric,
    /// Relative change that matters: regressed above 1 + t, improved below 1 / (1 + t).
    pub threshold: f64,
    /// Significance level of the Mann–Whitney test.
    pub alpha: f64,
    /// Run-to-run noise a run cannot show (relative sd of a run's figure beyond what its sessions
    /// show): process-level placement, a host phase that spans the whole run. Added to each side.
    pub run_noise: f64,
    /// Fewer samples than this on either side make a cell inconclusive.
    pub min_samples: usize,
    /// Bootstrap replicates of the ratio.
    pub resamples: usize,
    /// Seed of the bootstrap, so that the same inputs give the same verdicts.
    pub seed: u64,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            metric: Metric::P50,
            threshold: 0.03,
            alpha: 0.01,
            run_noise: RUN_NOISE,
            min_samples: 20,
            resamples: 2000,
            seed: 0,
        }
    }
}

impl GateSettings {
    pub fn describe(&self) -> String {
        let t = self.threshold;
        format!(
            "metric: {} ({}); threshold ±{} % (regressed above ×{:.4}, improved below ×{:.4}); significant: \
             p < {} and the 95 % CI of the ratio excluding 1, where p is the larger of the samples' \
             Mann–Whitney p and the ratio's own (from the t test of the session medians for p50); CI: {} \
             replicates of the ratio, each side's run-to-run noise taken as at least ±{} % (sd); at least {} \
             samples per side",
            self.metric.name(),
            self.metric.describe(),
            pct(t),
            1.0 + t,
            1.0 / (1.0 + t),
            self.alpha,
            self.resamples,
            pct(self.run_noise),
            self.min_samples
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Regressed,
    Improved,
    Unchanged,
    Inconclusive,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// One matched cell.
#[derive(Clone, Debug, Serialize)]
pub struct CellComparison {
    pub key: CellKey,
    pub baseline: f64,
    pub current: f64,
    /// current / baseline of the metric.
    pub ratio: f64,
    pub ci95: (f64, f64),
    pub p_value: f64,
    pub n_baseline: usize,
    pub n_current: usize,
    pub verdict: Verdict,
    /// Why the verdict, in one sentence.
    pub reason: String,
    /// What else changed between the two sides (model file, backend version).
    pub notes: Vec<String>,
    /// Current over baseline time of the host speed checks around this cell: above 1 the host
    /// itself ran slower while the current cell was measured. `None` when a side has no checks.
    pub host_speed_ratio: Option<f64>,
}

/// A cell that is on both sides but could not be compared (failed, skipped, no samples).
#[derive(Clone, Debug, Serialize)]
pub struct NotCompared {
    pub key: CellKey,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub settings: GateSettings,
    pub baseline: String,
    pub current: String,
    /// Set when the hosts differ and the user allowed it; printed on top.
    pub host_warning: Option<String>,
    pub cells: Vec<CellComparison>,
    pub not_compared: Vec<NotCompared>,
    pub only_in_baseline: Vec<CellKey>,
    pub only_in_current: Vec<CellKey>,
}

impl Comparison {
    pub fn count(&self, verdict: Verdict) -> usize {
        self.cells.iter().filter(|c| c.verdict == verdict).count()
    }

    pub fn regressed(&self) -> bool {
        self.count(Verdict::Regressed) > 0
    }
}

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

/// Draws bootstrap replicates of one cell's figure.
enum Replicator {
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
    },
}

impl Replicator {
    fn sessions(cell: &CellResult) -> Option<Self> {
        let (mean, k) = geometric_mean(&cell.session_p50_ms)?;
        let sd = session_spread(std::iter::once(cell))?.0;
        Some(Replicator::Sessions {
            log_mean: mean.ln(),
            standard_error: sd / (k as f64).sqrt(),
            t: StudentT::new((k - 1) as f64).ok()?,
        })
    }

    fn new(metric: Metric, cell: &CellResult) -> Option<Self> {
        match metric.quantile() {
            Some(q) => QuantileBootstrap::new(&cell.samples_ms, q).map(Replicator::Quantile),
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

    fn draw(&self, rng: &mut impl Rng) -> f64 {
        match self {
            Replicator::Quantile(b) => b.sample(rng),
            Replicator::Sessions {
                log_mean,
                standard_error,
                t,
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

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    stats::percentile(values, 0.5)
}

fn compare_cell(
    key: CellKey,
    baseline: &[&CellResult],
    current: &CellResult,
    host_speed_ratio: Option<f64>,
    settings: &GateSettings,
    same_run: bool,
    rng: &mut impl Rng,
) -> CellComparison {
    let metric = settings.metric;
    let run_noise = if same_run { 0.0 } else { settings.run_noise };
    let n_baseline = baseline
        .iter()
        .map(|c| c.samples_ms.len())
        .min()
        .unwrap_or(0);
    let n_current = current.samples_ms.len();
    let notes = notes(baseline, current, metric);
    let pooled: Vec<f64> = baseline
        .iter()
        .flat_map(|c| c.samples_ms.iter().copied())
        .collect();
    let p_value = stats::mann_whitney_p(&pooled, &current.samples_ms).unwrap_or(1.0);
    let mut base_values: Vec<f64> = baseline.iter().filter_map(|c| metric.value(c)).collect();
    let current_value = metric.value(current);
    let mut result = CellComparison {
        key,
        baseline: f64::NAN,
        current: current_value.unwrap_or(f64::NAN),
        ratio: f64::NAN,
        ci95: (f64::NAN, f64::NAN),
        p_value,
        n_baseline,
        n_current,
        verdict: Verdict::Inconclusive,
        reason: String::new(),
        notes,
        host_speed_ratio,
    };
    if let Some(host) = host_speed_ratio.filter(|h| h.ln().abs() > HOST_CHECK_NOISE) {
        result.notes.push(format!(
            "the host ran {} around this cell (speed check)",
            host_change(host)
        ));
    }
    let (Some(current_value), false) = (current_value, base_values.len() < baseline.len()) else {
        result.reason = format!("no {} figure on both sides", metric.describe());
        return result;
    };
    result.baseline = median(&mut base_values);
    result.ratio = current_value / result.baseline;
    if n_baseline.min(n_current) < settings.min_samples {
        result.reason = format!(
            "too few samples: {n_baseline} baseline / {n_current} current, at least {} needed on each side",
            settings.min_samples
        );
        return result;
    }
    // The median against a history whose runs all have sessions: each run's figure is the
    // geometric mean of its session medians, replicated from their spread.
    let history_sessions = metric == Metric::P50
        && baseline.len() >= 2
        && baseline
            .iter()
            .chain([&current])
            .all(|c| geometric_mean(&c.session_p50_ms).is_some());
    let replicator = |c: &CellResult| {
        if history_sessions {
            Replicator::sessions(c)
        } else {
            Replicator::new(metric, c)
        }
    };
    let base_reps: Option<Vec<Replicator>> = baseline.iter().map(|c| replicator(c)).collect();
    let (Some(base_reps), Some(cur_rep)) = (base_reps, replicator(current)) else {
        result.reason = "cannot bootstrap the figure".into();
        return result;
    };
    if history_sessions {
        base_values = baseline
            .iter()
            .filter_map(|c| geometric_mean(&c.session_p50_ms).map(|(g, _)| g))
            .collect();
        result.baseline = median(&mut base_values);
        result.current = geometric_mean(&current.session_p50_ms).map_or(f64::NAN, |(g, _)| g);
        result.ratio = result.current / result.baseline;
        result
            .notes
            .push("p50 here: each run's geometric mean of its session medians".into());
    }
    let sessions = session_spread(baseline.iter().copied().chain([current])).filter(|_| !same_run);
    if let Some((spread, _)) = sessions.filter(|(s, _)| *s > 0.0) {
        result.notes.push(format!(
            "fresh sessions vary by ±{:.1} % (sd of their medians); the CI carries that",
            spread * 100.0
        ));
    }
    let resamples = settings.resamples.max(1);
    let by_sessions = match (metric, baseline, sessions) {
        (Metric::P50, [base], Some((spread, df))) => geometric_mean(&base.session_p50_ms)
            .zip(geometric_mean(&current.session_p50_ms))
            .map(|(b, c)| (b, c, spread, df)),
        _ => None,
    };
    let mut ratios: Vec<f64> = match by_sessions {
        Some(((b, kb), (c, kc), spread, df)) => {
            result.baseline = b;
            result.current = c;
            result.ratio = c / b;
            result.notes.push(format!(
                "p50 here: geometric mean of the medians of {kb} baseline and {kc} current sessions; CI and p \
                 from Student's t on their logs ({df} degrees of freedom)"
            ));
            let estimated = spread.powi(2) * (1.0 / kb as f64 + 1.0 / kc as f64);
            let known = 2.0 * run_noise.powi(2);
            let se = (estimated + known).sqrt();
            let t = spread_distribution(estimated, df, known);
            (0..resamples)
                .map(|_| {
                    let z = match &t {
                        Some(t) => t.sample(rng),
                        None => StandardNormal.sample(rng),
                    };
                    result.ratio * (se * z).exp()
                })
                .collect()
        }
        None => {
            let run_to_run = RunToRun::new(
                sessions.filter(|_| !history_sessions),
                &base_values,
                run_noise,
            );
            let mut scratch = vec![0.0; base_reps.len()];
            (0..resamples)
                .map(|_| {
                    for slot in scratch.iter_mut() {
                        *slot = base_reps[rng.random_range(0..base_reps.len())].draw(rng);
                    }
                    cur_rep.draw(rng) * run_to_run.draw(rng) / median(&mut scratch)
                })
                .collect()
        }
    };
    ratios.sort_by(f64::total_cmp);
    // The samples' test knows nothing of the spread between sessions and runs; the ratio's
    // distribution does. Its two-sided p: twice the share on the far side of 1.
    let below = ratios.partition_point(|&r| r < 1.0);
    let far_side = below.min(ratios.len() - below).max(1);
    let p_ratio = (2.0 * far_side as f64 / ratios.len() as f64).min(1.0);
    result.p_value = result.p_value.max(p_ratio);
    result.ci95 = (
        stats::percentile(&ratios, 0.025),
        stats::percentile(&ratios, 0.975),
    );
    let (verdict, reason) = decide(
        result.ratio,
        result.ci95,
        result.p_value,
        host_speed_ratio,
        metric,
        settings,
    );
    result.verdict = verdict;
    result.reason = reason;
    result
}

/// The run-level factor each replicate of the current figure is scaled by (module docs):
/// exp(scale · T), T from Student's t when the scale comes from a few sessions, else normal.
struct RunToRun {
    scale: f64,
    t: Option<StudentT<f64>>,
}

impl RunToRun {
    fn new(sessions: Option<(f64, usize)>, base_values: &[f64], prior: f64) -> Self {
        let (s, df) = sessions.unwrap_or((0.0, 0));
        if base_values.len() == 1 {
            // One session and one run on each side.
            let (estimated, known) = (2.0 * s.powi(2), 2.0 * prior.powi(2));
            return RunToRun {
                scale: (estimated + known).sqrt(),
                t: spread_distribution(estimated, df, known),
            };
        }
        // The history's runs vary in the bootstrap; the current run is one more of them.
        let history = log_sd(base_values).unwrap_or(0.0);
        RunToRun {
            scale: s.max(prior).max(history),
            t: (s > prior.max(history))
                .then(|| spread_distribution(s.powi(2), df, 0.0))
                .flatten(),
        }
    }

    fn draw(&self, rng: &mut impl Rng) -> f64 {
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
fn spread_distribution(estimated: f64, df: usize, known: f64) -> Option<StudentT<f64>> {
    if estimated <= 0.0 || df == 0 {
        return None;
    }
    let effective = (estimated + known).powi(2) / (estimated.powi(2) / df as f64);
    StudentT::new(effective.min(1e6)).ok()
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
fn geometric_mean(values: &[f64]) -> Option<(f64, usize)> {
    let (mean, _, n) = log_moments(values);
    (n >= 2).then(|| (mean.exp(), n))
}

/// Pooled standard deviation of the log session medians of the given cells, each around its own
/// mean, with its degrees of freedom; `None` when no cell has two sessions.
fn session_spread<'a>(cells: impl Iterator<Item = &'a CellResult>) -> Option<(f64, usize)> {
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

/// "2.4 % slower" for a host speed ratio of 1.024.
fn host_change(host: f64) -> String {
    format!(
        "{} {}",
        signed_pct(host).trim_start_matches(['+', '-']),
        if host > 1.0 { "slower" } else { "faster" }
    )
}

/// The verdict rule of the module documentation.
fn decide(
    ratio: f64,
    ci: (f64, f64),
    p: f64,
    host_speed_ratio: Option<f64>,
    metric: Metric,
    settings: &GateSettings,
) -> (Verdict, String) {
    let upper = 1.0 + settings.threshold;
    let lower = 1.0 / upper;
    let significant = p < settings.alpha && (ci.0 > 1.0 || ci.1 < 1.0);
    let beyond = ratio > upper || ratio < lower;
    let worse = if metric.higher_is_better() {
        ratio < 1.0
    } else {
        ratio > 1.0
    };
    let band = format!("±{} %", pct(settings.threshold));
    let change = format!(
        "{} (CI {} .. {}, p = {})",
        signed_pct(ratio),
        signed_pct(ci.0),
        signed_pct(ci.1),
        fmt_p(p)
    );
    if significant && beyond {
        if let Some(host) = host_speed_ratio.filter(|h| h.ln().abs() > HOST_CHECK_NOISE) {
            // A slower host raises latency and energy per inference and lowers throughput.
            let without_host = if metric.higher_is_better() {
                ratio * host
            } else {
                ratio / host
            };
            if (lower..=upper).contains(&without_host) {
                return (
                    Verdict::Inconclusive,
                    format!(
                        "{change}: significant and beyond {band}, but the host itself ran {} around this cell \
                         (speed check) and the change is {} once that is taken out: the code cannot be told \
                         from the host; rerun on a quieter host",
                        host_change(host),
                        signed_pct(without_host)
                    ),
                );
            }
        }
        let what = if worse {
            Verdict::Regressed
        } else {
            Verdict::Improved
        };
        return (what, format!("{change}: significant and beyond {band}"));
    }
    if ci.0 >= lower && ci.1 <= upper {
        return (
            Verdict::Unchanged,
            format!("{change}: the whole CI lies within {band}"),
        );
    }
    let why = if beyond {
        format!(
            "{change}: beyond {band} but not significant (needs p < {} and a CI excluding 0 %)",
            settings.alpha
        )
    } else {
        format!(
            "{change}: the CI reaches beyond {band}, too noisy to rule out a change that large; more samples would settle it"
        )
    };
    (Verdict::Inconclusive, why)
}

fn notes(baseline: &[&CellResult], current: &CellResult, metric: Metric) -> Vec<String> {
    let mut notes = Vec::new();
    if baseline
        .iter()
        .any(|b| b.model.sha256 != current.model.sha256 && !b.model.sha256.is_empty())
    {
        notes.push("the model file changed (sha256 differs)".into());
    }
    if let Some(b) = baseline
        .iter()
        .find(|b| b.backend.version != current.backend.version)
    {
        notes.push(format!(
            "backend version {} -> {}",
            b.backend.version, current.backend.version
        ));
    }
    if baseline.len() > 1 {
        notes.push(format!("baseline: median of {} runs", baseline.len()));
    }
    if let Some(e) = current.energy.as_ref().filter(|_| metric == Metric::Energy) {
        if let Some(b) = baseline
            .iter()
            .filter_map(|b| b.energy.as_ref())
            .find(|b| b.method != e.method)
        {
            notes.push(format!("energy method {} -> {}", b.method, e.method));
        }
        if e.method.starts_with("estimated") {
            notes.push(format!(
                "energy is an estimate ({}), not a measurement",
                e.method
            ));
        }
    }
    notes
}

fn pct(fraction: f64) -> String {
    let v = fraction * 100.0;
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A ratio as a signed percentage change: 1.052 -> "+5.2 %".
pub fn signed_pct(ratio: f64) -> String {
    format!("{:+.1} %", (ratio - 1.0) * 100.0)
}

fn fmt_p(p: f64) -> String {
    if p < 1e-15 {
        "<1e-15".into()
    } else if p < 1e-4 {
        format!("{p:.0e}")
    } else {
        format!("{p:.4}")
    }
}

fn figure(v: f64, metric: Metric) -> String {
    if v.is_nan() {
        "-".into()
    } else if metric == Metric::Throughput {
        format!("{v:.1}")
    } else if metric == Metric::Energy {
        crate::charts::significant(v)
    } else {
        crate::fmt_ms(v)
    }
}

/// The comparison as a plain-text table for the terminal.
pub fn render_text(c: &Comparison) -> String {
    let mut out = String::new();
    if let Some(w) = &c.host_warning {
        out.push_str(&format!("WARNING: {w}\n\n"));
    }
    out.push_str(&format!(
        "baseline {}  ->  current {}\n",
        c.baseline, c.current
    ));
    out.push_str(&format!("{}\n\n", summary(c)));
    let unit = c.settings.metric.unit();
    let header = [
        "cell", "baseline", "current", "change", "95% CI", "p", "verdict",
    ];
    let rows: Vec<[String; 7]> = c
        .cells
        .iter()
        .map(|r| {
            [
                r.key.to_string(),
                format!("{} {unit}", figure(r.baseline, c.settings.metric)),
                format!("{} {unit}", figure(r.current, c.settings.metric)),
                if r.ratio.is_nan() {
                    "-".into()
                } else {
                    signed_pct(r.ratio)
                },
                if r.ci95.0.is_nan() {
                    "-".into()
                } else {
                    format!("{} .. {}", signed_pct(r.ci95.0), signed_pct(r.ci95.1))
                },
                fmt_p(r.p_value),
                r.verdict.label().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (s, w))| {
                if i == 0 || i == 6 {
                    format!("{s:<w$}")
                } else {
                    format!("{s:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    out.push_str(&line(&header.map(String::from)));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    let explained: Vec<&CellComparison> = c
        .cells
        .iter()
        .filter(|r| r.verdict != Verdict::Unchanged || !r.notes.is_empty())
        .collect();
    if !explained.is_empty() {
        out.push('\n');
        for r in explained {
            out.push_str(&format!("{}: {}: {}", r.key, r.verdict.label(), r.reason));
            for n in &r.notes {
                out.push_str(&format!("; {n}"));
            }
            out.push('\n');
        }
    }
    out.push_str(&one_sided_text(c));
    out.push_str(&format!("\n{}\n", c.settings.describe()));
    out
}

fn summary(c: &Comparison) -> String {
    let mut parts: Vec<String> = [
        Verdict::Regressed,
        Verdict::Improved,
        Verdict::Unchanged,
        Verdict::Inconclusive,
    ]
    .into_iter()
    .map(|v| format!("{} {}", c.count(v), v.label()))
    .collect();
    if !c.not_compared.is_empty() {
        parts.push(format!("{} not compared", c.not_compared.len()));
    }
    if !c.only_in_baseline.is_empty() || !c.only_in_current.is_empty() {
        parts.push(format!(
            "{} only in baseline, {} only in current",
            c.only_in_baseline.len(),
            c.only_in_current.len()
        ));
    }
    parts.join(", ")
}

fn one_sided_text(c: &Comparison) -> String {
    let mut out = String::new();
    for n in &c.not_compared {
        out.push_str(&format!("not compared: {}: {}\n", n.key, n.reason));
    }
    for k in &c.only_in_baseline {
        out.push_str(&format!("only in baseline: {k}\n"));
    }
    for k in &c.only_in_current {
        out.push_str(&format!("only in current: {k}\n"));
    }
    out
}

/// The comparison as GitHub-flavoured Markdown for a pull-request comment.
pub fn render_markdown(c: &Comparison) -> String {
    let mut out = String::from("## chipbench comparison\n\n");
    if let Some(w) = &c.host_warning {
        out.push_str(&format!("> **Warning:** {}\n\n", md(w)));
    }
    let headline = if c.regressed() {
        "**Regression detected.**"
    } else {
        "No regression."
    };
    out.push_str(&format!(
        "{headline} {}.  \nBaseline `{}`, current `{}`.\n\n",
        summary(c),
        md(&c.baseline),
        c.current
    ));
    let unit = c.settings.metric.unit();
    out.push_str(&format!(
        "| cell | baseline {unit} | current {unit} | change | 95 % CI | p | verdict |\n|---|---:|---:|---:|---:|---:|---|\n"
    ));
    for r in &c.cells {
        let verdict = match r.verdict {
            Verdict::Regressed => "**regressed**",
            v => v.label(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {verdict} |\n",
            md(&r.key.to_string()),
            figure(r.baseline, c.settings.metric),
            figure(r.current, c.settings.metric),
            if r.ratio.is_nan() {
                "-".into()
            } else {
                signed_pct(r.ratio)
            },
            if r.ci95.0.is_nan() {
                "-".into()
            } else {
                format!("{} .. {}", signed_pct(r.ci95.0), signed_pct(r.ci95.1))
            },
            fmt_p(r.p_value),
        ));
    }
    let explained: Vec<&CellComparison> = c
        .cells
        .iter()
        .filter(|r| r.verdict != Verdict::Unchanged || !r.notes.is_empty())
        .collect();
    if !explained.is_empty() {
        out.push('\n');
        for r in explained {
            let notes: String = r.notes.iter().map(|n| format!("; {}", md(n))).collect();
            out.push_str(&format!(
                "- {}: {}: {}{notes}\n",
                md(&r.key.to_string()),
                r.verdict.label(),
                md(&r.reason)
            ));
        }
    }
    let sided = one_sided_text(c);
    if !sided.is_empty() {
        out.push('\n');
        for line in sided.lines() {
            out.push_str(&format!("- {}\n", md(line)));
        }
    }
    let how = match c.settings.metric {
        Metric::Throughput => "throughput derived from the timed loop (inferences / wall time)",
        Metric::Energy => {
            "energy per inference as recorded with its method (see the notes: estimated figures are not measurements)"
        }
        _ => "latency measured (host monotonic clock, raw samples)",
    };
    out.push_str(&format!("\n_{how}; {}._\n", md(&c.settings.describe())));
    out
}

fn md(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{cell, lognormal_samples, run_with, sample_run};
    use chipbench_core::result::SpeedCheck;

    fn one(run: &RunResult) -> Baseline<'_> {
        Baseline {
            label: run.run_id.clone(),
            runs: vec![run],
            window: None,
        }
    }

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
            let c = compare(&one(&run), &run, &settings, None);
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
    fn a_ten_percent_slowdown_regresses_and_a_speedup_improves() {
        let base = run_with(
            "a",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.0, 0.03, 400, 1),
                None,
            )],
        );
        let slow = run_with(
            "b",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.10, 0.03, 400, 2),
                None,
            )],
        );
        let fast = run_with(
            "c",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(0.90, 0.03, 400, 3),
                None,
            )],
        );
        let s = GateSettings::default();
        let c = compare(&one(&base), &slow, &s, None);
        assert_eq!(
            c.cells[0].verdict,
            Verdict::Regressed,
            "{}",
            c.cells[0].reason
        );
        assert!(
            c.cells[0].ci95.0 > 1.05 && c.cells[0].ci95.1 < 1.15,
            "{:?}",
            c.cells[0].ci95
        );
        assert!(c.regressed());
        let c = compare(&one(&base), &fast, &s, None);
        assert_eq!(
            c.cells[0].verdict,
            Verdict::Improved,
            "{}",
            c.cells[0].reason
        );
        // Throughput goes the other way: a slowdown lowers it, and that is the regression.
        let t = GateSettings {
            metric: Metric::Throughput,
            ..GateSettings::default()
        };
        let c = compare(&one(&base), &slow, &t, None);
        assert!(c.cells[0].ratio < 0.95);
        assert_eq!(
            c.cells[0].verdict,
            Verdict::Regressed,
            "{}",
            c.cells[0].reason
        );
    }

    #[test]
    fn few_or_noisy_samples_are_inconclusive_with_the_reason() {
        let base = run_with(
            "a",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.0, 0.03, 10, 1),
                None,
            )],
        );
        let cur = run_with(
            "b",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.2, 0.03, 10, 2),
                None,
            )],
        );
        let c = compare(&one(&base), &cur, &GateSettings::default(), None);
        assert_eq!(c.cells[0].verdict, Verdict::Inconclusive);
        assert!(
            c.cells[0].reason.starts_with("too few samples"),
            "{}",
            c.cells[0].reason
        );
        let base = run_with(
            "a",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.0, 0.5, 60, 1),
                None,
            )],
        );
        let cur = run_with(
            "b",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.0, 0.5, 60, 2),
                None,
            )],
        );
        let c = compare(&one(&base), &cur, &GateSettings::default(), None);
        assert_eq!(
            c.cells[0].verdict,
            Verdict::Inconclusive,
            "{}",
            c.cells[0].reason
        );
        let reason = &c.cells[0].reason;
        assert!(
            reason.contains("too noisy") || reason.contains("not significant"),
            "{reason}"
        );
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
        let c = compare(&one(&base), &cur, &GateSettings::default(), None);
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
        let c = compare(&one(&a), &b, &GateSettings::default(), Some(warning));
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

    #[test]
    fn energy_is_compared_with_its_method_stated() {
        let run = sample_run();
        let settings = GateSettings {
            metric: Metric::Energy,
            ..GateSettings::default()
        };
        let c = compare(&one(&run), &run, &settings, None);
        let with_energy: Vec<&CellComparison> =
            c.cells.iter().filter(|r| r.key.model == "mlp").collect();
        assert_eq!(with_energy.len(), 3);
        for r in &with_energy {
            assert_eq!(r.verdict, Verdict::Unchanged, "{}", r.reason);
            assert!(
                r.notes.iter().any(|n| n.contains("is an estimate")),
                "{:?}",
                r.notes
            );
        }
        let without = c
            .cells
            .iter()
            .find(|r| r.key.model == "resnet-mini")
            .unwrap();
        assert_eq!(without.verdict, Verdict::Inconclusive);
        assert!(
            without.reason.contains("no energy per inference figure"),
            "{}",
            without.reason
        );

        let mut slower = run.clone();
        for cell in &mut slower.cells {
            cell.samples_ms.iter_mut().for_each(|x| *x *= 1.1);
            if let Some(e) = cell.energy.as_mut() {
                e.joules_per_inference *= 1.1;
            }
        }
        let c = compare(&one(&run), &slower, &settings, None);
        let mlp = c.cells.iter().find(|r| r.key.model == "mlp").unwrap();
        assert_eq!(mlp.verdict, Verdict::Regressed, "{}", mlp.reason);
        assert!((mlp.ratio - 1.1).abs() < 1e-9);
    }

    /// A one-cell run whose speed checks around the cell took `kernel_ms`.
    fn run_with_host(id: &str, median: f64, seed: u64, kernel_ms: f64) -> RunResult {
        let mut run = run_with(
            id,
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(median, 0.02, 400, seed),
                None,
            )],
        );
        run.speed_checks = (0..2)
            .map(|before_cell| SpeedCheck {
                before_cell,
                at_s: before_cell as f64,
                kernel_ms,
            })
            .collect();
        run
    }

    #[test]
    fn a_change_the_host_explains_is_withheld_and_one_it_does_not_is_not() {
        let s = GateSettings::default();
        let base = run_with_host("a", 1.0, 1, 0.300);
        // 5 % slower while the host itself ran 4 % slower: +1 % once that is out.
        let slow_host = run_with_host("b", 1.05, 2, 0.312);
        let r = &compare(&one(&base), &slow_host, &s, None).cells[0];
        assert_eq!(r.verdict, Verdict::Inconclusive, "{}", r.reason);
        assert!(
            r.reason.contains("host itself ran 4.0 % slower"),
            "{}",
            r.reason
        );
        assert!((r.host_speed_ratio.unwrap() - 1.04).abs() < 1e-9);
        // The same slowdown on an unchanged host is a regression ...
        let same_host = run_with_host("c", 1.05, 2, 0.3005);
        let r = &compare(&one(&base), &same_host, &s, None).cells[0];
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        // ... and so it is on a host that ran faster (the code is slower still).
        let fast_host = run_with_host("d", 1.05, 2, 0.290);
        let r = &compare(&one(&base), &fast_host, &s, None).cells[0];
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        // A 10 % slowdown is beyond what a 4 % slower host explains.
        let much_slower = run_with_host("e", 1.10, 2, 0.312);
        let r = &compare(&one(&base), &much_slower, &s, None).cells[0];
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        // Throughput: the slower host lowers it; the same pair is withheld.
        let t = GateSettings {
            metric: Metric::Throughput,
            ..GateSettings::default()
        };
        let r = &compare(&one(&base), &slow_host, &t, None).cells[0];
        assert_eq!(r.verdict, Verdict::Inconclusive, "{}", r.reason);
        // Runs without checks (older results) compare as before.
        let mut unchecked = slow_host.clone();
        unchecked.speed_checks.clear();
        let r = &compare(&one(&base), &unchecked, &s, None).cells[0];
        assert_eq!((r.verdict, r.host_speed_ratio), (Verdict::Regressed, None));
    }

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
        let r = &compare(&one(&base), &slower, &s, None).cells[0];
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        // Fresh sessions 3-5 % apart: a 5 % change is within what one more session could show.
        let base = with_sessions("a", 1.0, 1, [1.0, 1.04, 0.97, 1.03, 0.98]);
        let slower = with_sessions("b", 1.05, 2, [1.05, 1.0, 1.08, 1.02, 1.09]);
        let r = &compare(&one(&base), &slower, &s, None).cells[0];
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
        let r = &compare(&one(&base), &shifted, &noisy, None).cells[0];
        assert_eq!(r.verdict, Verdict::Inconclusive, "{}", r.reason);
        assert!(r.p_value > 0.01, "{}", r.p_value);
        let trusting = GateSettings {
            run_noise: 0.0,
            ..GateSettings::default()
        };
        let r = &compare(&one(&base), &shifted, &trusting, None).cells[0];
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        // The same run on both sides has no run-to-run noise at all.
        let r = &compare(&one(&base), &base, &noisy, None).cells[0];
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
        let r1 = &compare(&one(&runs[0]), &current, &trusting, None).cells[0];
        let width = |r: &CellComparison| r.ci95.1 - r.ci95.0;
        assert!(width(r) > 3.0 * width(r1), "{:?} vs {:?}", r.ci95, r1.ci95);
        assert_eq!(log_sd(&[1.0, 1.0]), None);
        let spread = log_sd(&[1.0, 1.1, 0.9]).unwrap();
        assert!((spread - 0.1).abs() < 0.01, "{spread}");
    }

    #[test]
    fn metrics_and_verdict_rule() {
        assert_eq!("P99".parse::<Metric>().unwrap(), Metric::P99);
        assert!("p42".parse::<Metric>().is_err());
        let s = GateSettings::default();
        assert_eq!(
            decide(1.10, (1.08, 1.12), 1e-9, None, Metric::P50, &s).0,
            Verdict::Regressed
        );
        assert_eq!(
            decide(1.10, (1.08, 1.12), 0.5, None, Metric::P50, &s).0,
            Verdict::Inconclusive
        );
        assert_eq!(
            decide(1.01, (1.005, 1.015), 1e-9, None, Metric::P50, &s).0,
            Verdict::Unchanged
        );
        assert_eq!(
            decide(0.90, (0.88, 0.92), 1e-9, None, Metric::Throughput, &s).0,
            Verdict::Regressed
        );
        assert_eq!(
            decide(1.0, (0.9, 1.1), 0.9, None, Metric::P50, &s).0,
            Verdict::Inconclusive
        );
    }
}
