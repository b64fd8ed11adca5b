//! The record of a cell the load generator drove (offline, server, multi-stream): its run, its
//! throughput and its verdict on a latency bound.

use serde::{Deserialize, Serialize};

use super::LatencyStats;

/// A cell driven by the load generator (offline, server, multi-stream): queries of `batch`-sized
/// pieces of work served by `concurrency` workers, every time read from the monotonic clock
/// relative to the start of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRun {
    /// Samples per inference (the model's bound batch dimension; 1 when it has none).
    pub batch: usize,
    /// Inferences in flight at once (workers).
    pub concurrency: usize,
    /// `per-worker` (each worker loaded a session of its own) or `shared` (one session, run
    /// concurrently where the engine allows it).
    pub sessions: String,
    /// Why `sessions` is what it is, in the terms of the engine's API; `None` in runs written
    /// before chipbench recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_reason: Option<String>,
    /// Resident memory the sessions added: peak RSS of the cell's process minus RSS before the
    /// first load; `None` where it could not be read.
    pub sessions_memory_bytes: Option<u64>,
    /// `all-at-once` (offline), `poisson` (server), `fixed-interval` or `after-previous`
    /// (multi-stream).
    pub arrivals: String,
    /// The Poisson arrival rate asked for (server).
    pub target_qps: Option<f64>,
    /// Seed of the arrival process (server).
    pub seed: Option<u64>,
    /// Samples in one query (multi-stream: `--samples-per-query` x batch; otherwise the batch).
    pub samples_per_query: usize,
    pub queries: u64,
    pub samples: u64,
    /// From the first query's issue to the last query's end.
    pub duration_s: f64,
    pub throughput: Throughput,
    /// Query latency from the query's scheduled arrival to the end of its last inference, so
    /// that time spent queued behind a stall is counted (no coordinated omission).
    pub query_latency_ms: LatencyStats,
    /// Time from the scheduled arrival until a worker picked the query up.
    pub queue_wait_ms: LatencyStats,
    /// How late the load generator issued each query after its scheduled arrival, microseconds.
    pub issue_lateness_us: LatencyStats,
    /// The generator could not keep to its schedule: its p99 lateness exceeded the mean gap
    /// between arrivals (server) or 1 ms.
    pub generator_behind: bool,
    /// Whether the query latency met `--latency-bound` (server).
    #[serde(default)]
    pub verdict: Option<LatencyVerdict>,
}

/// Samples per second of a scenario's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Samples completed / (last end - first issue).
    pub samples_per_s: f64,
    /// 95 % confidence interval (Student's t) of the mean over `windows`; equal to the figure
    /// when fewer than two windows completed anything.
    pub ci95: [f64; 2],
    /// Length of each window.
    pub window_s: f64,
    /// Samples per second completed in each consecutive window of the run.
    pub windows: Vec<f64>,
}

/// MLPerf's early-stopping verdict on a latency bound: with `over_bound` of `queries` above
/// `bound_ms`, the bound holds (VALID) only if a one-sided binomial test at `confidence` says
/// the true `percentile` is within it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyVerdict {
    pub valid: bool,
    /// As a fraction (0.99 for p99).
    pub percentile: f64,
    pub bound_ms: f64,
    pub confidence: f64,
    pub queries: u64,
    pub over_bound: u64,
    /// The most queries over the bound that `queries` allow for the bound to hold; `None` when
    /// even none would not (too few queries).
    pub allowed_over_bound: Option<u64>,
}
