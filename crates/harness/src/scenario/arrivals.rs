//! When queries are scheduled to arrive: all at once (offline), as a seeded Poisson process
//! (server), at a fixed interval or each after the previous one finished (multi-stream).

use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

/// How the scheduled arrival times of a run's queries are spaced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// Every query is available at time zero.
    AllAtOnce,
    /// A Poisson process of `rate` queries per second: exponential gaps drawn from a generator
    /// seeded with `seed`, so a run's schedule can be replayed.
    Poisson { rate: f64, seed: u64 },
    /// One query every `interval`.
    Fixed { interval: Duration },
    /// Each query when the previous one has completed (MLPerf multi-stream since 2.0).
    AfterPrevious,
}

/// The scheduled arrival times of one run, in order.
pub struct Arrivals {
    schedule: Schedule,
    next: Duration,
    gaps: Option<(ChaCha8Rng, Exp<f64>)>,
}

/// The next query's scheduled arrival.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next {
    At(Duration),
    /// When the query in flight completes.
    AfterPrevious,
}

impl Arrivals {
    /// `rate` of a Poisson schedule must be positive and finite (the CLI refuses others before
    /// any cell runs).
    pub fn new(schedule: Schedule) -> Self {
        let gaps = match schedule {
            Schedule::Poisson { rate, seed } => Some((
                ChaCha8Rng::seed_from_u64(seed),
                Exp::new(rate).expect("a positive, finite query rate"),
            )),
            _ => None,
        };
        let mut arrivals = Arrivals {
            schedule,
            next: Duration::ZERO,
            gaps,
        };
        // A Poisson process's first arrival is one gap after the start, like every other; a
        // fixed interval starts with a query.
        if let Schedule::Poisson { .. } = schedule {
            arrivals.next = arrivals.gap();
        }
        arrivals
    }

    pub fn peek(&self) -> Next {
        match self.schedule {
            Schedule::AfterPrevious => Next::AfterPrevious,
            _ => Next::At(self.next),
        }
    }

    /// Moves on to the following arrival.
    pub fn advance(&mut self) {
        let gap = self.gap();
        self.next += gap;
    }

    fn gap(&mut self) -> Duration {
        match (&self.schedule, &mut self.gaps) {
            (Schedule::Poisson { .. }, Some((rng, exp))) => {
                Duration::from_secs_f64(exp.sample(rng))
            }
            (Schedule::Fixed { interval }, _) => *interval,
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(schedule: Schedule, n: usize) -> Vec<f64> {
        let mut a = Arrivals::new(schedule);
        (0..n)
            .map(|_| {
                let Next::At(t) = a.peek() else {
                    panic!("a timed schedule")
                };
                a.advance();
                t.as_secs_f64()
            })
            .collect()
    }

    #[test]
    fn poisson_arrivals_have_the_rate_and_replay_from_their_seed() {
        let t = times(
            Schedule::Poisson {
                rate: 500.0,
                seed: 7,
            },
            100_000,
        );
        // 100k exponential gaps of mean 2 ms: their mean has a standard error of 2 ms / sqrt(1e5)
        // = 6.3 us; 4 standard errors is 25 us.
        let mean_gap = t[t.len() - 1] / t.len() as f64;
        assert!((mean_gap - 0.002).abs() < 25e-6, "{mean_gap}");
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            t,
            times(
                Schedule::Poisson {
                    rate: 500.0,
                    seed: 7
                },
                100_000
            )
        );
        assert_ne!(
            t,
            times(
                Schedule::Poisson {
                    rate: 500.0,
                    seed: 8
                },
                100_000
            )
        );
    }

    #[test]
    fn fixed_and_offline_schedules() {
        let interval = Duration::from_millis(5);
        assert_eq!(times(Schedule::Fixed { interval }, 3), [0.0, 0.005, 0.010]);
        assert_eq!(times(Schedule::AllAtOnce, 3), [0.0; 3]);
        assert_eq!(
            Arrivals::new(Schedule::AfterPrevious).peek(),
            Next::AfterPrevious
        );
    }
}
