//! The timed loop of the single-stream scenario: warm-up, then one inference at a time until the
//! stop rule says the median is known well enough.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chipbench_core::result::StopReason;
use chipbench_core::stats::median_ci95;
use chipbench_core::{PreparedInputs, Result, Session, Tensor};

use crate::resources::thread_cpu_time;

/// Set (by the CLI's Ctrl-C handler) to end the cell in flight early; the timed loop then stops
/// with [`StopReason::Interrupted`] and keeps its samples.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub use chipbench_core::settings::{StopRule, WarmUp};

/// Wall and CPU time the timed loop spent on its own bookkeeping between inferences: the stop
/// rule's checks of the CI (a copy of every sample so far and selections over it, which grows
/// with the loop) and the growth of the sample buffers. The loop leaves it out of
/// [`Measurement::wall`], and the runner out of the cell's CPU time, so that neither depends on
/// how many samples a long loop of a fast model has gathered.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bookkeeping {
    pub wall: Duration,
    /// CPU time of the measuring thread over the same pauses.
    pub cpu: Duration,
    /// How many times the stop rule checked the CI.
    pub checks: u64,
}

impl Bookkeeping {
    /// Runs `work` with the loop's clocks paused. The CPU clock reads are system calls, where a
    /// pending preemption lands: they sit inside the wall-clock pause.
    fn exclude<R>(&mut self, work: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let cpu_before = thread_cpu_time();
        let result = work();
        let cpu_after = thread_cpu_time();
        self.wall += start.elapsed();
        if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
            self.cpu += after.saturating_sub(before);
        }
        result
    }
}

/// What a timed loop produced.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Host end-to-end latency of every timed inference, in milliseconds.
    pub samples_ms: Vec<f64>,
    /// Device-side time per inference where the session reports it, in milliseconds.
    pub device_samples_ms: Vec<f64>,
    /// Wall time of the loop less its [`Bookkeeping`]: the inferences, the clock reads around
    /// them and the release of their outputs.
    pub wall: Duration,
    pub bookkeeping: Bookkeeping,
    pub stop_reason: StopReason,
}

/// Runs inferences on prepared inputs until both warm-up minimums are met; returns (iterations,
/// duration).
pub fn warm_up(
    session: &mut dyn Session,
    inputs: &PreparedInputs,
    rule: &WarmUp,
) -> Result<(u64, Duration)> {
    let start = Instant::now();
    let mut iterations = 0;
    while (iterations < rule.min_iterations || start.elapsed() < rule.min_duration)
        && !INTERRUPTED.load(Ordering::Relaxed)
    {
        session.run_prepared(inputs)?;
        iterations += 1;
    }
    Ok((iterations, start.elapsed()))
}

/// Prepares `inputs` (outside the loop) and runs [`timed_loop_prepared`] on them.
pub fn timed_loop(
    session: &mut dyn Session,
    inputs: &[Tensor],
    rule: &StopRule,
) -> Result<Measurement> {
    let mut feed = Feed::one(session.prepare_inputs(inputs)?);
    timed_loop_prepared(session, &mut feed, rule)
}

/// What the timed loop's inferences run on: samples prepared once and run in turn; with
/// `--feedback`, the outputs of each inference fed back as inputs of the next.
pub struct Feed {
    /// Prepared inputs, inference `n` runs `samples[n % len]`; with feedback only the next
    /// inference's.
    samples: Vec<PreparedInputs>,
    feedback: Option<Feedback>,
}

struct Feedback {
    /// The samples' host inputs, run in turn.
    host: Vec<Vec<Tensor>>,
    /// (output, input) indices.
    pairs: Vec<(usize, usize)>,
}

impl Feed {
    pub fn one(prepared: PreparedInputs) -> Feed {
        Feed {
            samples: vec![prepared],
            feedback: None,
        }
    }

    /// Every sample prepared once, run in turn.
    pub fn cycled(session: &mut dyn Session, samples: &[Vec<Tensor>]) -> Result<Feed> {
        Ok(Feed {
            samples: samples
                .iter()
                .map(|s| session.prepare_inputs(s))
                .collect::<Result<_>>()?,
            feedback: None,
        })
    }

    /// Inference `n + 1` runs sample `n + 1` with output `o` of inference `n` as its input `i`
    /// for each `(o, i)` of `pairs`; its inputs are prepared between the two with the loop's
    /// clocks paused.
    pub fn with_feedback(
        session: &mut dyn Session,
        samples: Vec<Vec<Tensor>>,
        pairs: Vec<(usize, usize)>,
    ) -> Result<Feed> {
        Ok(Feed {
            samples: vec![session.prepare_inputs(&samples[0])?],
            feedback: Some(Feedback {
                host: samples,
                pairs,
            }),
        })
    }

    /// The first inference's inputs (warm-up and energy windows run on them).
    pub fn first(&self) -> &PreparedInputs {
        &self.samples[0]
    }

    fn current(&self, n: usize) -> &PreparedInputs {
        &self.samples[n % self.samples.len()]
    }

    /// After inference `n`: with feedback, prepares inference `n + 1`'s inputs from `outputs`.
    fn advance(&mut self, session: &mut dyn Session, n: usize, outputs: Vec<Tensor>) -> Result<()> {
        let Some(feedback) = &self.feedback else {
            return Ok(());
        };
        let mut next = feedback.host[(n + 1) % feedback.host.len()].clone();
        for &(o, i) in &feedback.pairs {
            next[i] = outputs[o].clone();
        }
        self.samples[0] = session.prepare_inputs(&next)?;
        Ok(())
    }
}

/// Samples the loop reserves room for up front; it grows them (outside its clocks) past that.
const RESERVED_SAMPLES: usize = 4096;

/// The timed loop. Only `Session::run_prepared` (which includes output retrieval, and whatever
/// per-inference work the session's [`Session::timed_window`] names) sits between the two clock
/// reads; the stop rule is evaluated between inferences, outside the timed region, and its
/// checks are left out of the loop's wall time (see [`Bookkeeping`]).
pub fn timed_loop_prepared(
    session: &mut dyn Session,
    feed: &mut Feed,
    rule: &StopRule,
) -> Result<Measurement> {
    let mut samples_ms = Vec::with_capacity(RESERVED_SAMPLES);
    let mut device_samples_ms = Vec::new();
    let mut scratch = Vec::new();
    let mut bookkeeping = Bookkeeping::default();
    let start = Instant::now();
    let mut next_check = start + rule.min_duration;
    let stop_reason = loop {
        let n = samples_ms.len();
        let inputs = feed.current(n);
        let t0 = Instant::now();
        let outputs = session.run_prepared(inputs)?;
        let elapsed = t0.elapsed();
        if feed.feedback.is_some() {
            bookkeeping.exclude(|| feed.advance(session, n, outputs))?;
        } else {
            drop(outputs);
        }
        record(&mut samples_ms, elapsed, &mut bookkeeping);
        if let Some(device) = session.last_device_time() {
            record(&mut device_samples_ms, device, &mut bookkeeping);
        }
        // The maximum and the check interval are in real time, pauses included: they bound how
        // long the user waits.
        let now = t0 + elapsed;
        if now - start >= rule.max_duration {
            break StopReason::MaxDuration;
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            break StopReason::Interrupted;
        }
        if now >= next_check && samples_ms.len() as u64 >= rule.min_iterations {
            bookkeeping.checks += 1;
            let within = bookkeeping
                .exclude(|| ci_within_target(&samples_ms, rule.target_relative_ci, &mut scratch));
            if within {
                break StopReason::CiWithinTarget;
            }
            next_check = Instant::now() + rule.check_interval;
        }
    };
    Ok(Measurement {
        samples_ms,
        device_samples_ms,
        wall: start.elapsed().saturating_sub(bookkeeping.wall),
        bookkeeping,
        stop_reason,
    })
}

/// Appends a sample in whole nanoseconds (so the JSON keeps exactly what the clock said), growing
/// the buffer with the clocks paused when it is full.
fn record(samples_ms: &mut Vec<f64>, sample: Duration, bookkeeping: &mut Bookkeeping) {
    if samples_ms.len() == samples_ms.capacity() {
        bookkeeping.exclude(|| samples_ms.reserve(samples_ms.len().max(RESERVED_SAMPLES)));
    }
    samples_ms.push(sample.as_nanos() as f64 / 1e6);
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
        // The minimum and maximum durations are real time, the loop's bookkeeping included.
        let elapsed = m.wall + m.bookkeeping.wall;
        assert!(elapsed >= Duration::from_millis(100));
        assert!(elapsed < Duration::from_millis(4000));
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
        assert!(m.wall + m.bookkeeping.wall >= Duration::from_millis(300));
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
    fn the_stop_rule_checks_stay_out_of_the_wall_and_cpu_time() {
        // 20 µs per inference on average, alternating 10 and 30 µs so that the CI of the median
        // never gets within 1 %; checked after every inference once 50 ms have passed. Each check
        // copies thousands of samples and selects over them: more than an inference costs.
        let mut s = Scripted {
            delays: Box::new(|i| Duration::from_micros(if i % 2 == 0 { 10 } else { 30 })),
            calls: 0,
        };
        let rule = StopRule {
            min_iterations: 10,
            min_duration: Duration::from_millis(50),
            max_duration: Duration::from_millis(400),
            target_relative_ci: 0.01,
            check_interval: Duration::ZERO,
        };
        let cpu_before = thread_cpu_time().unwrap();
        let m = timed_loop(&mut s, &[], &rule).unwrap();
        let cpu = thread_cpu_time().unwrap() - cpu_before;
        assert_eq!(m.stop_reason, StopReason::MaxDuration);
        let n = m.samples_ms.len() as f64;
        let busy_s = m.samples_ms.iter().sum::<f64>() / 1e3;
        let checks_s = m.bookkeeping.wall.as_secs_f64();
        assert!(m.bookkeeping.checks > 1000, "{:?}", m.bookkeeping);
        assert!(
            checks_s > busy_s / 2.0,
            "the checks ({checks_s} s) must weigh against the inferences ({busy_s} s) for this test to mean anything"
        );
        // Throughput: 1 / the mean service time, within 5 % (the clock reads and stores between
        // inferences stay in the wall time, and so do preemptions between two inferences).
        let throughput = n / m.wall.as_secs_f64();
        let service_rate = n / busy_s;
        assert!(
            (throughput / service_rate - 1.0).abs() < 0.05,
            "throughput {throughput:.0}/s, 1 / mean service time {service_rate:.0}/s ({n} inferences, \
             wall {:?} less bookkeeping {:?})",
            m.wall,
            m.bookkeeping
        );
        // CPU time: the spinning of the inferences (a preempted inference counts wall time it
        // did not spend on the CPU, hence the loose lower bound), not the checks.
        let loop_cpu_s = cpu.saturating_sub(m.bookkeeping.cpu).as_secs_f64();
        assert!(
            loop_cpu_s < busy_s * 1.1 && loop_cpu_s > busy_s * 0.5,
            "CPU time less bookkeeping {loop_cpu_s} s, inferences {busy_s} s, bookkeeping {:?}",
            m.bookkeeping
        );
    }

    #[test]
    fn the_loop_runs_prepared_inputs_and_never_converts_inside() {
        // A session that counts its conversions: one in `prepare_inputs`, one per `run`.
        struct Counting {
            conversions: u64,
            prepared_runs: u64,
        }
        impl Session for Counting {
            fn inputs(&self) -> &[TensorInfo] {
                &[]
            }
            fn outputs(&self) -> &[TensorInfo] {
                &[]
            }
            fn run(&mut self, _: &[Tensor]) -> Result<Vec<Tensor>> {
                self.conversions += 1;
                Ok(vec![])
            }
            fn prepare_inputs(&mut self, _: &[Tensor]) -> Result<PreparedInputs> {
                self.conversions += 1;
                Ok(PreparedInputs::engine(7u32))
            }
            fn run_prepared(&mut self, inputs: &PreparedInputs) -> Result<Vec<Tensor>> {
                assert_eq!(inputs.as_engine::<u32>(), Some(&7));
                self.prepared_runs += 1;
                Ok(vec![])
            }
            fn threads(&self) -> usize {
                1
            }
        }
        let mut s = Counting {
            conversions: 0,
            prepared_runs: 0,
        };
        let m = timed_loop(&mut s, &[], &rule(500, 1, 1000)).unwrap();
        assert_eq!(s.conversions, 1);
        assert_eq!(s.prepared_runs, m.samples_ms.len() as u64);
    }

    #[test]
    fn warm_up_meets_both_minimums() {
        let mut s = Scripted {
            delays: Box::new(|_| Duration::from_micros(100)),
            calls: 0,
        };
        let (n, d) = warm_up(
            &mut s,
            &PreparedInputs::host(&[]),
            &WarmUp {
                min_iterations: 5,
                min_duration: Duration::from_millis(30),
            },
        )
        .unwrap();
        assert!(n >= 5 && d >= Duration::from_millis(30));
    }
}
