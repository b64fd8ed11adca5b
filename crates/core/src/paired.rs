//! The result of a paired A/B run (`chipbench ab`, `ab.json`, schema `chipbench.ab/1`): two sides
//! measured in one job, interleaved in short rounds, every round's pair kept so that the verdict
//! can be checked again.

use serde::{Deserialize, Serialize};

use crate::result::Host;

pub const AB_SCHEMA: &str = "chipbench.ab/1";

/// One paired run: its settings, the host, and a comparison per model and backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AbRun {
    pub schema: String,
    pub tool_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub host: Host,
    pub settings: AbSettings,
    pub cells: Vec<PairedCell>,
}

/// How the rounds were run and judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AbSettings {
    /// Rounds per cell: each times both sides once.
    pub rounds: usize,
    /// Pairs of fresh processes the rounds are spread over.
    pub processes: usize,
    /// Each side's timed window per round, seconds.
    pub window_s: f64,
    /// `random` (each round's order drawn from the seed) or `abba` (alternating AB, BA).
    pub order: String,
    /// Both sides at the same time on disjoint CPUs (`--duet`) instead of one after the other.
    pub duet: bool,
    /// Relative change that matters: regressed above 1 + t, improved below 1 / (1 + t).
    pub threshold: f64,
    /// Family-wise significance level over the run's cells (Holm).
    pub alpha: f64,
    pub seed: u64,
}

/// What one side runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SideRecord {
    /// The model's name and the file measured.
    pub model: String,
    pub path: String,
    /// The model's variant: `fp32` (the file as given) or the recipe chipbench derived it with
    /// (`--a-variant`/`--b-variant`).
    pub variant: String,
    /// `backend:device`
    pub backend: String,
    /// The session's intra-op threads.
    pub threads: Option<usize>,
    /// The backend settings (`--set`, `--a-set`, `--b-set`) the side's session ran with.
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
    /// The chipbench binary whose worker measured it.
    pub bin: String,
    /// The ONNX Runtime library it loaded, where the side names one.
    #[serde(default)]
    pub ort_lib: Option<String>,
    /// `protocol`: a long-lived worker of that binary, its session loaded and warmed once, timed
    /// window by window; `whole-process`: each round runs that binary's own `bench --json` for the
    /// cell (a build whose worker speaks another protocol version), and `mode_reason` says why.
    pub mode: String,
    #[serde(default)]
    pub mode_reason: Option<String>,
}

/// One round: each side's median latency over its window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// The pair of processes (one per side, counted from 0) that measured it.
    pub process: usize,
    /// Which side ran first (`a` or `b`); in a duet both ran at once and this is `a`.
    pub first: String,
    pub a_ms: f64,
    pub b_ms: f64,
    pub a_inferences: u64,
    pub b_inferences: u64,
}

/// Two sides compared on one model and backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedCell {
    pub a: SideRecord,
    pub b: SideRecord,
    pub rounds: Vec<Round>,
    /// `None` when the cell failed (see `error`).
    #[serde(default)]
    pub verdict: Option<PairedVerdict>,
    #[serde(default)]
    pub error: Option<String>,
    /// How each figure was obtained.
    pub provenance: std::collections::BTreeMap<String, String>,
}

/// The verdict on a cell's pairs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedVerdict {
    /// exp(mean ln(B/A)) over the process pairs, each pair's ln(B/A) the mean over its rounds:
    /// B's latency relative to A's.
    pub ratio: f64,
    /// Its 95 % CI: Student's t interval over the process pairs.
    pub ci95: [f64; 2],
    /// Student's t test of the pairs' log ratios against 0, two-sided: the verdict's p.
    pub p_value: f64,
    /// Wilcoxon's signed-rank test of the same log ratios, two-sided: a check that needs no
    /// normality (it cannot go below 2 / 2^n for n pairs, so it does not decide).
    pub signed_rank_p: f64,
    /// Holm-adjusted over the run's cells.
    pub p_adjusted: f64,
    /// `regressed`, `improved`, `unchanged` or `inconclusive`.
    pub verdict: String,
    pub reason: String,
}
