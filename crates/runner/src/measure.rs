//! The timed loop of the single-stream scenario: warm-up, then one inference at a time until the
//! stop rule says the median is known well enough.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chipbench_core::result::StopReason;
use chipbench_core::stats::median_ci95;
use chipbench_core::{Result, Session, Tensor};

/// Set (by the CLI's Ctrl-C handler) to end the cell in flight early; the timed loop then stops
/// with [`StopReason::Interrupted`] and keeps its samples.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Warm-up ends once both minimums are met.
#[derive(Clone, Debug)]
pub struct WarmUp {
    pub min_iterations: u64,
    pub min_duration: Duration,
}

impl Default for WarmUp {
    fn default() -> Self {
        WarmUp {
            min_iterations: 10,
            min_duration: Duration::from_millis(500),
        }
    }
}

/// MLPerf-style minimums, then an early stop once the 95 % CI of the median lies within
/// ± `target_relative_ci` of the median, checked every `check_interval`; `max_duration` caps it all.
#[derive(Clone, Debug)]
pub struct StopRule {
    pub min_iterations: u64,
    pub min_duration: Duration,
    pub max_duration: Duration,
    pub target_relative_ci: f64,
    pub check_interval: Duration,
}

impl Default for StopRule {
    fn default() -> Self {
        StopRule {
            min_iterations: 100,
            min_duration: Duration::from_secs(3),
            max_duration: Duration::from_secs(30),
            target_relative_ci: 0.01,
            check_interval: Duration::from_millis(250),
        }
    }
}

impl StopRule {
    /// The shorter loop of a cell's further sessions, enough for a median and not for every
    /// other figure: a fifth of the iterations (at least 10) and a tenth to a fifth of the main
    /// loop's minimum duration (0.3–0.6 s by default). Capping at a fifth of the minimum, not of
    /// the maximum, keeps a noisy cell's sessions from chasing the CI target: the suite's main
    /// job took 85 s with `max_duration / 5`, 48 s with this, 29 s with one session per cell.
    pub fn for_extra_session(main: &StopRule) -> StopRule {
        StopRule {
            min_iterations: (main.min_iterations / 5).max(10),
            min_duration: main.min_duration / 10,
            max_duration: main.min_duration / 5,
            ..main.clone()
        }
    }
}

impl WarmUp {
    /// The warm-up of a cell's further sessions: the same iterations, a fifth of the duration.
    pub fn for_extra_session(main: &WarmUp) -> WarmUp {
        WarmUp {
            min_iterations: main.min_iterations,
            min_duration: main.min_duration / 5,
        }
    }
}

/// What a timed loop produced.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Host end-to-end latency of every timed inference, in milliseconds.
    pub samples_ms: Vec<f64>,
    /// Device-side time per inference where the session reports it, in milliseconds.
    pub device_samples_ms: Vec<f64>,
    /// Wall time of the whole loop, harness overhead included.
    pub wall: Duration,
    pub stop_reason: StopReason,
}

/// Runs inferences until both warm-up minimums are met; returns (iterations, duration).
pub fn warm_up(
    session: &mut dyn Session,
    inputs: &[Tensor],
    rule: &WarmUp,
) -> Result<(u64, Duration)> {
    let start = Instant::now();
    let mut iterations = 0;
    while (iterations < rule.min_iterations || start.elapsed() < rule.min_duration)
        && !INTERRUPTED.load(Ordering::Relaxed)
    {
        session.run(inputs)?;
        iterations += 1;
    }
    Ok((iterations, start.elapsed()))
}

/// The timed loop. Only `Session::run` (which includes output retrieval) sits between the two
/// clock reads; the stop rule is evaluated between inferences, outside the timed region.
pub fn timed_loop(
    session: &mut dyn Session,
    inputs: &[Tensor],
    rule: &StopRule,
) -> Result<Measurement> {
    let mut samples_ms = Vec::with_capacity(4096);
    let mut device_samples_ms = Vec::new();
    let mut scratch = Vec::new();
    let start = Instant::now();
    let mut next_check = start + rule.min_duration;
    let stop_reason = loop {
        let t0 = Instant::now();
        let outputs = session.run(inputs)?;
        let elapsed = t0.elapsed();
        drop(outputs);
        // Whole nanoseconds, so the JSON keeps exactly what the clock said.
        samples_ms.push(elapsed.as_nanos() as f64 / 1e6);
        if let Some(device) = session.last_device_time() {
            device_samples_ms.push(device.as_nanos() as f64 / 1e6);
        }
        let now = t0 + elapsed;
        if now - start >= rule.max_duration {
            break StopReason::MaxDuration;
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            break StopReason::Interrupted;
        }
        if now >= next_check && samples_ms.len() as u64 >= rule.min_iterations {
            if ci_within_target(&samples_ms, rule.target_relative_ci, &mut scratch) {
                break StopReason::CiWithinTarget;
            }
            next_check = Instant::now() + rule.check_interval;
        }
    };
    Ok(Measurement {
        samples_ms,
        device_samples_ms,
        wall: start.elapsed(),
        stop_reason,
    })
}

fn ci_within_target(samples: &[f64], target: f64, scratch: &mut Vec<f64>) -> bool {
    match median_ci95(samples, scratch) {
        Some((median, lo, hi)) => lo >= median * (1.0 - target) && hi <= median * (1.0 + target),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chipbench_core::TensorInfo;

    /// Sleeps for a scripted duration per call; lets the stop rule be tested without a model.
    struct Scripted {
        delays: Box<dyn FnMut(u64) -> Duration>,
        calls: u64,
    }

    impl Session for Scripted {
        fn inputs(&self) -> &[TensorInfo] {
            &[]
        }
        fn outputs(&self) -> &[TensorInfo] {
            &[]
        }
        fn run(&mut self, _: &[Tensor]) -> Result<Vec<Tensor>> {
            let d = (self.delays)(self.calls);
            self.calls += 1;
            let until = Instant::now() + d;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            Ok(vec![])
        }
        fn threads(&self) -> usize {
            1
        }
    }

    fn rule(min_iterations: u64, min_ms: u64, max_ms: u64) -> StopRule {
        StopRule {
            min_iterations,
            min_duration: Duration::from_millis(min_ms),
            max_duration: Duration::from_millis(max_ms),
            target_relative_ci: 0.01,
            check_interval: Duration::from_millis(20),
        }
    }

    #[test]
    fn stable_latency_stops_on_the_ci_after_the_minimums() {
        let mut s = Scripted {
            delays: Box::new(|_| Duration::from_micros(200)),
            calls: 0,
        };
        let m = timed_loop(&mut s, &[], &rule(50, 100, 5000)).unwrap();
        assert_eq!(m.stop_reason, StopReason::CiWithinTarget);
        assert!(m.samples_ms.len() >= 50);
        assert!(m.wall >= Duration::from_millis(100));
        assert!(m.wall < Duration::from_millis(4000));
    }

    #[test]
    fn noisy_latency_runs_until_the_maximum() {
        // Alternating 0.1 ms / 1 ms: the median's CI never gets within 1 %.
        let mut s = Scripted {
            delays: Box::new(|i| Duration::from_micros(if i % 2 == 0 { 100 } else { 1000 })),
            calls: 0,
        };
        let m = timed_loop(&mut s, &[], &rule(10, 50, 300)).unwrap();
        assert_eq!(m.stop_reason, StopReason::MaxDuration);
        assert!(m.wall >= Duration::from_millis(300));
    }

    #[test]
    fn the_minimum_iteration_count_holds_even_when_the_ci_is_tight() {
        let mut s = Scripted {
            delays: Box::new(|_| Duration::from_micros(50)),
            calls: 0,
        };
        let m = timed_loop(&mut s, &[], &rule(3000, 10, 10_000)).unwrap();
        assert!(m.samples_ms.len() >= 3000);
    }

    #[test]
    fn warm_up_meets_both_minimums() {
        let mut s = Scripted {
            delays: Box::new(|_| Duration::from_micros(100)),
            calls: 0,
        };
        let (n, d) = warm_up(
            &mut s,
            &[],
            &WarmUp {
                min_iterations: 5,
                min_duration: Duration::from_millis(30),
            },
        )
        .unwrap();
        assert!(n >= 5 && d >= Duration::from_millis(30));
    }
}
