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
//!   ([`QuantileBootstrap`](chipbench_core::stats::QuantileBootstrap)); throughput and energy per inference by scaling the recorded figure
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
//!
//! The gate reads as criterion.rs does: `settings` and `comparison` are what it is asked and
//! what it answers; `matching` pairs the cells of both sides; `analysis` is the procedure for
//! one pair, on the mathematics of `estimation`, ending in the rule of `decision`; `render`
//! writes the result for people.

mod analysis;
mod comparison;
mod decision;
mod estimation;
mod format;
mod matching;
mod render;
mod settings;

pub use comparison::{CellComparison, CellKey, Comparison, NotCompared, Verdict};
pub use format::signed_pct;
pub use matching::{Baseline, check_hosts, compare};
pub use render::{render_markdown, render_text};
pub use settings::{GateSettings, HOST_CHECK_NOISE, Metric, RUN_NOISE};
