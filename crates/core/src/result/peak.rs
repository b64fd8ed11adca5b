//! `bench --find-peak`'s record: what one search for the highest VALID query rate found, once
//! per model variant, backend, device, threads and sweep point (its probes are cells of the run).

use serde::{Deserialize, Serialize};

/// One search for the highest query rate whose server run is VALID under a latency bound.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeakQps {
    pub model: String,
    pub variant: String,
    pub backend: String,
    pub device: String,
    pub threads: Option<usize>,
    /// The batch and concurrency searched at (`b1-c2`, or `c2` with the model's own batch).
    pub point: String,
    /// Which search of `--find-peak-repeats` (1-based); each is one sample of the peak.
    pub search: usize,
    /// The bound a probe must meet: the percentile (a fraction) and its latency. A generate
    /// search's probes meet every bound of `bounds`; these two are the first of them.
    pub percentile: f64,
    pub bound_ms: f64,
    /// A generate search's bounds as given (`ttft:p99=2s,tpot:p99=200ms`); `None` for a server
    /// search, whose bound is query latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<String>,
    /// The search stops once (invalid_qps - valid_qps) / valid_qps is at most this.
    pub tolerance: f64,
    /// The first rate probed, queries per second, and where it came from.
    pub start_qps: Option<f64>,
    pub start: String,
    /// The highest rate probed VALID: the peak; `None` when no probe was.
    pub valid_qps: Option<f64>,
    /// The lowest rate probed INVALID above it; `None` when none was.
    pub invalid_qps: Option<f64>,
    /// Whether the bracket narrowed to the tolerance.
    pub converged: bool,
    /// The ids of the search's cells in the order they ran: the offline run that set the first
    /// rate (when `--target-qps` did not), then every probe.
    pub cells: Vec<String>,
    /// Why the search ended before its bracket narrowed to the tolerance, where it did.
    pub stopped: Option<String>,
}
