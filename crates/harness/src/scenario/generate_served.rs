//! The generate scenario served: requests arrive as a Poisson process at `--target-qps`
//! requests per second, each served by the first free of `--concurrency` sessions (one per
//! worker thread, each loaded and warmed up with one untimed request before the clock starts),
//! through the load generator of the server scenario ([`super::driver`]). A request's TTFT and
//! end-to-end time count from its scheduled arrival, so the wait for a session is in them (no
//! coordinated omission); its TPOTs are its own decode steps. `--latency-bound
//! ttft:p99=...,tpot:p99=...` gives each run a verdict per bound by MLPerf's early stopping, and
//! `--find-peak` searches the highest VALID rate ([`super::search`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chipbench_core::decoder::Decoder;
use chipbench_core::result::{CellResult, GenerationServing, TokenVerdict};
use chipbench_core::{Session, stats};
use chipbench_runner::resources::PeakMemory;
use chipbench_runner::{MeasureSettings, ModelUnderTest, Target};

use super::driver::{self, Work};
use super::figures::{Workers, scenario_run};
use super::generate::{DecodeLoop, DecoderLoad, RequestTimes, generation_run, prompt};
use super::pool::{Serve, with_pool};
use super::settings::{GenerationSettings, ScenarioSettings, TokenBound, TokenMetric};
use super::verdict::verdict;

/// One served request: which query it was, when its worker started it and when it ended (the
/// worker's clock readings), and its times from that start.
struct Served {
    query: usize,
    started: Instant,
    ended: Instant,
    times: RequestTimes,
}

/// A worker's session of the decoder, serving one request per piece of work.
struct GenerationServer {
    session: Box<dyn Session>,
    decoder: Decoder,
    generation: GenerationSettings,
    batch: usize,
    vocabulary: usize,
    seed: u64,
    log: Arc<Mutex<Vec<Served>>>,
}

impl Serve for GenerationServer {
    fn serve(&mut self, work: Work) -> Result<(), String> {
        let g = self.generation;
        let prompt = prompt(
            self.seed,
            work.query as u64,
            self.batch,
            g.prompt_tokens,
            self.vocabulary,
        );
        let started = Instant::now();
        let mut run = DecodeLoop::new(self.session.as_mut(), self.decoder.clone())?;
        let times = run.request(&prompt, g.gen_tokens, &mut |_, _| {})?;
        let ended = Instant::now();
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Served {
                query: work.query,
                started,
                ended,
                times,
            });
        Ok(())
    }
}

/// What a worker's load reported: its time, the engine's threads and settings, the decoder's
/// layers.
type Loaded = (
    f64,
    usize,
    std::collections::BTreeMap<String, String>,
    usize,
);

/// Measures a served generate cell into `cell` (see the module's documentation).
pub fn measure_into(
    model: &ModelUnderTest,
    target: &Target,
    threads: Option<usize>,
    settings: &MeasureSettings,
    scenario: &ScenarioSettings,
    cell: &mut CellResult,
) -> Result<(), String> {
    let DecoderLoad {
        generation: g,
        batch,
        inputs,
        source,
        options,
        growing,
    } = DecoderLoad::of(model, threads, settings, scenario, cell)?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let loaded: Mutex<Vec<Loaded>> = Mutex::new(Vec::new());
    let make = |_worker: usize| -> Result<Box<dyn Serve>, String> {
        let t = Instant::now();
        let mut session = target
            .backend
            .load_growing(&source, &target.device, &options, &growing)
            .map_err(|e| e.to_string())?;
        let load_ms = t.elapsed().as_secs_f64() * 1e3;
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name.as_str()).collect();
        let decoder = Decoder::detect(inputs.clone(), &outputs)?;
        let layers = decoder.present.len();
        let mut vocabulary = 0;
        let warm_up = vec![vec![0i64; g.prompt_tokens]; batch];
        DecodeLoop::new(session.as_mut(), decoder.clone())?.request(
            &warm_up,
            g.gen_tokens,
            &mut |_, logits| vocabulary = logits.shape().last().copied().unwrap_or(0),
        )?;
        if vocabulary == 0 {
            return Err("the logits have no vocabulary axis".into());
        }
        let record = (load_ms, session.threads(), session.settings(), layers);
        loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
        Ok(Box::new(GenerationServer {
            session,
            decoder,
            generation: g,
            batch,
            vocabulary,
            seed: settings.seed,
            log: Arc::clone(&log),
        }))
    };
    let memory = PeakMemory::reset();
    let load = scenario.load(batch);
    let (records, served) = with_pool(scenario.concurrency, &make, |pool| {
        // The clock starts once every session is loaded and warmed up.
        let clock = pool.restart_clock();
        let records = driver::drive(&load, pool, &clock)?;
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        let served: Vec<(usize, Duration, Duration, RequestTimes)> = log
            .drain(..)
            .map(|s| {
                let (started, ended) = (clock.since_origin(s.started), clock.since_origin(s.ended));
                (s.query, started, ended, s.times)
            })
            .collect();
        Ok::<_, String>((records, served))
    })??;
    cell.peak_rss_bytes = memory.peak_bytes();
    cell.rss_before_load_bytes = memory.baseline_bytes();
    let loaded = loaded.into_inner().unwrap_or_else(|p| p.into_inner());
    let layers = loaded.first().map_or(0, |l| l.3);
    if let Some((_, threads, settings, _)) = loaded.first() {
        cell.backend.threads = Some(*threads);
        cell.backend.settings = settings.clone();
    }
    cell.load_ms = loaded.iter().map(|l| l.0).reduce(f64::max);

    let (requests, waits) = by_query(&records, served);
    let mut generation =
        generation_run(&requests, &waits, &g, batch, layers).ok_or("no request completed")?;
    let workers = Workers {
        concurrency: scenario.concurrency,
        shared_session: false,
        sessions_memory_bytes: None,
    };
    let mut run = scenario_run(&records, &load, &workers, None).ok_or("no request completed")?;
    run.sessions_reason = Some(target.backend.session_sharing().into());
    run.sessions_memory_bytes = cell
        .peak_rss_bytes
        .zip(cell.rss_before_load_bytes)
        .map(|(peak, before)| peak.saturating_sub(before));
    let tokens = (requests.len() * batch * g.gen_tokens) as f64;
    let serving = GenerationServing {
        gen_tokens_per_s: tokens / run.duration_s,
        verdicts: scenario
            .token_bounds
            .iter()
            .map(|b| token_verdict(b, &requests, &waits))
            .collect(),
    };
    cell.samples_ms = generation
        .per_request
        .iter()
        .map(|r| r.end_to_end_ms)
        .collect();
    cell.latency_ms = stats::summarize(&cell.samples_ms);
    cell.throughput_per_s = Some(serving.gen_tokens_per_s);
    generation.serving = Some(serving);
    cell.generation = Some(generation);
    cell.scenario_run = Some(run);
    provenance(cell, &memory);
    Ok(())
}

/// Each served request's times, in the order of its query, and its wait from its scheduled
/// arrival to its worker's start. Every time is on the run's clock: what a request spent before
/// its first token (queued, then the prefill) is TTFT; its TTFT ends where its decode steps
/// began: its end less its decode time (read after its last token: a bound above by the
/// microseconds between the two readings).
fn by_query(
    records: &[driver::QueryRecord],
    mut served: Vec<(usize, Duration, Duration, RequestTimes)>,
) -> (Vec<RequestTimes>, Vec<Duration>) {
    served.sort_by_key(|s| s.0);
    served
        .into_iter()
        .filter_map(|(query, started, ended, mut times)| {
            let scheduled = records.get(query)?.scheduled;
            let first_token = ended.saturating_sub(times.decode_time());
            times.ttft = first_token.saturating_sub(started);
            times.end_to_end = ended.saturating_sub(started);
            Some((times, started.saturating_sub(scheduled)))
        })
        .unzip()
}

/// The verdict on one bound: one observation per request (TTFT from its arrival, or its mean
/// TPOT), as MLPerf counts them; a request's tokens are not independent samples.
fn token_verdict(
    bound: &TokenBound,
    requests: &[RequestTimes],
    waits: &[Duration],
) -> TokenVerdict {
    let per_request: Vec<Duration> = requests
        .iter()
        .zip(waits)
        .map(|(r, &wait)| match bound.metric {
            TokenMetric::Ttft => wait + r.ttft,
            TokenMetric::Tpot => r.decode_time() / r.tpot.len().max(1) as u32,
        })
        .collect();
    TokenVerdict {
        metric: bound.metric.name().into(),
        verdict: verdict(&per_request, &bound.bound),
    }
}

fn provenance(cell: &mut CellResult, memory: &PeakMemory) {
    let entries = [
        (
            "generation",
            "measured: monotonic clock (std::time::Instant) relative to the start of the load \
             generator's run, after every worker's session was loaded and warmed up with one \
             untimed request; requests arrive as a Poisson process, each served whole by the \
             first free worker's session; TTFT and end-to-end time count from the scheduled \
             arrival (the wait for a session included), TPOTs are the request's own decode \
             steps; the prompt and per-request token rates are over the request's own prefill \
             and decode times; generation.serving.gen_tokens_per_s is every decode token over \
             the run's duration",
        ),
        (
            "generation.serving.verdicts",
            "derived: MLPerf's early stopping (one-sided binomial test at 99 % confidence), one \
             observation per request: its TTFT from its scheduled arrival, or its mean TPOT \
             (decode time / decode steps)",
        ),
        (
            "latency_ms",
            "measured: monotonic clock, each request from its scheduled arrival to its last \
             token (queueing included: no coordinated omission); samples_ms holds one per request",
        ),
        (
            "throughput_per_s",
            "derived: generation.serving.gen_tokens_per_s, decode tokens of every request / (last \
             request's end - first request's issue)",
        ),
        (
            "load_ms",
            "measured: monotonic clock, the longest of the workers' session loads (each worker \
             loads its own, at the same time)",
        ),
        (
            "scenario_run",
            "measured: monotonic clock relative to the start of the load generator's run; a \
             query is one request, its samples the sequences of its batch",
        ),
        (
            "accuracy",
            "not recorded: a served generate cell's tokens are the same model's as the generate \
             cell run one request after another, whose generation.accuracy compares them",
        ),
        ("generation.accuracy", "not recorded: see accuracy"),
    ];
    for (field, how) in entries {
        cell.provenance.insert(field.into(), how.into());
    }
    cell.provenance
        .insert("peak_rss_bytes".into(), memory.method().into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::verdict::LatencyBound;

    fn times(ttft_ms: u64, tpot_ms: &[u64]) -> RequestTimes {
        let ms = Duration::from_millis;
        let tpot: Vec<Duration> = tpot_ms.iter().map(|&t| ms(t)).collect();
        RequestTimes {
            ttft: ms(ttft_ms),
            end_to_end: ms(ttft_ms) + tpot.iter().sum::<Duration>(),
            tpot,
            kv_cache_bytes: 0,
            cache_feedback: chipbench_core::FeedbackPath {
                copies_per_inference: 0,
                how: "test".into(),
            },
            tokens: Vec::new(),
        }
    }

    #[test]
    fn a_request_s_ttft_counts_its_wait_and_its_tpot_is_its_mean_step() {
        let ms = Duration::from_millis;
        let record = |scheduled| driver::QueryRecord {
            scheduled: ms(scheduled),
            issued: ms(scheduled),
            started: ms(scheduled),
            finished: ms(0),
            samples: 1,
        };
        // Query 1 waited 30 ms for a session; both then took 5 ms to their first token and
        // 2 x 10 ms of decode steps. The log comes in the order the requests ended.
        let served = vec![
            (1, ms(40), ms(65), times(5, &[10, 10])),
            (0, ms(0), ms(25), times(5, &[10, 10])),
        ];
        let (requests, waits) = by_query(&[record(0), record(10)], served);
        assert_eq!(waits, [ms(0), ms(30)]);
        assert_eq!(requests[1].ttft, ms(5));
        assert_eq!(requests[1].end_to_end, ms(25));
        let bound = |metric, bound_ms| TokenBound {
            metric,
            bound: LatencyBound {
                percentile: 0.5,
                bound: ms(bound_ms),
            },
        };
        // p50 from 7 observations at the least: repeat the two requests.
        let requests: Vec<RequestTimes> = requests.iter().cycle().take(8).cloned().collect();
        let waits: Vec<Duration> = waits.iter().cycle().take(8).copied().collect();
        let ttft = token_verdict(&bound(TokenMetric::Ttft, 20), &requests, &waits);
        assert_eq!(ttft.metric, "ttft");
        // Half the requests (TTFT 35 ms) are over 20 ms: p50 is not shown within it.
        assert_eq!(ttft.verdict.over_bound, 4);
        assert!(!ttft.verdict.valid);
        let ttft = token_verdict(&bound(TokenMetric::Ttft, 35), &requests, &waits);
        assert!(ttft.verdict.valid && ttft.verdict.over_bound == 0);
        let tpot = token_verdict(&bound(TokenMetric::Tpot, 10), &requests, &waits);
        assert!(tpot.verdict.valid && tpot.verdict.queries == 8);
        let tpot = token_verdict(&bound(TokenMetric::Tpot, 9), &requests, &waits);
        assert_eq!(tpot.verdict.over_bound, 8);
    }
}
