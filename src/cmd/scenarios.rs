//! `bench`'s scenario options: which scenarios, and the sweep of batch sizes, concurrencies and
//! query rates that makes their cells; every setting checked before any cell runs.

use std::time::Duration;

use chipbench_harness::plan::Prepared;
use chipbench_harness::scenario::Scenario;
use chipbench_harness::scenario::cell::batched;
use chipbench_harness::scenario::peak::{DEFAULT_TOLERANCE_PERCENT, PeakSettings};
use chipbench_harness::scenario::settings::{
    DEFAULT_GEN_TOKENS, DEFAULT_MIN_DURATION, DEFAULT_MIN_QUERIES, DEFAULT_PROMPT_TOKENS,
    DEFAULT_REQUESTS, DEFAULT_SAMPLES_PER_QUERY, GenerationSettings, ScenarioSettings, TokenBound,
    parse_latency_bounds,
};
use chipbench_harness::scenario::verdict::{CONFIDENCE, min_queries};
use clap::Args;

use crate::UsageError;

#[derive(Args, Debug, Default)]
pub struct ScenarioArgs {
    /// How queries reach the model (repeatable or comma-separated): single-stream (one at a
    /// time, the default), offline (all at once: throughput), server (Poisson arrivals at
    /// --target-qps: latency under load), multi-stream (queries of --samples-per-query samples),
    /// generate (a decoder with a KV cache: prefill, then greedy decode steps; TTFT, TPOT).
    #[arg(
        long = "scenario",
        value_delimiter = ',',
        value_name = "NAME[,NAME...]"
    )]
    scenarios: Vec<Scenario>,
    /// Samples per inference for offline, server and multi-stream, bound to the model's batch
    /// dimension (the one named like batch, else the leading dynamic one); a list sweeps it.
    #[arg(long, value_delimiter = ',', value_name = "N[,N...]")]
    batch: Vec<usize>,
    /// Inferences in flight at once, each worker with a session of its own (default 1); a list
    /// sweeps it.
    #[arg(long, value_delimiter = ',', value_name = "N[,N...]")]
    concurrency: Vec<usize>,
    /// Server: the rate of the Poisson arrivals, queries per second; generate: requests per
    /// second, each served by one of --concurrency sessions. A list sweeps it.
    #[arg(long, value_delimiter = ',', value_name = "QPS[,QPS...]")]
    target_qps: Vec<f64>,
    /// Server: the latency a percentile of queries must stay within, e.g. p99=10ms; generate
    /// (served): the time to first token and the time per output token of a percentile of
    /// requests, e.g. ttft:p99=2s,tpot:p99=200ms. Each cell is then VALID or INVALID by MLPerf's
    /// early-stopping rule.
    #[arg(long, value_name = "[METRIC:]pNN=TIME[,...]")]
    latency_bound: Option<String>,
    /// Server or generate: search for the highest query (request) rate whose run is VALID under
    /// --latency-bound, by bracketing then bisection, each probe a cell of its own; the first
    /// rate is --target-qps, else the capacity an offline run at the same batch and concurrency
    /// (generate: its requests one after another) measures.
    #[arg(long)]
    find_peak: bool,
    /// --find-peak: stop once the bracket (first INVALID rate - highest VALID) is within this
    /// share of the VALID rate, percent.
    #[arg(long, value_name = "PERCENT", default_value_t = DEFAULT_TOLERANCE_PERCENT)]
    peak_tolerance: f64,
    /// --find-peak: searches per sweep point, each a sample of the peak (`compare` gates the
    /// peak from 3 or more).
    #[arg(long, value_name = "N", default_value_t = 1)]
    find_peak_repeats: usize,
    /// Multi-stream: samples in one query.
    #[arg(long, value_name = "K", default_value_t = DEFAULT_SAMPLES_PER_QUERY)]
    samples_per_query: usize,
    /// Multi-stream: issue a query every TIME instead of when the previous one ends.
    #[arg(long, value_parser = crate::parse_duration, value_name = "TIME")]
    query_interval: Option<Duration>,
    /// Queries a load-generator cell issues at the least (default 200, or what
    /// --latency-bound's early stopping needs, 459 for p99).
    #[arg(long, value_name = "N")]
    min_queries: Option<u64>,
    /// Duration a load-generator cell issues queries for at the least.
    #[arg(long, value_parser = crate::parse_duration, value_name = "TIME")]
    min_query_duration: Option<Duration>,
    /// Generate: tokens of each request's prompt (seeded ids), prefilled in one inference; a
    /// list sweeps it.
    #[arg(long, value_delimiter = ',', value_name = "P[,P...]")]
    prompt_tokens: Vec<usize>,
    /// Generate: greedy decode steps after the prefill, each one token per sequence, the cache
    /// fed back.
    #[arg(long, value_name = "G")]
    gen_tokens: Option<usize>,
    /// Generate: requests timed per cell (default 10, or what --latency-bound's early stopping
    /// needs, 459 for p99), one after another or, with --target-qps, as Poisson arrivals; each
    /// session first serves an untimed warm-up request.
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
}

impl ScenarioArgs {
    /// Whether any cell runs through the load generator.
    pub fn any_load(&self) -> bool {
        self.scenarios.iter().any(|s| *s != Scenario::SingleStream)
    }

    /// The scenario names of the run, for its config.
    pub fn names(&self) -> String {
        if self.scenarios.is_empty() {
            return Scenario::SingleStream.name().into();
        }
        let names: Vec<&str> = self.scenarios.iter().map(|s| s.name()).collect();
        names.join(",")
    }

    /// The scenario of each cell of a target, in order (`None`: single-stream), every setting
    /// checked against `models` (a batch a model cannot take is refused here).
    pub fn cells(
        &self,
        seed: u64,
        models: &[Prepared],
    ) -> Result<Vec<Option<ScenarioSettings>>, UsageError> {
        let usage = |e: String| UsageError(e);
        let scenarios = if self.scenarios.is_empty() {
            vec![Scenario::SingleStream]
        } else {
            self.scenarios.clone()
        };
        let has = |s: Scenario| scenarios.contains(&s);
        let load_only = [
            ("--batch", !self.batch.is_empty()),
            ("--concurrency", !self.concurrency.is_empty()),
            ("--min-queries", self.min_queries.is_some()),
            ("--min-query-duration", self.min_query_duration.is_some()),
        ];
        for (option, given) in load_only {
            if given && !self.any_load() {
                return Err(usage(format!(
                    "{option} applies to --scenario offline, server or multi-stream (single-stream \
                     binds a batch with --dim batch=N)"
                )));
            }
        }
        let served = has(Scenario::Server) || has(Scenario::Generate);
        for (option, given) in [
            ("--target-qps", !self.target_qps.is_empty()),
            ("--latency-bound", self.latency_bound.is_some()),
            ("--find-peak", self.find_peak),
        ] {
            if given && !served {
                return Err(usage(format!(
                    "{option} applies to --scenario server or generate"
                )));
            }
        }
        if self.find_peak && self.target_qps.len() > 1 {
            return Err(usage(
                "--find-peak starts from one --target-qps (or, without it, from an offline run's \
                 capacity), not a list"
                    .into(),
            ));
        }
        let peak = self.find_peak.then_some(PeakSettings {
            tolerance: self.peak_tolerance / 100.0,
            repeats: self.find_peak_repeats,
        });
        let generate_only = [
            ("--prompt-tokens", !self.prompt_tokens.is_empty()),
            ("--gen-tokens", self.gen_tokens.is_some()),
            ("--requests", self.requests.is_some()),
        ];
        for (option, given) in generate_only {
            if given && !has(Scenario::Generate) {
                return Err(usage(format!("{option} applies to --scenario generate")));
            }
        }
        if self.query_interval.is_some() && !has(Scenario::MultiStream) {
            return Err(usage(
                "--query-interval applies to --scenario multi-stream".into(),
            ));
        }
        let (bound, token_bounds) = match self.latency_bound.as_deref() {
            Some(s) => parse_latency_bounds(s).map_err(usage)?,
            None => (None, Vec::new()),
        };
        if bound.is_some() && !has(Scenario::Server) {
            return Err(usage(
                "--latency-bound pNN=TIME bounds a server's query latency: a generate run's \
                 bounds name ttft or tpot (ttft:p99=2s,tpot:p99=200ms)"
                    .into(),
            ));
        }
        if !token_bounds.is_empty() && !has(Scenario::Generate) {
            return Err(usage(
                "--latency-bound ttft:... and tpot:... apply to --scenario generate".into(),
            ));
        }
        if self.find_peak && has(Scenario::Server) && bound.is_none() {
            return Err(usage(
                "--find-peak with --scenario server needs --latency-bound pNN=TIME: the peak is \
                 the highest rate whose run is VALID under it"
                    .into(),
            ));
        }
        let min_queries = self.min_queries.unwrap_or_else(|| {
            bound.map_or(DEFAULT_MIN_QUERIES, |b| {
                DEFAULT_MIN_QUERIES.max(min_queries(b.percentile, CONFIDENCE))
            })
        });
        let batches: Vec<Option<usize>> = if self.batch.is_empty() {
            vec![None]
        } else {
            self.batch.iter().map(|&b| Some(b)).collect()
        };
        let concurrencies = if self.concurrency.is_empty() {
            vec![1]
        } else {
            self.concurrency.clone()
        };
        let mut cells = Vec::new();
        for scenario in scenarios {
            if scenario == Scenario::SingleStream {
                cells.push(None);
                continue;
            }
            if scenario == Scenario::Generate {
                cells.extend(self.generate_cells(
                    seed,
                    &batches,
                    &concurrencies,
                    &token_bounds,
                    peak,
                )?);
                continue;
            }
            let rates: Vec<Option<f64>> = match scenario {
                Scenario::Server if self.target_qps.is_empty() => vec![None],
                Scenario::Server => self.target_qps.iter().map(|&q| Some(q)).collect(),
                _ => vec![None],
            };
            for &batch in &batches {
                for &concurrency in &concurrencies {
                    for &target_qps in &rates {
                        let settings = ScenarioSettings {
                            scenario,
                            batch,
                            concurrency,
                            target_qps,
                            samples_per_query: self.samples_per_query,
                            query_interval: self.query_interval,
                            latency_bound: bound.filter(|_| scenario == Scenario::Server),
                            min_queries,
                            min_duration: self.min_query_duration.unwrap_or(DEFAULT_MIN_DURATION),
                            seed,
                            find_peak: peak.filter(|_| scenario == Scenario::Server),
                            probe: None,
                            generation: None,
                            token_bounds: Vec::new(),
                        };
                        settings.check().map_err(usage)?;
                        cells.push(Some(settings));
                    }
                }
            }
        }
        for model in models {
            if let Prepared::Ready(m) = model {
                for &batch in &batches {
                    batched(m, batch).map_err(usage)?;
                }
            }
        }
        Ok(cells)
    }

    /// The generate scenario's cells: one per batch, concurrency, prompt length and request
    /// rate (none: requests one after another).
    fn generate_cells(
        &self,
        seed: u64,
        batches: &[Option<usize>],
        concurrencies: &[usize],
        token_bounds: &[TokenBound],
        peak: Option<PeakSettings>,
    ) -> Result<Vec<Option<ScenarioSettings>>, UsageError> {
        let prompts = if self.prompt_tokens.is_empty() {
            vec![DEFAULT_PROMPT_TOKENS]
        } else {
            self.prompt_tokens.clone()
        };
        let rates: Vec<Option<f64>> = match self.target_qps.is_empty() {
            true => vec![None],
            false => self.target_qps.iter().map(|&q| Some(q)).collect(),
        };
        let requests = self.requests.unwrap_or_else(|| {
            token_bounds
                .iter()
                .map(|b| min_queries(b.bound.percentile, CONFIDENCE))
                .fold(DEFAULT_REQUESTS, u64::max)
        });
        let mut cells = Vec::new();
        for &batch in batches {
            for &concurrency in concurrencies {
                for &prompt_tokens in &prompts {
                    for &target_qps in &rates {
                        let settings = ScenarioSettings {
                            scenario: Scenario::Generate,
                            batch,
                            concurrency,
                            target_qps,
                            samples_per_query: self.samples_per_query,
                            query_interval: None,
                            latency_bound: None,
                            min_queries: 0,
                            min_duration: self.min_query_duration.unwrap_or(Duration::ZERO),
                            seed,
                            find_peak: peak,
                            probe: None,
                            generation: Some(GenerationSettings {
                                prompt_tokens,
                                gen_tokens: self.gen_tokens.unwrap_or(DEFAULT_GEN_TOKENS),
                                requests,
                            }),
                            token_bounds: token_bounds.to_vec(),
                        };
                        settings.check().map_err(UsageError)?;
                        cells.push(Some(settings));
                    }
                }
            }
        }
        Ok(cells)
    }
}
