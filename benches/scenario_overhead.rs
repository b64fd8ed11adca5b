//! What the scenarios' load generator costs, with sessions that do nothing.
//!
//! 1. Server: a Poisson schedule at 100k and 200k queries per second for one second, issued on
//!    one thread to a session that answers at once: the rate actually issued and the generator's
//!    lateness (issue time minus scheduled time; goal: 100k/s sustained with p99 under 50 us).
//! 2. Offline: the driver's cost per sample (goal under 1 us), inline on one thread (the
//!    scheduler alone) and through the worker threads a real run uses (the channel hand-off to a
//!    worker and back, per inference), at batch 1 and 16.
//!
//! Run: `cargo bench --bench scenario_overhead`

use std::time::{Duration, Instant};

use chipbench_harness::scenario::arrivals::Schedule;
use chipbench_harness::scenario::clock::{Clock, RealClock, wait_until};
use chipbench_harness::scenario::driver::{Completion, Load, QueryRecord, Sut, Work, drive};
use chipbench_harness::scenario::figures::distribution;
use chipbench_harness::scenario::pool::{Serve, with_pool};
use criterion::{Criterion, criterion_group};

/// One worker that finishes every piece of work the moment it gets it, on the caller's thread.
struct NullSut {
    clock: RealClock,
    done: Option<Completion>,
}

impl Sut for NullSut {
    fn workers(&self) -> usize {
        1
    }
    fn start(&mut self, worker: usize, work: Work) {
        let finished = self.clock.now();
        self.done = Some(Completion {
            worker,
            work,
            finished,
            error: None,
        });
    }
    fn wait(&mut self, deadline: Option<Duration>) -> Option<Completion> {
        if let Some(done) = self.done.take() {
            return Some(done);
        }
        if let Some(deadline) = deadline {
            wait_until(&self.clock, deadline);
        }
        None
    }
}

struct Noop;
impl Serve for Noop {
    fn serve(&mut self, _: Work) -> Result<(), String> {
        Ok(())
    }
}

fn load(schedule: Schedule, batch: usize, queries: u64) -> Load {
    Load {
        schedule,
        work_per_query: 1,
        samples_per_work: batch,
        min_queries: queries,
        min_duration: Duration::ZERO,
    }
}

fn null_run(load: &Load) -> Vec<QueryRecord> {
    let clock = RealClock::start();
    let mut sut = NullSut { clock, done: None };
    drive(load, &mut sut, &clock).unwrap()
}

fn generator_rate() {
    for rate in [100_000.0, 200_000.0] {
        let schedule = Schedule::Poisson { rate, seed: 1 };
        let records = null_run(&load(schedule, 1, rate as u64));
        let span = records.last().unwrap().issued - records[0].scheduled;
        let late = distribution(&records, QueryRecord::lateness, 1e-6).unwrap();
        println!(
            "server generator at {:.0}k QPS scheduled: {:.0}k issued/s, issue lateness p50 {:.2} us, \
             p99 {:.2} us (goal < 50 us), max {:.1} us, {} queries",
            rate / 1e3,
            records.len() as f64 / span.as_secs_f64() / 1e3,
            late.p50,
            late.p99,
            late.max,
            records.len()
        );
    }
}

fn offline_overhead(c: &mut Criterion) {
    c.bench_function("offline driver per sample, inline null session", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            null_run(&load(Schedule::AllAtOnce, 1, iters.max(1)));
            t.elapsed()
        })
    });
    let samples = 200_000u64;
    let t = Instant::now();
    null_run(&load(Schedule::AllAtOnce, 1, samples));
    println!(
        "offline driver, inline null session: {:.3} us per sample (goal < 1 us)",
        t.elapsed().as_secs_f64() * 1e6 / samples as f64
    );
    for (workers, batch) in [(1, 1), (2, 1), (1, 16), (2, 16)] {
        let queries = 50_000u64;
        let records = with_pool(workers, &|_| Ok(Box::new(Noop)), |pool| {
            let clock = pool.restart_clock();
            drive(&load(Schedule::AllAtOnce, batch, queries), pool, &clock).unwrap()
        })
        .unwrap();
        let span = records.iter().map(|r| r.finished).max().unwrap();
        println!(
            "offline through worker threads, null session, concurrency {workers}, batch {batch}: \
             {:.3} us per sample ({:.2} us per inference)",
            span.as_secs_f64() * 1e6 / (queries as f64 * batch as f64),
            span.as_secs_f64() * 1e6 / queries as f64
        );
    }
}

criterion_group!(benches, offline_overhead);

fn main() {
    generator_rate();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
