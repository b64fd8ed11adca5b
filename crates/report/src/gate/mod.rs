//! The regression gate: compares a current run with a baseline (one run, or the last N runs of
//! the same host from the history) cell by cell and gives each cell a verdict.
//!
//! For each cell present on both sides (matched by model, variant, backend, device, scenario and
//! threads):
//! - **metric**: `--metric` for every cell, or without it each cell's scenario's own
//!   ([`Metric::of_scenario`]: single-stream p50, offline throughput, server and multi-stream
//!   p99). A `--find-peak` search's peak is compared apart, gated only from repeated searches
//!   (`peaks`); its probes are not compared as cells.
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
//! - **p-value**: a test of the metric itself (issue #14, item 9: a test of the latency samples
//!   alone cannot see a rise in energy, or a worse tail at an unchanged median): the larger of the
//!   ratio's own p (below) and, on the raw samples of both sides, Mann–Whitney U for `p50`, the
//!   two-sample quantile test for `p90` / `p99` (how many samples of each side lie above the
//!   pooled quantile) and Welch's t test of the mean latency for `throughput`; `energy` has no
//!   per-inference samples (one meter window per cell), so the ratio's own p is its test.
//! - **multiple comparisons**: the p-values of all tested cells of one comparison are adjusted by
//!   **Holm's** step-down method, which holds the *family-wise* error — the chance that a gate run
//!   in which nothing changed flags any cell — at α. The gate fails a job on one `regressed`
//!   cell, so the error that matters is per gate run, not per cell, and that is what the
//!   family-wise error is; the false discovery rate (Benjamini–Hochberg) would bound only the
//!   share of false flags among the flags, and let a run of many cells fail more often than α
//!   when nothing changed but a cell or two. Holm is valid under any dependence between the
//!   cells (they share the run's drift) and uniformly more powerful than Bonferroni.
//! - **verdict**: `regressed` / `improved` when the change is *significant* (Holm-adjusted
//!   p < α **and** the CI excludes 1) **and** the ratio lies beyond the threshold (above 1 + t or
//!   below 1 / (1 + t), so the band is symmetric in log space and means the same for latency and
//!   throughput); `unchanged` when the whole CI lies inside that band; `inconclusive` otherwise,
//!   with the reason. A latency quantile q needs at least [`TAIL_SAMPLES`] / (1 - q) samples a
//!   side (the p99 1000): with fewer its bootstrap replicates are mostly the largest few samples,
//!   and the cell is `inconclusive` (too few samples).
//! - **random streams**: each cell's bootstrap draws from a stream of its own, chosen by the cell's
//!   key, so adding or removing a cell leaves the other cells' CIs as they were.
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
//! - The ratio's own two-sided p: for the p50 from sessions, Student's t of the log ratio with
//!   the same se and degrees of freedom; otherwise the log ratio over the standard deviation of
//!   the log replicates, against Student's t with the fewest degrees of freedom among the parts
//!   drawn (normal when none is estimated). Counting the replicates beyond 1 would resolve
//!   nothing below 2 / replicates, while Holm asks for p down to α / cells.
//!
//! A run compared with itself has no run-to-run noise: neither term applies.
//!
//! **The host's own speed.** Runs record a check of the host's speed before the first cell and
//! after each measured cell (`SpeedCheck`: a fixed compute kernel on one thread). The checks
//! around a cell (the one labelled `index + 1` after it, and the last one labelled `index` or less
//! before it: skipped cells get no check and shift the labels), current over baseline, say how
//! much slower the host itself ran while that cell was measured. The p50 from K sessions owes
//! only one session to that moment; the other K - 1 ran in the rounds after the last cell, which
//! no check brackets, so their share is weighted with the run's median check. When a change is significant and beyond the threshold but falls inside the band once
//! the host's change is taken out, and the host changed by more than the check's own noise
//! ([`HOST_CHECK_NOISE`]), the verdict is `inconclusive`: the code cannot be told from the host.
//! The checks never make a regression out of an unchanged cell; they only withhold a verdict that
//! the host explains.
//!
//! The gate reads as criterion.rs does: `settings` and `comparison` are what it is asked and
//! what it answers; `matching` pairs the cells of both sides; `analysis` is the procedure for
//! one pair, on the mathematics of `estimation`, ending in the rule of `decision`; `render`
//! writes the result for people. `paired` judges the interleaved rounds of `chipbench ab`, where
//! both sides were measured in one job, with the same verdict words and multiple-comparison
//! control.

mod analysis;
mod comparison;
mod decision;
mod estimation;
mod format;
mod matching;
pub mod paired;
mod peaks;
mod render;
mod settings;
mod special;

pub use comparison::{CellComparison, CellKey, Comparison, NotCompared, Verdict};
pub use format::signed_pct;
pub use matching::{Baseline, check_hosts, compare};
pub use peaks::{MIN_SEARCHES, PeakComparison};
pub use render::{render_markdown, render_text};
pub use settings::{GateSettings, HOST_CHECK_NOISE, Metric, RUN_NOISE, TAIL_SAMPLES};
pub use special::clopper_pearson;
