//! How a scenario cell is driven, as one serde type that the plan, the worker processes (in their
//! job) and the record share; checked once, before any cell runs, with errors that name the
//! option at fault.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Scenario;
use super::arrivals::Schedule;
use super::driver::Load;
use super::peak::{PeakSettings, ProbeOf};
use super::verdict::{CONFIDENCE, LatencyBound, min_queries};

/// The settings of one scenario cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSettings {
    pub scenario: Scenario,
    /// `--batch`: samples per inference, bound to the model's batch dimension; `None` runs the
    /// model as its inputs are bound (`--dim`, the suite's declaration).
    pub batch: Option<usize>,
    /// `--concurrency`: inferences in flight at once.
    pub concurrency: usize,
    /// `--target-qps` (server).
    pub target_qps: Option<f64>,
    /// `--samples-per-query` (multi-stream).
    pub samples_per_query: usize,
    /// `--query-interval` (multi-stream): `None` issues each query when the previous ends.
    pub query_interval: Option<Duration>,
    /// `--latency-bound` (server).
    pub latency_bound: Option<LatencyBound>,
    /// `--min-queries`, `--min-query-duration`: issuing stops once both are met.
    pub min_queries: u64,
    pub min_duration: Duration,
    /// Seed of the Poisson arrivals.
    pub seed: u64,
    /// `--find-peak` (server): the planned cell stands for searches of the highest VALID rate,
    /// whose probes are cells of their own (`target_qps`, when given, is the first rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find_peak: Option<PeakSettings>,
    /// The cell is a probe of a `--find-peak` search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeOf>,
    /// The generate scenario's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationSettings>,
    /// `--latency-bound ttft:p99=2s,tpot:p99=200ms` (generate, served): every bound a served
    /// generate run must meet to be VALID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_bounds: Vec<TokenBound>,
}

/// What a generate cell's latency bound applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenMetric {
    /// Each request's time to first token, from its scheduled arrival.
    Ttft,
    /// Each request's mean time per output token: its decode time over its decode steps.
    Tpot,
}

impl TokenMetric {
    pub fn name(self) -> &'static str {
        match self {
            TokenMetric::Ttft => "ttft",
            TokenMetric::Tpot => "tpot",
        }
    }
}

/// One entry of a generate cell's `--latency-bound`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenBound {
    pub metric: TokenMetric,
    pub bound: LatencyBound,
}

/// The bounds as the command line writes them: `ttft:p99=2s,tpot:p99=200ms`.
pub fn format_token_bounds(bounds: &[TokenBound]) -> String {
    bounds
        .iter()
        .map(|b| {
            format!(
                "{}:p{}={}",
                b.metric.name(),
                b.bound.percentile * 100.0,
                humantime::format_duration(b.bound.bound)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `--scenario generate`: what one request is and how many run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationSettings {
    /// `--prompt-tokens`: the prompt's length, prefilled in one inference.
    pub prompt_tokens: usize,
    /// `--gen-tokens`: greedy decode steps after the prefill.
    pub gen_tokens: usize,
    /// `--requests`: requests timed, one after another, after one untimed warm-up request.
    pub requests: u64,
}

/// `--gen-tokens`' default.
pub const DEFAULT_GEN_TOKENS: usize = 16;
/// `--prompt-tokens`' default.
pub const DEFAULT_PROMPT_TOKENS: usize = 32;
/// `--requests`' default.
pub const DEFAULT_REQUESTS: u64 = 10;

/// Queries at the least when no latency bound asks for more (CI-sized).
pub const DEFAULT_MIN_QUERIES: u64 = 200;
/// Duration at the least (MLPerf asks 600 s; CI cannot).
pub const DEFAULT_MIN_DURATION: Duration = Duration::from_secs(1);
/// `--samples-per-query`'s default (MLPerf's multi-stream).
pub const DEFAULT_SAMPLES_PER_QUERY: usize = 8;

impl ScenarioSettings {
    /// Every setting that cannot work, as an error naming its option.
    pub fn check(&self) -> Result<(), String> {
        if self.scenario == Scenario::SingleStream {
            return Err(
                "single-stream is measured by the runner's timed loop, not the load generator"
                    .into(),
            );
        }
        if self.batch == Some(0) {
            return Err("--batch must be at least 1".into());
        }
        match (self.scenario, &self.generation) {
            (Scenario::Generate, None) => {
                return Err("the generate scenario needs --prompt-tokens and --gen-tokens".into());
            }
            (Scenario::Generate, Some(g)) => {
                if g.prompt_tokens == 0 {
                    return Err("--prompt-tokens must be at least 1".into());
                }
                if g.gen_tokens == 0 {
                    return Err(
                        "--gen-tokens must be at least 1: a time per output token needs a decode \
                         step"
                            .into(),
                    );
                }
                if g.requests == 0 {
                    return Err("--requests must be at least 1".into());
                }
                let served = self.target_qps.is_some() || self.find_peak.is_some();
                if self.concurrency != 1 && !served {
                    return Err(
                        "--concurrency applies to a served generate run (--target-qps or \
                         --find-peak): without one, generate runs its requests one after another \
                         on one session"
                            .into(),
                    );
                }
                if !self.token_bounds.is_empty() && !served {
                    return Err(
                        "--latency-bound applies to a served generate run: give --target-qps or \
                         --find-peak"
                            .into(),
                    );
                }
                if self.latency_bound.is_some() {
                    return Err(
                        "--latency-bound of a generate run names ttft or tpot (e.g. \
                         ttft:p99=2s,tpot:p99=200ms)"
                            .into(),
                    );
                }
                for b in &self.token_bounds {
                    let needed = min_queries(b.bound.percentile, CONFIDENCE);
                    if g.requests < needed {
                        return Err(format!(
                            "--requests {} is too few for --latency-bound {}:p{}: a run can only \
                             be VALID from {needed} requests (MLPerf's early stopping at {} % \
                             confidence)",
                            g.requests,
                            b.metric.name(),
                            b.bound.percentile * 100.0,
                            CONFIDENCE * 100.0
                        ));
                    }
                }
            }
            (_, Some(_)) => {
                return Err("--prompt-tokens and --gen-tokens apply to --scenario generate".into());
            }
            (_, None) => {}
        }
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        if self.samples_per_query == 0 {
            return Err("--samples-per-query must be at least 1".into());
        }
        if let Some(peak) = &self.find_peak {
            if !matches!(self.scenario, Scenario::Server | Scenario::Generate) {
                return Err("--find-peak applies to --scenario server or generate".into());
            }
            if self.latency_bound.is_none() && self.token_bounds.is_empty() {
                return Err(
                    "--find-peak needs --latency-bound: the peak is the highest rate whose run \
                     is VALID under it"
                        .into(),
                );
            }
            if !(0.005..=0.5).contains(&peak.tolerance) {
                return Err(format!(
                    "--peak-tolerance must be from 0.5 to 50 (percent), not {}",
                    peak.tolerance * 100.0
                ));
            }
            if peak.repeats == 0 {
                return Err("--find-peak-repeats must be at least 1".into());
            }
        }
        if matches!(self.scenario, Scenario::Server | Scenario::Generate) {
            match self.target_qps {
                // Generate without a rate runs its requests one after another.
                None if self.scenario == Scenario::Generate => {}
                // A search without a first rate starts from an offline run's capacity.
                None if self.find_peak.is_some() => {}
                None => {
                    return Err("the server scenario needs --target-qps".into());
                }
                Some(q) if !(q.is_finite() && q > 0.0) => {
                    return Err(format!(
                        "--target-qps must be a positive number of queries per second, not {q}"
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(bound) = &self.latency_bound {
            let needed = min_queries(bound.percentile, CONFIDENCE);
            if self.min_queries < needed {
                return Err(format!(
                    "--min-queries {} is too few for --latency-bound p{}: a run can only be VALID \
                     from {needed} queries (MLPerf's early stopping at {} % confidence)",
                    self.min_queries,
                    bound.percentile * 100.0,
                    CONFIDENCE * 100.0
                ));
            }
        }
        if self.query_interval.is_some_and(|i| i.is_zero()) {
            return Err("--query-interval must be longer than zero".into());
        }
        Ok(())
    }

    /// What tells this cell apart from the other points of its sweep, for its id and its record:
    /// `b4-c2` (batch 4, concurrency 2), then `-q500` (server: 500 QPS), `-k8` (multi-stream: 8
    /// samples per query) and `-i10ms` (a fixed query interval). A `--find-peak` search is
    /// `b4-c2-peak`; its probes `b4-c2-peak1-p3-q500` (search 1, probe 3, at 500 QPS), the
    /// offline run that sets its first rate `b4-c2-peak1-start`.
    /// A generate cell is `b1-p32-g16` (batch, prompt and generated tokens); served, it adds its
    /// concurrency and rate like a server cell: `b1-p32-g16-c2-q5`.
    pub fn point(&self) -> String {
        let mut point = self.sweep_point();
        if self.find_peak.is_some() {
            return point + "-peak";
        }
        if let Some(p) = self.probe {
            point += &format!("-peak{}", p.search);
            if p.probe == 0 {
                return point + "-start";
            }
            point += &format!("-p{}", p.probe);
        }
        match self.scenario {
            Scenario::Server => point += &format!("-q{}", self.target_qps.unwrap_or(0.0)),
            Scenario::Generate => {
                if let Some(q) = self.target_qps {
                    point += &format!("-q{q}");
                }
            }
            Scenario::MultiStream => {
                point += &format!("-k{}", self.samples_per_query);
                if let Some(i) = self.query_interval {
                    point += &format!("-i{}", humantime::format_duration(i));
                }
            }
            Scenario::Offline | Scenario::SingleStream => {}
        }
        point
    }

    /// The batch and concurrency of the point: `b4-c2`, or `c2` when the batch is the model's;
    /// for generate, the batch, prompt and generated tokens, and the concurrency when served.
    pub fn sweep_point(&self) -> String {
        if let Some(g) = &self.generation {
            let point = format!(
                "b{}-p{}-g{}",
                self.batch.unwrap_or(1),
                g.prompt_tokens,
                g.gen_tokens
            );
            return match self.served() {
                true => format!("{point}-c{}", self.concurrency),
                false => point,
            };
        }
        match self.batch {
            Some(b) => format!("b{b}-c{}", self.concurrency),
            None => format!("c{}", self.concurrency),
        }
    }

    /// A generate cell whose requests arrive as a Poisson process (or a search for the highest
    /// such rate), rather than one after another.
    pub fn served(&self) -> bool {
        self.scenario == Scenario::Generate
            && (self.target_qps.is_some() || self.find_peak.is_some())
    }

    /// The load the driver issues, for a model bound to `batch` samples per inference. Call
    /// after [`ScenarioSettings::check`]. A served generate cell's query is one request, and it
    /// issues `--requests` of them at the least.
    pub fn load(&self, batch: usize) -> Load {
        let min_queries = match &self.generation {
            Some(g) => g.requests,
            None => self.min_queries,
        };
        let (schedule, work_per_query) = match self.scenario {
            Scenario::Server | Scenario::Generate => (
                Schedule::Poisson {
                    rate: self.target_qps.unwrap_or(f64::NAN),
                    seed: self.seed,
                },
                1,
            ),
            Scenario::MultiStream => (
                match self.query_interval {
                    Some(interval) => Schedule::Fixed { interval },
                    None => Schedule::AfterPrevious,
                },
                self.samples_per_query,
            ),
            Scenario::Offline | Scenario::SingleStream => (Schedule::AllAtOnce, 1),
        };
        Load {
            schedule,
            work_per_query,
            samples_per_work: batch,
            min_queries,
            min_duration: self.min_duration,
        }
    }
}

/// `--latency-bound p99=10ms`: a percentile from `p50` to `p99.9` and a duration.
pub fn parse_latency_bound(s: &str) -> Result<LatencyBound, String> {
    let fail = |why: &str| format!("--latency-bound '{s}': {why} (expected e.g. p99=10ms)");
    let (p, bound) = s.split_once('=').ok_or_else(|| fail("no '='"))?;
    let percentile: f64 = p
        .strip_prefix('p')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| fail("the percentile is not pNN"))?;
    if !(50.0..100.0).contains(&percentile) {
        return Err(fail(
            "the percentile must be from p50 up to, not including, p100",
        ));
    }
    let bound = humantime::parse_duration(bound.trim()).map_err(|e| fail(&e.to_string()))?;
    if bound.is_zero() {
        return Err(fail("the bound must be longer than zero"));
    }
    Ok(LatencyBound {
        percentile: percentile / 100.0,
        bound,
    })
}

/// `--latency-bound`: comma-separated entries, each `pNN=TIME` (a server's query latency) or
/// `ttft:pNN=TIME`, `tpot:pNN=TIME` (a served generate run's). At most one entry per metric.
pub fn parse_latency_bounds(s: &str) -> Result<(Option<LatencyBound>, Vec<TokenBound>), String> {
    let mut query = None;
    let mut tokens: Vec<TokenBound> = Vec::new();
    for entry in s.split(',').map(str::trim) {
        let (metric, bound) = match entry.split_once(':') {
            Some(("ttft", b)) => (Some(TokenMetric::Ttft), b),
            Some(("tpot", b)) => (Some(TokenMetric::Tpot), b),
            Some((other, _)) => {
                return Err(format!(
                    "--latency-bound '{entry}': '{other}' is not ttft or tpot (a server's bound \
                     is e.g. p99=10ms, a generate run's ttft:p99=2s,tpot:p99=200ms)"
                ));
            }
            None => (None, entry),
        };
        let bound = parse_latency_bound(bound)?;
        let twice = match metric {
            None => query.replace(bound).is_some(),
            Some(metric) => {
                let twice = tokens.iter().any(|b| b.metric == metric);
                tokens.push(TokenBound { metric, bound });
                twice
            }
        };
        if twice {
            return Err(format!(
                "--latency-bound '{s}': one bound per metric ({} twice)",
                metric.map_or("query latency", TokenMetric::name)
            ));
        }
    }
    Ok((query, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(qps: f64) -> ScenarioSettings {
        ScenarioSettings {
            scenario: Scenario::Server,
            batch: Some(1),
            concurrency: 2,
            target_qps: Some(qps),
            samples_per_query: DEFAULT_SAMPLES_PER_QUERY,
            query_interval: None,
            latency_bound: Some(parse_latency_bound("p99=10ms").unwrap()),
            min_queries: 500,
            min_duration: DEFAULT_MIN_DURATION,
            seed: 1,
            find_peak: None,
            probe: None,
            generation: None,
            token_bounds: Vec::new(),
        }
    }

    #[test]
    fn latency_bounds_parse_and_bad_ones_name_the_option() {
        let b = parse_latency_bound("p99.9=2.5ms").unwrap();
        assert!((b.percentile - 0.999).abs() < 1e-12);
        assert_eq!(b.bound, Duration::from_micros(2500));
        for bad in ["99=10ms", "p99", "p100=1ms", "p99=fast", "p99=0ms"] {
            let e = parse_latency_bound(bad).unwrap_err();
            assert!(e.starts_with("--latency-bound"), "{e}");
        }
    }

    #[test]
    fn a_generate_run_s_bounds_name_their_metric() {
        let (query, tokens) = parse_latency_bounds("ttft:p99=2s, tpot:p90=200ms").unwrap();
        assert_eq!(query, None);
        assert_eq!(tokens[0].metric, TokenMetric::Ttft);
        assert_eq!(tokens[0].bound.bound, Duration::from_secs(2));
        assert!((tokens[1].bound.percentile - 0.9).abs() < 1e-12);
        assert_eq!(format_token_bounds(&tokens), "ttft:p99=2s,tpot:p90=200ms");
        let (query, tokens) = parse_latency_bounds("p99=10ms").unwrap();
        assert!(query.is_some() && tokens.is_empty());
        for bad in [
            "ttfb:p99=1s",
            "ttft:p99=1s,ttft:p90=1s",
            "p99=1ms,p90=2ms",
            "tpot:p99",
        ] {
            let e = parse_latency_bounds(bad).unwrap_err();
            assert!(e.starts_with("--latency-bound"), "{e}");
        }
    }

    fn served_generate(qps: Option<f64>, requests: u64) -> ScenarioSettings {
        ScenarioSettings {
            scenario: Scenario::Generate,
            target_qps: qps,
            latency_bound: None,
            min_queries: 0,
            generation: Some(GenerationSettings {
                prompt_tokens: 32,
                gen_tokens: 16,
                requests,
            }),
            token_bounds: parse_latency_bounds("ttft:p99=2s,tpot:p99=200ms")
                .unwrap()
                .1,
            ..server(1.0)
        }
    }

    #[test]
    fn a_served_generate_cell_issues_its_requests_as_poisson_arrivals() {
        let served = served_generate(Some(5.0), 500);
        assert!(served.check().is_ok(), "{:?}", served.check());
        assert!(served.served());
        assert_eq!(served.point(), "b1-p32-g16-c2-q5");
        let load = served.load(1);
        assert_eq!(load.schedule, Schedule::Poisson { rate: 5.0, seed: 1 });
        assert_eq!(load.min_queries, 500);
        let e = served_generate(Some(5.0), 100).check().unwrap_err();
        assert!(e.contains("--requests 100") && e.contains("459"), "{e}");
        // Without a rate: one request after another, so neither bounds nor concurrency apply.
        let e = served_generate(None, 500).check().unwrap_err();
        assert!(e.contains("--concurrency"), "{e}");
        let sequential = ScenarioSettings {
            concurrency: 1,
            token_bounds: Vec::new(),
            ..served_generate(None, 10)
        };
        assert!(sequential.check().is_ok() && !sequential.served());
        assert_eq!(sequential.point(), "b1-p32-g16");
        let search = ScenarioSettings {
            find_peak: Some(PeakSettings {
                tolerance: 0.05,
                repeats: 1,
            }),
            ..served_generate(None, 500)
        };
        assert!(search.check().is_ok(), "{:?}", search.check());
        assert_eq!(search.point(), "b1-p32-g16-c2-peak");
        let json = serde_json::to_string(&served).unwrap();
        assert_eq!(
            serde_json::from_str::<ScenarioSettings>(&json).unwrap(),
            served
        );
    }

    #[test]
    fn bad_settings_name_their_option() {
        assert!(server(100.0).check().is_ok());
        let cases = [
            (server(0.0), "--target-qps"),
            (server(-3.0), "--target-qps"),
            (server(f64::NAN), "--target-qps"),
            (
                ScenarioSettings {
                    target_qps: None,
                    ..server(1.0)
                },
                "--target-qps",
            ),
            (
                ScenarioSettings {
                    concurrency: 0,
                    ..server(1.0)
                },
                "--concurrency",
            ),
            (
                ScenarioSettings {
                    batch: Some(0),
                    ..server(1.0)
                },
                "--batch",
            ),
            (
                ScenarioSettings {
                    min_queries: 100,
                    ..server(1.0)
                },
                "--min-queries",
            ),
            (
                ScenarioSettings {
                    find_peak: Some(PeakSettings {
                        tolerance: 0.02,
                        repeats: 1,
                    }),
                    latency_bound: None,
                    min_queries: 500,
                    ..server(1.0)
                },
                "--latency-bound",
            ),
            (
                ScenarioSettings {
                    find_peak: Some(PeakSettings {
                        tolerance: 0.0,
                        repeats: 1,
                    }),
                    ..server(1.0)
                },
                "--peak-tolerance",
            ),
        ];
        for (settings, option) in cases {
            let e = settings.check().unwrap_err();
            assert!(e.contains(option), "{e}");
        }
    }

    #[test]
    fn each_scenario_has_its_schedule_and_travels_as_json() {
        let multi = ScenarioSettings {
            scenario: Scenario::MultiStream,
            ..server(1.0)
        };
        assert_eq!(multi.load(1).schedule, Schedule::AfterPrevious);
        assert_eq!(multi.load(1).work_per_query, 8);
        assert_eq!(multi.point(), "b1-c2-k8");
        let offline = ScenarioSettings {
            scenario: Scenario::Offline,
            batch: Some(16),
            ..server(1.0)
        };
        assert_eq!(offline.load(16).schedule, Schedule::AllAtOnce);
        assert_eq!(offline.load(16).samples_per_work, 16);
        assert_eq!(offline.point(), "b16-c2");
        assert_eq!(server(250.0).point(), "b1-c2-q250");
        let search = ScenarioSettings {
            find_peak: Some(PeakSettings {
                tolerance: 0.02,
                repeats: 1,
            }),
            target_qps: None,
            ..server(1.0)
        };
        assert!(search.check().is_ok());
        assert_eq!(search.point(), "b1-c2-peak");
        let probe = |probe| ScenarioSettings {
            probe: Some(ProbeOf { search: 2, probe }),
            ..server(250.0)
        };
        assert_eq!(probe(3).point(), "b1-c2-peak2-p3-q250");
        let start = ScenarioSettings {
            scenario: Scenario::Offline,
            ..probe(0)
        };
        assert_eq!(start.point(), "b1-c2-peak2-start");
        let json = serde_json::to_string(&server(250.0)).unwrap();
        assert!(json.contains("\"server\""), "{json}");
        assert_eq!(
            serde_json::from_str::<ScenarioSettings>(&json).unwrap(),
            server(250.0)
        );
    }
}
