//! What the gate is asked: the figure to compare and the knobs of the verdict rule.

use std::borrow::Cow;
use std::str::FromStr;

use chipbench_core::result::CellResult;
use chipbench_core::stats;
use serde::Serialize;

use super::format::pct;
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
    /// The generate scenario's time to first token, per request.
    #[serde(rename = "ttft-p50")]
    TtftP50,
    #[serde(rename = "ttft-p99")]
    TtftP99,
    /// The generate scenario's time per output token, every decode step.
    #[serde(rename = "tpot-p50")]
    TpotP50,
    #[serde(rename = "tpot-p99")]
    TpotP99,
}

impl Metric {
    pub const ALL: [Metric; 9] = [
        Metric::P50,
        Metric::P90,
        Metric::P99,
        Metric::Throughput,
        Metric::Energy,
        Metric::TtftP50,
        Metric::TtftP99,
        Metric::TpotP50,
        Metric::TpotP99,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P99 => "p99",
            Metric::Throughput => "throughput",
            Metric::Energy => "energy",
            Metric::TtftP50 => "ttft-p50",
            Metric::TtftP99 => "ttft-p99",
            Metric::TpotP50 => "tpot-p50",
            Metric::TpotP99 => "tpot-p99",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Metric::P50 => "median latency",
            Metric::P90 => "p90 latency",
            Metric::P99 => "p99 latency",
            Metric::Throughput => "throughput",
            Metric::Energy => "energy per inference",
            Metric::TtftP50 => "median time to first token",
            Metric::TtftP99 => "p99 time to first token",
            Metric::TpotP50 => "median time per output token",
            Metric::TpotP99 => "p99 time per output token",
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
            Metric::P50 | Metric::TtftP50 | Metric::TpotP50 => Some(0.5),
            Metric::P90 => Some(0.9),
            Metric::P99 | Metric::TtftP99 | Metric::TpotP99 => Some(0.99),
            Metric::Throughput | Metric::Energy => None,
        }
    }

    /// The metric that matters for a scenario, `compare`'s default for its cells: latency for
    /// single-stream, throughput for offline, the tail of query latency for server and
    /// multi-stream (MLPerf's figures of those scenarios), the time per output token for
    /// generate.
    pub fn of_scenario(scenario: &str) -> Metric {
        match scenario {
            "offline" => Metric::Throughput,
            "server" | "multi-stream" => Metric::P99,
            "generate" => Metric::TpotP50,
            _ => Metric::P50,
        }
    }

    pub fn higher_is_better(self) -> bool {
        self == Metric::Throughput
    }

    /// The samples the metric is a figure of, ms: a generate cell's TTFTs (one per request) or
    /// TPOTs (every decode step), every cell's latency samples otherwise.
    pub fn samples(self, cell: &CellResult) -> Cow<'_, [f64]> {
        let generation = cell.generation.as_ref();
        match self {
            Metric::TtftP50 | Metric::TtftP99 => Cow::Owned(
                generation
                    .map(|g| g.per_request.iter().map(|r| r.ttft_ms).collect())
                    .unwrap_or_default(),
            ),
            Metric::TpotP50 | Metric::TpotP99 => Cow::Owned(
                generation
                    .map(|g| {
                        g.per_request
                            .iter()
                            .flat_map(|r| r.tpot_ms.iter().copied())
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => Cow::Borrowed(&cell.samples_ms),
        }
    }

    /// The figure of a cell, `None` when the cell lacks it.
    pub fn value(self, cell: &CellResult) -> Option<f64> {
        let samples = self.samples(cell);
        match self.quantile() {
            Some(q) if !samples.is_empty() => {
                let mut sorted = samples.into_owned();
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

/// How much the host speed ratio of two runs varies on a quiet host: the lower quartile of a
/// check varied by 0.4 % (sd) on an idle 2-core VM, so the ratio of two cells' bracketing checks
/// by about 0.4 %; a host change under 1 % is left as noise.
pub const HOST_CHECK_NOISE: f64 = 0.01;

/// The default run-level noise, for what no run shows: a slow phase of the host that spans a
/// whole run. The further sessions (each in its own process, in rounds over the run) show the
/// rest; with them, 76 real A/A cell pairs on a 2-vCPU VM gave no false alarm even with no
/// run-level noise assumed. With 0.5 %, five sessions drifting by 1 % each and a run-level drift
/// of 0.5 % shared by a run's cells, the gate detects 97 % of 5 % slowdowns per cell with 0.6 %
/// false alarms per gate run of four cells (`scripts/gate-power.sh --session-drift 0.01`); a
/// run-level drift beyond what is assumed shows as false alarms of whole gate runs (README).
/// `--run-noise` sets it.
pub const RUN_NOISE: f64 = 0.005;

/// Samples a latency quantile needs beyond it on each side: with fewer, its bootstrap replicates
/// are mostly the few largest samples (the p99 of 20 samples lies between the two largest) and
/// its CI far too narrow. The p50 needs 20, the p90 100 and the p99 1000 samples per side.
pub const TAIL_SAMPLES: usize = 10;

/// The knobs of the gate. The defaults are what `scripts/gate-power.sh` measured against the
/// goal of >= 95 % detection of a 5 % slowdown and <= 1 % false alarms (see the README).
#[derive(Clone, Debug, Serialize)]
pub struct GateSettings {
    /// The metric of every cell, or of single-stream cells under `per_scenario`.
    pub metric: Metric,
    /// No `--metric` was given: each cell is gated on its scenario's metric
    /// ([`Metric::of_scenario`]).
    pub per_scenario: bool,
    /// Relative change that matters: regressed above 1 + t, improved below 1 / (1 + t).
    pub threshold: f64,
    /// Family-wise significance level: the chance that any cell of a comparison in which
    /// nothing changed comes out significant, held by Holm's adjustment of the cells' p-values.
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
            per_scenario: false,
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
    /// The metric `cell` is gated on.
    pub fn metric_for(&self, cell: &CellResult) -> Metric {
        if self.per_scenario {
            Metric::of_scenario(&cell.scenario)
        } else {
            self.metric
        }
    }

    /// Samples needed on each side for `metric`: `min_samples`, and for a latency quantile q at
    /// least [`TAIL_SAMPLES`] / (1 - q).
    pub fn required_samples(&self, metric: Metric) -> usize {
        let tail = metric.quantile().map_or(0, |q| {
            (TAIL_SAMPLES as f64 / (1.0 - q) - 1e-6).ceil() as usize
        });
        self.min_samples.max(tail)
    }

    pub fn describe(&self) -> String {
        let t = self.threshold;
        let test = |metric: Metric| match metric {
            Metric::P50 | Metric::TtftP50 | Metric::TpotP50 => "the samples' Mann–Whitney p",
            Metric::P90 | Metric::P99 | Metric::TtftP99 | Metric::TpotP99 => {
                "the samples' quantile test p"
            }
            Metric::Throughput => {
                "the p of Welch's t test of the mean latency (of the throughput windows' rates for a load-generator cell)"
            }
            Metric::Energy => "nothing else (one meter window per cell, no per-inference samples)",
        };
        let metrics: Vec<Metric> = if self.per_scenario {
            vec![Metric::P50, Metric::Throughput, Metric::P99]
        } else {
            vec![self.metric]
        };
        let what = if self.per_scenario {
            "each scenario's own (single-stream: p50, offline: throughput, server and multi-stream: p99; --metric sets one for all)".to_string()
        } else {
            format!("{} ({})", self.metric.name(), self.metric.describe())
        };
        let tests: Vec<String> = metrics
            .iter()
            .map(|&m| format!("{}: {}", m.name(), test(m)))
            .collect();
        let samples: Vec<String> = metrics
            .iter()
            .map(|&m| format!("{} for {}", self.required_samples(m), m.name()))
            .collect();
        format!(
            "metric: {what}; threshold ±{} % (regressed above ×{:.4}, improved below ×{:.4}); significant: \
             Holm-adjusted p < {} over the tested cells (family-wise) and the 95 % CI of the ratio excluding 1, \
             where p is the larger of the ratio's own (from the t test of the session medians for p50) and \
             {}; CI: {} replicates of the ratio, each side's run-to-run noise taken as at least ±{} % (sd); \
             at least {} samples per side",
            pct(t),
            1.0 + t,
            1.0 / (1.0 + t),
            self.alpha,
            tests.join(", "),
            self.resamples,
            pct(self.run_noise),
            samples.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_quantile_needs_samples_beyond_it() {
        let with = |metric| GateSettings {
            metric,
            ..GateSettings::default()
        };
        assert_eq!(with(Metric::P50).required_samples(Metric::P50), 20);
        assert_eq!(with(Metric::P90).required_samples(Metric::P90), 100);
        assert_eq!(with(Metric::P99).required_samples(Metric::P99), 1000);
        assert_eq!(
            with(Metric::Throughput).required_samples(Metric::Throughput),
            20
        );
    }

    #[test]
    fn metrics_parse_by_name() {
        assert_eq!("P99".parse::<Metric>().unwrap(), Metric::P99);
        assert!("p42".parse::<Metric>().is_err());
    }
}
