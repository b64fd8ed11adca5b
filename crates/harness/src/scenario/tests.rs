//! The scheduler on a virtual clock against a simulated system of known service time, so every
//! answer is exact or has a known sampling error whatever this machine's speed; and once on the
//! real clock with real threads.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::arrivals::Schedule;
use super::clock::VirtualClock;
use super::driver::{Completion, Load, QueryRecord, Sut, Work, drive};
use super::figures::{distribution, throughput};
use super::peak::{PeakSearch, find_peak};
use super::pool::{Serve, with_pool};
use super::verdict::{LatencyBound, verdict};

const MS: Duration = Duration::from_millis(1);

/// `workers` workers whose service time for a piece of work is `service(query, samples)`, on a
/// virtual clock that `wait` moves to the next completion or the deadline.
struct Simulated<'c, F> {
    clock: &'c VirtualClock,
    workers: usize,
    service: F,
    in_flight: BinaryHeap<Reverse<(Duration, usize, usize, usize)>>,
}

impl<'c, F: FnMut(usize, usize) -> Duration> Simulated<'c, F> {
    fn new(clock: &'c VirtualClock, workers: usize, service: F) -> Self {
        Simulated {
            clock,
            workers,
            service,
            in_flight: BinaryHeap::new(),
        }
    }
}

impl<F: FnMut(usize, usize) -> Duration> Sut for Simulated<'_, F> {
    fn workers(&self) -> usize {
        self.workers
    }

    fn start(&mut self, worker: usize, work: Work) {
        let end = self.clock.now_virtual() + (self.service)(work.query, work.samples);
        self.in_flight
            .push(Reverse((end, worker, work.query, work.samples)));
    }

    fn wait(&mut self, deadline: Option<Duration>) -> Option<Completion> {
        let next_end = self.in_flight.peek().map(|Reverse((end, ..))| *end);
        match (next_end, deadline) {
            (Some(end), d) if d.is_none_or(|d| end <= d) => {
                let Reverse((finished, worker, query, samples)) = self.in_flight.pop()?;
                self.clock.advance_to(finished);
                Some(Completion {
                    worker,
                    work: Work { query, samples },
                    finished,
                    error: None,
                })
            }
            (_, Some(d)) => {
                self.clock.advance_to(d);
                None
            }
            (_, None) => panic!("the driver waited with nothing in flight and no deadline"),
        }
    }
}

impl VirtualClock {
    fn now_virtual(&self) -> Duration {
        super::clock::Clock::now(self)
    }
}

fn server(rate: f64, queries: u64) -> Load {
    Load {
        schedule: Schedule::Poisson { rate, seed: 1 },
        work_per_query: 1,
        samples_per_work: 1,
        min_queries: queries,
        min_duration: Duration::ZERO,
    }
}

fn simulate(
    load: &Load,
    workers: usize,
    service: impl FnMut(usize, usize) -> Duration,
) -> Vec<QueryRecord> {
    let clock = VirtualClock::default();
    drive(load, &mut Simulated::new(&clock, workers, service), &clock).unwrap()
}

fn p99_ms(records: &[QueryRecord], of: impl Fn(&QueryRecord) -> Duration) -> (f64, f64) {
    let s = distribution(records, of, 1e-3).unwrap();
    (s.p99, s.max)
}

#[test]
fn offline_throughput_is_concurrency_over_service_time() {
    for (workers, batch, service_ms) in [(1, 1, 2), (4, 1, 2), (3, 8, 5)] {
        let load = Load {
            schedule: Schedule::AllAtOnce,
            work_per_query: 1,
            samples_per_work: batch,
            min_queries: 600,
            min_duration: Duration::ZERO,
        };
        let records = simulate(&load, workers, |_, _| service_ms * MS);
        let t = throughput(&records).unwrap();
        let expected = (workers * batch) as f64 / (service_ms as f64 * 1e-3);
        assert!(
            (t.samples_per_s - expected).abs() < 1e-6 * expected,
            "{t:?}"
        );
        assert!(t.ci95[0] <= expected && expected <= t.ci95[1]);
        // Offline latency per batch is the service time: every query was taken when issued.
        assert!(records.iter().all(|r| r.latency() == service_ms * MS));
    }
}

#[test]
fn offline_keeps_issuing_until_its_minimum_duration() {
    let load = Load {
        schedule: Schedule::AllAtOnce,
        work_per_query: 1,
        samples_per_work: 1,
        min_queries: 1,
        min_duration: Duration::from_secs(1),
    };
    let records = simulate(&load, 2, |_, _| 10 * MS);
    // 2 workers x 100 rounds of 10 ms issue 200 queries before 1 s; the first worker free at
    // 1 s takes one more, which meets the minimum duration, and issuing stops.
    assert_eq!(records.len(), 201);
}

/// M/D/1: Poisson arrivals at rate lambda, one server of fixed service time 1/mu; the mean wait in
/// the queue is rho / (2 mu (1 - rho)) (Pollaczek–Khinchine).
#[test]
fn server_wait_at_half_load_matches_m_d_1() {
    let (service, rate, n) = (1e-3, 500.0, 40_000);
    let records = simulate(&server(rate, n), 1, |_, _| Duration::from_secs_f64(service));
    let rho = rate * service;
    let expected = rho / (2.0 / service * (1.0 - rho));
    let waits: Vec<f64> = records.iter().map(|r| r.wait().as_secs_f64()).collect();
    let mean = waits.iter().sum::<f64>() / waits.len() as f64;
    // Successive waits are correlated, so the sampling error comes from 40 batch means of 1000
    // queries each (a batch is hundreds of busy periods long, so the means are nearly
    // independent).
    let batches: Vec<f64> = waits
        .chunks(1000)
        .map(|c| c.iter().sum::<f64>() / c.len() as f64)
        .collect();
    let b = batches.len() as f64;
    let var = batches.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (b - 1.0);
    let standard_error = (var / b).sqrt();
    assert!(standard_error < 0.05 * expected, "{standard_error}");
    assert!(
        (mean - expected).abs() < 4.0 * standard_error,
        "mean wait {mean} s, M/D/1 {expected} s, standard error {standard_error}"
    );
}

#[test]
fn overload_is_invalid_and_half_load_valid() {
    let bound = LatencyBound {
        percentile: 0.99,
        bound: 10 * MS,
    };
    let latencies = |rate: f64| -> Vec<Duration> {
        simulate(&server(rate, 5000), 1, |_, _| MS)
            .iter()
            .map(QueryRecord::latency)
            .collect()
    };
    assert!(verdict(&latencies(500.0), &bound).valid);
    let over = verdict(&latencies(1200.0), &bound);
    assert!(!over.valid && over.over_bound > 1000, "{over:?}");
}

/// One 200 ms stall at 1000 QPS: the queries that arrived during it waited behind it, so it
/// shows in the p99 of latency timed from the scheduled arrival. Timed from when a worker picked
/// a query up, only the stalled query itself is slow: the same run's p99 hides it.
#[test]
fn a_stall_shows_in_the_tail_without_coordinated_omission() {
    let stalled = 5000;
    let records = simulate(&server(1000.0, 10_000), 1, |q, _| {
        if q == stalled { 200 * MS } else { MS / 10 }
    });
    let (p99, max) = p99_ms(&records, QueryRecord::latency);
    assert!(p99 > 50.0, "p99 {p99} ms");
    assert!(max >= 200.0, "max {max} ms");
    let picked_up = |r: &QueryRecord| r.finished - r.started;
    let (p99_from_pick_up, _) = p99_ms(&records, picked_up);
    assert!(p99_from_pick_up < 1.0, "{p99_from_pick_up}");
}

#[test]
fn multi_stream_queries_end_with_their_last_sample() {
    let load = |schedule| Load {
        schedule,
        work_per_query: 8,
        samples_per_work: 1,
        min_queries: 50,
        min_duration: Duration::ZERO,
    };
    // 8 samples on 2 workers of 1 ms: 4 ms a query.
    let back_to_back = simulate(&load(Schedule::AfterPrevious), 2, |_, _| MS);
    assert!(back_to_back.iter().all(|r| r.latency() == 4 * MS));
    assert_eq!(back_to_back[49].scheduled, 49 * 4 * MS);
    let interval = 10 * MS;
    let fixed = simulate(&load(Schedule::Fixed { interval }), 2, |_, _| MS);
    assert!(fixed.iter().all(|r| r.latency() == 4 * MS));
    assert_eq!(fixed[49].scheduled, 49 * interval);
    // A fixed interval shorter than a query queues them: latency grows query after query.
    let queued = simulate(&load(Schedule::Fixed { interval: 2 * MS }), 2, |_, _| MS);
    assert_eq!(queued[49].latency(), 4 * MS + 49 * 2 * MS);
    assert_eq!(back_to_back.iter().map(|r| r.samples).sum::<usize>(), 400);
}

#[test]
fn a_failed_inference_ends_the_run_with_its_error() {
    struct Failing(Option<Completion>);
    impl Sut for Failing {
        fn workers(&self) -> usize {
            1
        }
        fn start(&mut self, worker: usize, work: Work) {
            self.0 = Some(Completion {
                worker,
                work,
                finished: MS,
                error: Some("out of memory".into()),
            });
        }
        fn wait(&mut self, _: Option<Duration>) -> Option<Completion> {
            self.0.take()
        }
    }
    let clock = VirtualClock::default();
    let load = Load {
        schedule: Schedule::AllAtOnce,
        ..server(1.0, 100)
    };
    assert_eq!(
        drive(&load, &mut Failing(None), &clock),
        Err("out of memory".to_string())
    );
}

/// With a bound long against the service time, a run is VALID up to about the capacity
/// mu = 1000 QPS: just below it the queue stays short of the bound, just above it grows past the
/// bound within the run (by 1 - mu/lambda of a service time per query). The search must land
/// within its 2 % tolerance of that, plus 2 % for where the finite run puts the edge.
#[test]
fn peak_search_finds_the_capacity() {
    let bound = LatencyBound {
        percentile: 0.99,
        bound: 300 * MS,
    };
    let search = PeakSearch {
        start_qps: 100.0,
        tolerance: 0.02,
        max_probes: 30,
    };
    let peak = find_peak(&search, |qps| {
        let records = simulate(&server(qps, 20_000), 1, |_, _| MS);
        let latencies: Vec<Duration> = records.iter().map(QueryRecord::latency).collect();
        Some(verdict(&latencies, &bound).valid)
    });
    let found = peak.valid_qps.unwrap();
    assert!(peak.converged);
    assert!((found - 1000.0).abs() < 40.0, "{found} {:?}", peak.probes);
}

/// On the real clock with real threads: one worker whose server stalls once for 200 ms. The
/// stall shows in the maximum, and the queries that arrived during it carry their time in the
/// queue (wide margins: the host only ever makes it slower).
#[test]
fn a_real_stall_shows_in_latency_from_the_scheduled_arrival() {
    struct Stalling(usize);
    impl Serve for Stalling {
        fn serve(&mut self, _: Work) -> Result<(), String> {
            self.0 += 1;
            std::thread::sleep(if self.0 == 50 { 200 * MS } else { MS / 2 });
            Ok(())
        }
    }
    let records = with_pool(1, &|_| Ok(Box::new(Stalling(0))), |pool| {
        let clock = pool.restart_clock();
        drive(&server(200.0, 200), pool, &clock)
    })
    .unwrap()
    .unwrap();
    let (_, max) = p99_ms(&records, QueryRecord::latency);
    assert!(max >= 200.0, "{max}");
    let queued_behind = records.iter().filter(|r| r.wait() > 50 * MS).count();
    assert!(queued_behind >= 3, "{queued_behind}");
}

#[test]
fn a_server_that_cannot_be_made_is_the_error() {
    let made = with_pool(
        3,
        &|w| {
            if w == 2 {
                Err(format!("worker {w}: no device"))
            } else {
                Ok(Box::new(Noop) as Box<dyn Serve>)
            }
        },
        |_| (),
    );
    assert_eq!(made, Err("worker 2: no device".to_string()));
}

struct Noop;
impl Serve for Noop {
    fn serve(&mut self, _: Work) -> Result<(), String> {
        Ok(())
    }
}
