//! The record of a generate-scenario cell: a decoder's requests, each a prefill of the prompt
//! then greedy decode steps with the KV cache fed back, timed per token.

use serde::{Deserialize, Serialize};

use super::{LatencyStats, LatencyVerdict};

/// A generate cell's requests, every time read from the monotonic clock: run one after another
/// on one session, or (served, with `serving`) arriving as a Poisson process, each served by one
/// of `--concurrency` sessions, in which case the cell's `scenario_run` holds the load side
/// (arrivals, queue wait, requests per second).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationRun {
    /// Tokens of each prompt (`--prompt-tokens`), seeded uniform ids.
    pub prompt_tokens: usize,
    /// Decode steps after the prefill (`--gen-tokens`), each choosing one token per sequence.
    pub gen_tokens: usize,
    /// Sequences per request (`--batch`), prefilled and decoded together.
    pub batch: usize,
    pub requests: u64,
    /// Time to first token: from a request's arrival to the prefill's token chosen. Its arrival
    /// is its start when requests run one after another, its scheduled arrival when served (the
    /// wait for a free session counts).
    pub ttft_ms: LatencyStats,
    /// Time per output token: every decode step of every request, from the previous token
    /// chosen to this step's.
    pub tpot_ms: LatencyStats,
    /// From a request's arrival to its last token chosen (TTFT plus its TPOTs).
    pub end_to_end_ms: LatencyStats,
    /// Prompt tokens of every request (batch x prompt) over the sum of their prefill times
    /// (TTFT less any wait for a session).
    pub prompt_tokens_per_s: f64,
    /// Tokens of every decode step (batch x gen) over the sum of the decode times (TPOTs).
    pub gen_tokens_per_s: f64,
    /// Bytes of the cache at a request's end (every `present.*` tensor of its last step).
    pub kv_cache_bytes: u64,
    /// How the cache travels between steps on this backend, and the copies per step.
    pub cache_feedback: String,
    /// Copies of cache tensors between the engine's memory and host memory per decode step (out
    /// and back in, every layer's key and value); absent in runs written before it was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_copies_per_step: Option<u64>,
    pub per_request: Vec<GenerationRequest>,
    /// The greedy tokens and logits against the fp32 reference's on the same prompts; absent
    /// where no reference could run the model, and in runs written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<GenerationAccuracy>,
    /// The served run's figures: absent when the requests ran one after another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<GenerationServing>,
}

/// What a served generate run adds: the system's token rate and the verdicts on the bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationServing {
    /// Tokens of every decode step of every request (batch x gen x requests) over the run's
    /// duration (first issue to last end): what every session together generated per second.
    pub gen_tokens_per_s: f64,
    /// One verdict per `--latency-bound` entry (MLPerf's early stopping, one observation per
    /// request); the run is VALID when every one is.
    pub verdicts: Vec<TokenVerdict>,
}

impl GenerationServing {
    /// Every bound holds (and there is at least one).
    pub fn valid(&self) -> bool {
        !self.verdicts.is_empty() && self.verdicts.iter().all(|v| v.verdict.valid)
    }
}

/// A verdict on one of a generate cell's latency bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenVerdict {
    /// `ttft` (each request's time to first token) or `tpot` (each request's mean time per
    /// output token, its decode time over its decode steps, as MLPerf counts it).
    pub metric: String,
    pub verdict: LatencyVerdict,
}

/// A generate cell's outputs against the fp32 model's on the reference backend, on the prompts
/// of its first requests, each side choosing greedily from its own logits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationAccuracy {
    /// What produced the reference tokens and logits (`tract:cpu fp32`).
    pub reference: String,
    /// Sequences compared: every sequence of the batch of each compared request.
    pub sequences: usize,
    /// Per sequence, the position of the first generated token that differs from the
    /// reference's (0: the prefill's token); `None` where all of them match.
    pub first_difference: Vec<Option<usize>>,
    /// Share of the generated tokens equal to the reference's at the same position.
    pub identical_tokens: f64,
    /// The lowest cosine similarity of the logits to the reference's, over the steps where both
    /// sides had been fed the same tokens (up to and including each sequence's first difference).
    pub logits_cosine_min: f64,
    /// Perplexity of the prompts (the prefill's logits scoring each next prompt token), on the
    /// cell and on the reference; `None` with one-token prompts.
    pub perplexity: Option<f64>,
    pub reference_perplexity: Option<f64>,
}

/// One request's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    pub ttft_ms: f64,
    /// Each decode step's time, in order.
    pub tpot_ms: Vec<f64>,
    pub end_to_end_ms: f64,
    /// batch x prompt tokens / TTFT.
    pub prompt_tokens_per_s: f64,
    /// batch x gen tokens / the sum of `tpot_ms`.
    pub gen_tokens_per_s: f64,
}
