//! The load generator: issues queries on their schedule into a queue, hands them to idle workers,
//! and records when each was scheduled, issued, picked up and finished. A query's latency runs
//! from its scheduled arrival, so a stall of the system under test (or of the generator itself)
//! shows in every query that waited behind it: no coordinated omission.

use std::collections::VecDeque;
use std::time::Duration;

use super::arrivals::{Arrivals, Next, Schedule};
use super::clock::Clock;

/// A piece of work handed to one worker: `samples` inputs of query `query` (a batch when the model
/// is bound to a batch of that size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    pub query: usize,
    pub samples: usize,
}

/// A worker that finished a piece of work.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub worker: usize,
    pub work: Work,
    /// When it finished, read by the worker from the run's clock.
    pub finished: Duration,
    /// Why serving it failed.
    pub error: Option<String>,
}

/// The system under test: `workers` workers, each serving one piece of work at a time.
pub trait Sut {
    fn workers(&self) -> usize;
    /// Hands `work` to `worker`, which is idle.
    fn start(&mut self, worker: usize, work: Work);
    /// Waits for a worker to finish, until `deadline` at the latest (`None`: as long as it takes);
    /// `None` when the deadline came first.
    fn wait(&mut self, deadline: Option<Duration>) -> Option<Completion>;
}

/// What a run issues, and when it stops issuing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    pub schedule: Schedule,
    /// Pieces of work per query (multi-stream: the samples of a query; 1 otherwise).
    pub work_per_query: usize,
    /// Samples per piece of work (the bound batch size).
    pub samples_per_work: usize,
    /// Issuing stops once both minimums are met; the queries already issued are then served.
    pub min_queries: u64,
    pub min_duration: Duration,
}

/// One query's times, from the start of the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueryRecord {
    /// When the schedule says it arrives.
    pub scheduled: Duration,
    /// When the generator actually issued it (after `scheduled` when the generator was late).
    pub issued: Duration,
    /// When a worker picked up its first piece of work.
    pub started: Duration,
    /// When its last piece of work finished.
    pub finished: Duration,
    pub samples: usize,
}

impl QueryRecord {
    /// Latency as the run reports it: from the scheduled arrival to the end of the query.
    pub fn latency(&self) -> Duration {
        self.finished.saturating_sub(self.scheduled)
    }

    /// Time spent in the queue before a worker took it.
    pub fn wait(&self) -> Duration {
        self.started.saturating_sub(self.scheduled)
    }

    /// How late the generator issued it.
    pub fn lateness(&self) -> Duration {
        self.issued.saturating_sub(self.scheduled)
    }
}

/// Runs `load` against `sut`, reading time from `clock`. The first failed piece of work ends the
/// run with its error (after the work in flight has finished).
pub fn drive(
    load: &Load,
    sut: &mut dyn Sut,
    clock: &dyn Clock,
) -> Result<Vec<QueryRecord>, String> {
    let workers = sut.workers();
    let mut arrivals = Arrivals::new(load.schedule);
    let mut idle: Vec<usize> = (0..workers).rev().collect();
    let mut queue: VecDeque<Work> = VecDeque::new();
    let mut records: Vec<QueryRecord> = Vec::new();
    // Pieces of work of each query not yet finished.
    let mut unfinished: Vec<usize> = Vec::new();
    let mut in_flight_queries = 0usize;
    let mut last_finished = Duration::ZERO;
    let mut issuing = true;
    let mut error = None;
    loop {
        while issuing {
            let Some(scheduled) = due(
                &arrivals,
                load,
                clock,
                &queue,
                &idle,
                in_flight_queries,
                last_finished,
            ) else {
                break;
            };
            let query = records.len();
            records.push(QueryRecord {
                scheduled,
                issued: clock.now(),
                started: Duration::MAX,
                finished: Duration::ZERO,
                samples: load.work_per_query * load.samples_per_work,
            });
            unfinished.push(load.work_per_query);
            in_flight_queries += 1;
            queue.extend((0..load.work_per_query).map(|_| Work {
                query,
                samples: load.samples_per_work,
            }));
            arrivals.advance();
            issuing = (records.len() as u64) < load.min_queries || scheduled < load.min_duration;
        }
        while !queue.is_empty() && !idle.is_empty() {
            let (worker, work) = (idle.pop().unwrap(), queue.pop_front().unwrap());
            let record = &mut records[work.query];
            record.started = record.started.min(clock.now());
            sut.start(worker, work);
        }
        if idle.len() == workers && queue.is_empty() && (!issuing || error.is_some()) {
            break;
        }
        let deadline = match (issuing, arrivals.peek()) {
            (true, Next::At(t)) if load.schedule != Schedule::AllAtOnce => Some(t),
            _ => None,
        };
        let Some(done) = sut.wait(deadline) else {
            continue;
        };
        idle.push(done.worker);
        let record = &mut records[done.work.query];
        record.finished = record.finished.max(done.finished);
        unfinished[done.work.query] -= 1;
        if unfinished[done.work.query] == 0 {
            in_flight_queries -= 1;
            last_finished = last_finished.max(done.finished);
        }
        if let Some(e) = done.error {
            error.get_or_insert(e);
            issuing = false;
            queue.clear();
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(records),
    }
}

/// The scheduled arrival of the next query if it is due now.
fn due(
    arrivals: &Arrivals,
    load: &Load,
    clock: &dyn Clock,
    queue: &VecDeque<Work>,
    idle: &[usize],
    in_flight_queries: usize,
    last_finished: Duration,
) -> Option<Duration> {
    match arrivals.peek() {
        // Every sample is available: a query is taken as soon as a worker can serve it, so the
        // queue never runs dry and never grows past the idle workers.
        Next::At(_) if load.schedule == Schedule::AllAtOnce => {
            (queue.len() < idle.len()).then(|| clock.now())
        }
        Next::At(t) => (t <= clock.now()).then_some(t),
        Next::AfterPrevious => (in_flight_queries == 0).then_some(last_finished),
    }
}
