//! A session loaded and warmed up once, then timed window after window: one side of a paired A/B
//! run (`chipbench ab`), whose rounds alternate short windows of two such sessions.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use chipbench_core::spec::check_input;
use chipbench_core::{Session, SessionOptions, stats};

use crate::measure::{self, Feed, StopRule};
use crate::{ModelUnderTest, Target, panic_message};

/// A warm session and its prepared inputs.
pub struct HeldSession {
    session: Box<dyn Session>,
    feed: Feed,
    /// Monotonic clock, the load alone.
    pub load_ms: f64,
    /// The threads the engine runs with.
    pub threads: usize,
}

/// One timed window: the median latency of its inferences.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub p50_ms: f64,
    pub inferences: u64,
}

impl HeldSession {
    /// Loads `model` on `target`, checks its inputs and warms it up under the `settings`' rule.
    pub fn open(
        model: &ModelUnderTest,
        target: &Target,
        threads: Option<usize>,
        settings: &crate::MeasureSettings,
    ) -> Result<HeldSession, String> {
        let options = SessionOptions {
            threads,
            profile: false,
            settings: settings.backend_settings.clone(),
        };
        guarded(|| {
            let t = Instant::now();
            let mut session =
                target
                    .backend
                    .load(&model.source(model.path.clone()), &target.device, &options)?;
            let load_ms = t.elapsed().as_secs_f64() * 1e3;
            let tensors = model.inputs(settings.seed, 0);
            for (info, tensor) in session.inputs().iter().zip(&tensors) {
                check_input(info, tensor)?;
            }
            let inputs = session.prepare_inputs(&tensors)?;
            measure::warm_up(session.as_mut(), &inputs, &settings.warmup)?;
            let threads = session.threads();
            Ok(HeldSession {
                session,
                feed: Feed::one(inputs),
                load_ms,
                threads,
            })
        })
    }

    /// Runs inferences for `window` (at least one), each timed on the monotonic clock.
    pub fn time(&mut self, window: Duration) -> Result<Window, String> {
        let rule = StopRule {
            min_iterations: 1,
            min_duration: window,
            max_duration: window,
            target_relative_ci: 0.0,
            check_interval: window,
        };
        let (session, feed) = (self.session.as_mut(), &mut self.feed);
        let m = guarded(|| measure::timed_loop_prepared(session, feed, &rule))?;
        let latency = stats::summarize(&m.samples_ms).ok_or("no timed inference")?;
        Ok(Window {
            p50_ms: latency.p50,
            inferences: m.samples_ms.len() as u64,
        })
    }
}

/// `work`'s result, its error or panic as a message.
fn guarded<T>(work: impl FnOnce() -> chipbench_core::Result<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(payload) => Err(format!("the backend panicked: {}", panic_message(payload))),
    }
}
