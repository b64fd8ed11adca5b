//! The figures of a scenario run, from its query records: throughput with a confidence interval
//! from consecutive windows of the run, and the distributions of query latency, queue wait and
//! the generator's lateness.

use std::time::Duration;

use chipbench_core::result::{LatencyStats, ScenarioRun, Throughput};
use chipbench_core::stats::summarize;
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::arrivals::Schedule;
use super::driver::{Load, QueryRecord};
use super::verdict::{LatencyBound, verdict};

/// Windows the run is cut into for the throughput's confidence interval: enough for a t
/// interval to be narrow, few enough that each holds many queries.
pub const THROUGHPUT_WINDOWS: usize = 10;

/// Samples per second from the first issue to the last end, with a 95 % CI (Student's t) over
/// the rates of `THROUGHPUT_WINDOWS` equal windows of that span, each counting the samples of
/// the queries that ended in it (a window boundary belongs to the earlier window).
pub fn throughput(records: &[QueryRecord]) -> Option<Throughput> {
    let start = records.iter().map(|r| r.issued).min()?;
    let end = records.iter().map(|r| r.finished).max()?;
    let span = end.checked_sub(start).filter(|s| !s.is_zero())?;
    let samples: usize = records.iter().map(|r| r.samples).sum();
    let window_s = span.as_secs_f64() / THROUGHPUT_WINDOWS as f64;
    let mut counts = [0usize; THROUGHPUT_WINDOWS];
    for r in records {
        // In integer nanoseconds, so an end on a boundary lands in the earlier window exactly.
        let at = ((r.finished - start).as_nanos() * THROUGHPUT_WINDOWS as u128)
            .div_ceil(span.as_nanos()) as usize;
        counts[at.clamp(1, THROUGHPUT_WINDOWS) - 1] += r.samples;
    }
    let windows: Vec<f64> = counts.iter().map(|&c| c as f64 / window_s).collect();
    let samples_per_s = samples as f64 / span.as_secs_f64();
    Some(Throughput {
        samples_per_s,
        ci95: t_interval(&windows).unwrap_or([samples_per_s; 2]),
        window_s,
        windows,
    })
}

/// The 95 % Student's t interval of the mean of `x`.
fn t_interval(x: &[f64]) -> Option<[f64; 2]> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let t = StudentsT::new(0.0, 1.0, n - 1.0).ok()?.inverse_cdf(0.975);
    let half = t * (var / n).sqrt();
    Some([mean - half, mean + half])
}

/// How the workers of a run held their sessions, for the record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Workers {
    pub concurrency: usize,
    /// One session shared by every worker, rather than one each.
    pub shared_session: bool,
    pub sessions_memory_bytes: Option<u64>,
}

/// The record of a run of `load` on `workers`: `None` when no query completed.
pub fn scenario_run(
    records: &[QueryRecord],
    load: &Load,
    workers: &Workers,
    bound: Option<&LatencyBound>,
) -> Option<ScenarioRun> {
    let first = records.iter().map(|r| r.issued).min()?;
    let last = records.iter().map(|r| r.finished).max()?;
    let issue_lateness_us = distribution(records, QueryRecord::lateness, 1e-6)?;
    let (arrivals, target_qps, seed, mean_gap) = match load.schedule {
        Schedule::AllAtOnce => ("all-at-once", None, None, None),
        Schedule::Poisson { rate, seed } => (
            "poisson",
            Some(rate),
            Some(seed),
            Some(Duration::from_secs_f64(1.0 / rate)),
        ),
        Schedule::Fixed { interval } => ("fixed-interval", None, None, Some(interval)),
        Schedule::AfterPrevious => ("after-previous", None, None, None),
    };
    let latencies: Vec<Duration> = records.iter().map(QueryRecord::latency).collect();
    Some(ScenarioRun {
        batch: load.samples_per_work,
        concurrency: workers.concurrency,
        sessions: if workers.shared_session {
            "shared"
        } else {
            "per-worker"
        }
        .into(),
        sessions_reason: None,
        sessions_memory_bytes: workers.sessions_memory_bytes,
        arrivals: arrivals.into(),
        target_qps,
        seed,
        samples_per_query: load.work_per_query * load.samples_per_work,
        queries: records.len() as u64,
        samples: records.iter().map(|r| r.samples as u64).sum(),
        duration_s: (last - first).as_secs_f64(),
        throughput: throughput(records)?,
        query_latency_ms: distribution(records, QueryRecord::latency, 1e-3)?,
        queue_wait_ms: distribution(records, QueryRecord::wait, 1e-3)?,
        generator_behind: generator_behind(&issue_lateness_us, mean_gap),
        issue_lateness_us,
        verdict: bound.map(|b| verdict(&latencies, b)),
    })
}

/// Statistics of one duration per query, in `unit` seconds (1e-3 for milliseconds).
pub fn distribution(
    records: &[QueryRecord],
    of: impl Fn(&QueryRecord) -> Duration,
    unit: f64,
) -> Option<LatencyStats> {
    let values: Vec<f64> = records.iter().map(|r| of(r).as_secs_f64() / unit).collect();
    summarize(&values)
}

/// Whether the generator fell behind its schedule: the p99 of its lateness is longer than
/// `mean_gap` (the mean time between scheduled arrivals), when the schedule has gaps, else 1 ms.
pub fn generator_behind(lateness_us: &LatencyStats, mean_gap: Option<Duration>) -> bool {
    let limit = mean_gap.unwrap_or(Duration::from_millis(1));
    lateness_us.p99 * 1e-6 > limit.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(issued_ms: u64, finished_ms: u64, samples: usize) -> QueryRecord {
        let ms = Duration::from_millis;
        QueryRecord {
            scheduled: ms(issued_ms),
            issued: ms(issued_ms),
            started: ms(issued_ms),
            finished: ms(finished_ms),
            samples,
        }
    }

    #[test]
    fn steady_completions_give_a_zero_width_interval() {
        // 4 samples end every 2 ms over 100 ms: 2000 samples/s in every window.
        let records: Vec<_> = (1..=50).map(|i| record(0, 2 * i, 4)).collect();
        let t = throughput(&records).unwrap();
        assert_eq!(t.samples_per_s, 2000.0);
        assert!(
            t.windows.iter().all(|w| (w - 2000.0).abs() < 1e-9),
            "{:?}",
            t.windows
        );
        assert!((t.ci95[0] - 2000.0).abs() < 1e-9 && (t.ci95[1] - 2000.0).abs() < 1e-9);
    }

    #[test]
    fn uneven_windows_widen_the_interval() {
        let mut records: Vec<_> = (1..=50).map(|i| record(0, 2 * i, 4)).collect();
        records.extend((1..=25).map(|i| record(0, i, 4)));
        let t = throughput(&records).unwrap();
        assert_eq!(t.samples_per_s, 3000.0);
        assert!(t.ci95[0] < 3000.0 && 3000.0 < t.ci95[1]);
        assert!(throughput(&[]).is_none());
    }

    #[test]
    fn lateness_beyond_the_gap_flags_the_generator() {
        let stats = |p99_us: f64| LatencyStats {
            n: 1,
            mean: 0.0,
            stddev: 0.0,
            min: 0.0,
            p50: 0.0,
            p90: 0.0,
            p95: 0.0,
            p99: p99_us,
            p999: p99_us,
            max: p99_us,
            median_ci95: [0.0; 2],
        };
        let gap = Some(Duration::from_micros(100));
        assert!(!generator_behind(&stats(99.0), gap));
        assert!(generator_behind(&stats(101.0), gap));
        assert!(!generator_behind(&stats(999.0), None));
    }
}
