//! Time as the load generator sees it: the monotonic clock in a real run, a virtual one in tests,
//! so that a test of the scheduler gets exact answers whatever this machine's speed.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Time since the start of a run.
pub trait Clock {
    fn now(&self) -> Duration;
}

/// The monotonic clock (`Instant`, CLOCK_MONOTONIC on Linux), counted from its creation.
#[derive(Clone, Copy, Debug)]
pub struct RealClock {
    origin: Instant,
}

impl RealClock {
    pub fn start() -> Self {
        RealClock {
            origin: Instant::now(),
        }
    }

    /// The time since the origin of `at` (zero for an instant before it).
    pub fn since_origin(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.origin)
    }
}

impl Clock for RealClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Waits for `deadline` on the real clock: sleeps while the deadline is far, spins the last stretch
/// (a sleep overshoots by the kernel's timer slack, tens of microseconds), so a query is issued
/// within microseconds of its scheduled time.
pub fn wait_until(clock: &RealClock, deadline: Duration) {
    const SPIN: Duration = Duration::from_micros(200);
    let now = clock.now();
    if deadline > now + SPIN {
        std::thread::sleep(deadline - now - SPIN);
    }
    while clock.now() < deadline {
        std::hint::spin_loop();
    }
}

/// A clock that moves only when told: the simulated system under test advances it to the next
/// event.
#[derive(Debug, Default)]
pub struct VirtualClock {
    now: Cell<Duration>,
}

impl VirtualClock {
    /// Moves the clock forward to `to`; a time in the past leaves it where it is.
    pub fn advance_to(&self, to: Duration) {
        if to > self.now.get() {
            self.now.set(to);
        }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Duration {
        self.now.get()
    }
}
