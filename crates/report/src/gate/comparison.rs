//! What the gate answers: per matched cell a ratio, its CI, p and a verdict with the reason, and
//! the cells it could not compare.

use std::fmt;

use chipbench_core::result::CellResult;
use serde::Serialize;

use super::peaks::PeakComparison;
use super::settings::{GateSettings, Metric};

/// What identifies a cell across runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct CellKey {
    pub model: String,
    pub variant: String,
    pub backend: String,
    pub device: String,
    /// With its point for a load-generator scenario (`offline/b4-c2`).
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
            scenario: cell.scenario_label(),
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
    /// The figure compared: `--metric`, or the cell's scenario's own without it.
    pub metric: Metric,
    pub baseline: f64,
    pub current: f64,
    /// current / baseline of the metric.
    pub ratio: f64,
    pub ci95: (f64, f64),
    /// Two-sided p of the change: the larger of the ratio's own and the samples' test of the
    /// metric (see [`GateSettings::describe`]); NaN when the cell was not tested.
    pub p_value: f64,
    /// `p_value` after Holm's adjustment over the comparison's tested cells: what the verdict
    /// compares with alpha. NaN when the cell was not tested.
    pub p_adjusted: f64,
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
    /// How many cells were tested together: Holm's adjustment holds the chance of any false
    /// `regressed` or `improved` among them at alpha.
    pub tested: usize,
    pub cells: Vec<CellComparison>,
    pub not_compared: Vec<NotCompared>,
    pub only_in_baseline: Vec<CellKey>,
    pub only_in_current: Vec<CellKey>,
    /// `--find-peak` searches of a point on both sides (their probes are not compared as cells).
    pub peaks: Vec<PeakComparison>,
}

impl Comparison {
    pub fn count(&self, verdict: Verdict) -> usize {
        self.cells.iter().filter(|c| c.verdict == verdict).count()
    }

    pub fn regressed(&self) -> bool {
        self.count(Verdict::Regressed) > 0
            || self.peaks.iter().any(|p| p.verdict == Verdict::Regressed)
    }
}
