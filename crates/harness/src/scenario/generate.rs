//! The generate scenario's decode loop: a request is a prefill of the prompt's P tokens, which
//! gives the first token, then G greedy decode steps of one token each, every step fed the
//! previous step's cache (`present.{i}.*` into `past_key_values.{i}.*`, the `--feedback OUT=IN`
//! pairs of [`Decoder::feedback`], run by [`Session::run_feeding_back`], which keeps the cache in
//! the engine where the backend can). Every time is read from the monotonic clock.

use std::time::{Duration, Instant};

use chipbench_core::decoder::{Decoder, DecoderInputs};
use chipbench_core::result::{CellResult, GenerationAccuracy, GenerationRequest, GenerationRun};
use chipbench_core::{Feedback, FeedbackPath, ModelSource, Session, SessionOptions, Tensor, stats};
use chipbench_runner::resources::PeakMemory;
use chipbench_runner::{MeasureSettings, ModelUnderTest, Target};

use super::settings::{GenerationSettings, ScenarioSettings};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One request's times, each read from the monotonic clock (`Instant`).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestTimes {
    /// From the request's start (building the prefill's inputs) to its first token chosen.
    pub ttft: Duration,
    /// Per decode step, from the previous token chosen to this step's token chosen: building the
    /// step's inputs (the cache fed back), the inference, and the greedy choice.
    pub tpot: Vec<Duration>,
    /// From the request's start to its last token chosen: `ttft` plus every `tpot`, as the
    /// times are consecutive readings of one clock.
    pub end_to_end: Duration,
    /// Bytes of the cache the last step returned (every `present.*` tensor).
    pub kv_cache_bytes: u64,
    /// How the session carried the cache between steps, and its copies per step.
    pub cache_feedback: FeedbackPath,
    /// The tokens chosen, per sequence of the batch: the prefill's, then one per step.
    pub tokens: Vec<Vec<i64>>,
}

impl RequestTimes {
    /// Sum of the decode steps' times.
    pub fn decode_time(&self) -> Duration {
        self.tpot.iter().sum()
    }
}

/// A seeded prompt: `batch` sequences of `tokens` ids drawn uniformly from `[0, vocabulary)`.
pub fn prompt(
    seed: u64,
    request: u64,
    batch: usize,
    tokens: usize,
    vocabulary: usize,
) -> Vec<Vec<i64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ request.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (0..batch)
        .map(|_| {
            (0..tokens)
                .map(|_| rng.random_range(0..vocabulary as i64))
                .collect()
        })
        .collect()
}

/// Drives a session of a decoder (loaded with its sequence dimensions growing) through requests.
pub struct DecodeLoop<'s> {
    session: &'s mut dyn Session,
    decoder: Decoder,
    /// The cache tensors fed back (`(output, input)` indices, from the `--feedback` pairs), and
    /// what the session holds of them between the steps of a request.
    feedback: Feedback,
}

impl<'s> DecodeLoop<'s> {
    pub fn new(session: &'s mut dyn Session, decoder: Decoder) -> Result<Self, String> {
        let pairs = chipbench_runner::feedback_pairs(session, &decoder.feedback())
            .map_err(|e| e.to_string())?;
        Ok(DecodeLoop {
            session,
            decoder,
            feedback: Feedback::new(pairs),
        })
    }

    /// How the session carries the cache from one step to the next, and the copies per step.
    pub fn cache_feedback(&self) -> FeedbackPath {
        self.session.feedback_path(self.feedback.pairs())
    }

    /// The decoder's vocabulary size, from the first inference's logits.
    pub fn vocabulary(&self) -> usize {
        let logits = &self.session.outputs()[self.decoder.logits];
        logits.shape.last().copied().unwrap_or(0)
    }

    /// Runs one request: the prefill of `prompt` (one row per sequence of the batch, all of one
    /// length), then `steps` greedy decode steps. `observe(step, logits)` sees each inference's
    /// logits (step 0 is the prefill) inside the timed path: pass a closure that does nothing
    /// when measuring.
    pub fn request(
        &mut self,
        prompt: &[Vec<i64>],
        steps: usize,
        observe: &mut dyn FnMut(usize, &Tensor),
    ) -> Result<RequestTimes, String> {
        let batch = prompt.len();
        let length = prompt.first().map_or(0, Vec::len);
        if length == 0 || prompt.iter().any(|p| p.len() != length) {
            return Err(
                "a prompt needs at least one token, and the same count in every sequence".into(),
            );
        }
        let start = Instant::now();
        // A new request: the prefill takes every input from the host, the empty cache too.
        self.feedback.reset();
        let ids: Vec<i64> = prompt.iter().flatten().copied().collect();
        let inputs = self.step_inputs(ids, batch, length, 0)?;
        let logits = self.run(inputs)?;
        observe(0, &logits);
        let mut chosen = greedy(&logits)?;
        let mut last = Instant::now();
        let ttft = last - start;
        let mut tokens: Vec<Vec<i64>> = chosen.iter().map(|&t| vec![t]).collect();
        let mut tpot = Vec::with_capacity(steps);
        for step in 1..=steps {
            let past = length + step - 1;
            let inputs = self.step_inputs(chosen.clone(), batch, 1, past)?;
            let logits = self.run(inputs)?;
            observe(step, &logits);
            chosen = greedy(&logits)?;
            let now = Instant::now();
            tpot.push(now - last);
            last = now;
            for (sequence, &t) in tokens.iter_mut().zip(&chosen) {
                sequence.push(t);
            }
        }
        let end_to_end = last - start;
        // The fed-back outputs are every present.* tensor: their shapes, read without a copy.
        let kv_cache_bytes = self
            .feedback
            .held()
            .iter()
            .map(|info| info.bytes().unwrap_or(u64::MAX))
            .sum();
        Ok(RequestTimes {
            ttft,
            tpot,
            end_to_end,
            kv_cache_bytes,
            cache_feedback: self.cache_feedback(),
            tokens,
        })
    }

    /// One inference, the cache fed back by the session; the logits, copied to the host.
    fn run(&mut self, inputs: Vec<Option<Tensor>>) -> Result<Tensor, String> {
        let mut outputs = self
            .session
            .run_feeding_back(inputs, &mut self.feedback)
            .map_err(|e| e.to_string())?;
        let logits = &self.session.outputs()[self.decoder.logits].name;
        outputs
            .get_mut(self.decoder.logits)
            .and_then(Option::take)
            .ok_or_else(|| format!("the session returned no logits ('{logits}')"))
    }

    /// A step's inputs: `ids` (`batch` x `sequence`), a mask over every token so far, their
    /// positions, and the cache: empty for the prefill, left out after (the session feeds it
    /// back from the previous step's outputs).
    fn step_inputs(
        &self,
        ids: Vec<i64>,
        batch: usize,
        sequence: usize,
        past: usize,
    ) -> Result<Vec<Option<Tensor>>, String> {
        let d = &self.decoder.inputs;
        let count = self.session.inputs().len();
        let fail = |e: chipbench_core::Error| e.to_string();
        let mut inputs: Vec<Option<Tensor>> = (0..count).map(|_| None).collect();
        inputs[d.input_ids] = Some(Tensor::from_vec(vec![batch, sequence], ids).map_err(fail)?);
        let total = past + sequence;
        inputs[d.attention_mask] =
            Some(Tensor::from_vec(vec![batch, total], vec![1i64; batch * total]).map_err(fail)?);
        if let Some(p) = d.position_ids {
            let positions: Vec<i64> = (0..batch)
                .flat_map(|_| (past..total).map(|i| i as i64))
                .collect();
            inputs[p] = Some(Tensor::from_vec(vec![batch, sequence], positions).map_err(fail)?);
        }
        if !self.feedback.holds() {
            let empty = [batch, d.heads, 0, d.head_dim];
            for &k in d.past.iter().flatten() {
                inputs[k] = Some(empty_cache(d.cache_dtype, &empty)?);
            }
        }
        Ok(inputs)
    }
}

fn empty_cache(dtype: chipbench_core::DType, shape: &[usize]) -> Result<Tensor, String> {
    use chipbench_core::{DType, TensorData};
    let data = match dtype {
        DType::F32 => TensorData::F32(Vec::new()),
        DType::F16 => TensorData::F16(Vec::new()),
        other => return Err(format!("a cache of {other} is not supported (f32 or f16)")),
    };
    Tensor::new(shape.to_vec(), data).map_err(|e| e.to_string())
}

/// The most likely next token of each sequence: the argmax of its last position's logits
/// (`[batch, sequence, vocabulary]`), the lowest id on a tie.
pub fn greedy(logits: &Tensor) -> Result<Vec<i64>, String> {
    let [batch, sequence, vocabulary] = logits.shape() else {
        return Err(format!(
            "logits are {}, not [batch, sequence, vocabulary]",
            chipbench_core::tensor::format_shape(logits.shape())
        ));
    };
    let widened;
    let values: &[f32] = match logits.as_slice::<f32>() {
        Some(v) => v,
        None => {
            widened = logits
                .to_f64_vec()
                .iter()
                .map(|&v| v as f32)
                .collect::<Vec<_>>();
            &widened
        }
    };
    Ok((0..*batch)
        .map(|b| {
            let row = &values[((b * sequence) + sequence - 1) * vocabulary..][..*vocabulary];
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best as i64
        })
        .collect())
}

/// What loading a generate cell's decoder takes: its layout, found among the model's inputs, and
/// the model bound to the cell's batch and prompt with its sequence dimensions left growing.
pub(super) struct DecoderLoad {
    pub generation: GenerationSettings,
    pub batch: usize,
    pub inputs: DecoderInputs,
    pub source: ModelSource,
    pub options: SessionOptions,
    pub growing: Vec<String>,
}

impl DecoderLoad {
    /// Records the bound inputs in `cell`; a model without the decoder layout is the error.
    pub(super) fn of(
        model: &ModelUnderTest,
        threads: Option<usize>,
        settings: &MeasureSettings,
        scenario: &ScenarioSettings,
        cell: &mut CellResult,
    ) -> Result<Self, String> {
        let generation = scenario
            .generation
            .ok_or("the generate scenario needs --prompt-tokens and --gen-tokens")?;
        let batch = scenario.batch.unwrap_or(1);
        let inputs = DecoderInputs::detect(&model.specs)?;
        let bound = inputs.bind(&model.specs, batch, generation.prompt_tokens, 0);
        cell.inputs = bound.clone();
        Ok(DecoderLoad {
            generation,
            batch,
            growing: inputs.growing_dims(),
            inputs,
            source: ModelSource {
                path: model.path.clone(),
                inputs: bound,
            },
            options: SessionOptions {
                threads,
                profile: false,
                settings: settings.backend_settings.clone(),
            },
        })
    }
}

/// Measures a generate cell into `cell`: finds the decoder layout among the model's inputs (a
/// model without one fails the cell with what is missing), loads a session whose sequence
/// dimensions grow, runs one untimed warm-up request (it also tells the vocabulary, from the
/// logits), then the timed requests, each on its own seeded prompt.
/// Then, untimed, the prompts of the first requests run again on this session and on the fp32
/// model on the first of `references` that loads it, for the cell's generation accuracy.
pub fn measure_into(
    model: &ModelUnderTest,
    target: &Target,
    threads: Option<usize>,
    settings: &MeasureSettings,
    scenario: &ScenarioSettings,
    references: &[Target],
    cell: &mut CellResult,
) -> Result<(), String> {
    if scenario.served() {
        return super::generate_served::measure_into(
            model, target, threads, settings, scenario, cell,
        );
    }
    let DecoderLoad {
        generation: g,
        batch,
        inputs,
        source,
        options,
        growing,
    } = DecoderLoad::of(model, threads, settings, scenario, cell)?;
    let memory = PeakMemory::reset();
    let t = Instant::now();
    let mut session = target
        .backend
        .load_growing(&source, &target.device, &options, &growing)
        .map_err(|e| e.to_string())?;
    cell.load_ms = Some(t.elapsed().as_secs_f64() * 1e3);
    cell.backend.threads = Some(session.threads());
    cell.backend.settings = session.settings();
    let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name.as_str()).collect();
    let decoder = Decoder::detect(inputs, &outputs)?;
    let layers = decoder.present.len();
    let mut run = DecodeLoop::new(session.as_mut(), decoder)?;
    let mut vocabulary = 0;
    let warm_up = vec![vec![0i64; g.prompt_tokens]; batch];
    let t = Instant::now();
    run.request(&warm_up, g.gen_tokens, &mut |_, logits| {
        vocabulary = logits.shape().last().copied().unwrap_or(0)
    })?;
    cell.first_inference_ms = Some(t.elapsed().as_secs_f64() * 1e3);
    if vocabulary == 0 {
        return Err("the logits have no vocabulary axis".into());
    }
    let mut requests = Vec::new();
    for r in 0..g.requests {
        let prompt = prompt(settings.seed, r, batch, g.prompt_tokens, vocabulary);
        requests.push(run.request(&prompt, g.gen_tokens, &mut |_, _| {})?);
    }
    let mut generation =
        generation_run(&requests, &[], &g, batch, layers).ok_or("no request completed")?;
    // Read before the reference session loads: its memory is not the cell's.
    cell.peak_rss_bytes = memory.peak_bytes();
    cell.rss_before_load_bytes = memory.baseline_bytes();
    let prompts: Vec<Vec<Vec<i64>>> = (0..g.requests.min(ACCURACY_REQUESTS))
        .map(|r| prompt(settings.seed, r, batch, g.prompt_tokens, vocabulary))
        .collect();
    match accuracy(
        &mut run,
        model,
        &source,
        &growing,
        references,
        &prompts,
        g.gen_tokens,
    ) {
        Ok(a) => generation.accuracy = Some(a),
        Err(why) => {
            cell.provenance
                .insert("generation.accuracy".into(), format!("not recorded: {why}"));
        }
    }
    cell.samples_ms = generation
        .per_request
        .iter()
        .map(|r| r.end_to_end_ms)
        .collect();
    cell.latency_ms = Some(generation.end_to_end_ms.clone());
    cell.throughput_per_s = Some(generation.gen_tokens_per_s);
    provenance(cell, &memory);
    cell.generation = Some(generation);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The cell's figures from its requests' times and, per request, its wait from its arrival to
/// its start (served requests; zero, or empty, when they ran one after another): TTFT and the
/// end-to-end time count from the arrival, the token rates from the start. `None` without
/// requests or decode steps.
pub fn generation_run(
    requests: &[RequestTimes],
    waits: &[Duration],
    g: &GenerationSettings,
    batch: usize,
    layers: usize,
) -> Option<GenerationRun> {
    let wait = |i: usize| waits.get(i).copied().unwrap_or_default();
    let per_request: Vec<GenerationRequest> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| GenerationRequest {
            ttft_ms: ms(wait(i) + r.ttft),
            tpot_ms: r.tpot.iter().map(|&d| ms(d)).collect(),
            end_to_end_ms: ms(wait(i) + r.end_to_end),
            prompt_tokens_per_s: (batch * g.prompt_tokens) as f64 / r.ttft.as_secs_f64(),
            gen_tokens_per_s: (batch * g.gen_tokens) as f64 / r.decode_time().as_secs_f64(),
        })
        .collect();
    let ttft: Vec<f64> = per_request.iter().map(|r| r.ttft_ms).collect();
    let tpot: Vec<f64> = per_request.iter().flat_map(|r| r.tpot_ms.clone()).collect();
    let e2e: Vec<f64> = per_request.iter().map(|r| r.end_to_end_ms).collect();
    let prefill: Duration = requests.iter().map(|r| r.ttft).sum();
    let decode: Duration = requests.iter().map(RequestTimes::decode_time).sum();
    let n = requests.len();
    Some(GenerationRun {
        prompt_tokens: g.prompt_tokens,
        gen_tokens: g.gen_tokens,
        batch,
        requests: n as u64,
        ttft_ms: stats::summarize(&ttft)?,
        tpot_ms: stats::summarize(&tpot)?,
        end_to_end_ms: stats::summarize(&e2e)?,
        prompt_tokens_per_s: (n * batch * g.prompt_tokens) as f64 / prefill.as_secs_f64(),
        gen_tokens_per_s: (n * batch * g.gen_tokens) as f64 / decode.as_secs_f64(),
        kv_cache_bytes: requests.iter().map(|r| r.kv_cache_bytes).max()?,
        cache_feedback: {
            let path = &requests.first()?.cache_feedback;
            format!(
                "{} copies per step of the {} present.* tensors fed back as past_key_values.* \
                 (the --feedback pairs); {}; the logits are copied to the host every step",
                path.copies_per_inference,
                2 * layers,
                path.how
            )
        },
        cache_copies_per_step: Some(requests.first()?.cache_feedback.copies_per_inference as u64),
        per_request,
        accuracy: None,
        serving: None,
    })
}

fn provenance(cell: &mut CellResult, memory: &PeakMemory) {
    let entries = [
        (
            "generation",
            "measured: monotonic clock (std::time::Instant), requests one after another on one \
             session after an untimed warm-up request; a request's clock starts before its \
             prefill's inputs are built, each token's time is read after its greedy choice \
             (argmax of the last position's logits), so TTFT plus the TPOTs is the end-to-end \
             time; tokens per second are derived: tokens / summed time",
        ),
        (
            "latency_ms",
            "measured: monotonic clock, each request's end-to-end time (prefill and every decode \
             step); samples_ms holds one per request",
        ),
        (
            "throughput_per_s",
            "derived: generation.gen_tokens_per_s, decode-step tokens / summed decode time",
        ),
        (
            "first_inference_ms",
            "measured: monotonic clock, the untimed warm-up request (prefill and decode steps)",
        ),
        (
            "load_ms",
            "measured: monotonic clock, loading the session with the sequence dimensions left \
             growing",
        ),
        (
            "accuracy",
            "not recorded: a generate cell's accuracy is generation.accuracy",
        ),
    ];
    for (field, how) in entries {
        cell.provenance.insert(field.into(), how.into());
    }
    cell.provenance
        .entry("generation.accuracy".into())
        .or_insert_with(|| {
            format!(
                "measured, untimed, after the timed requests: the prompts of the first \
                 {ACCURACY_REQUESTS} requests (every sequence of the batch) decoded greedily by \
                 this session and by the fp32 model on the reference backend, each from its own \
                 logits; tokens compared by position, logits by cosine over the last position \
                 while both sides had been fed the same tokens, perplexity from the prefill's \
                 logits scoring each next prompt token (exp of the mean negative log-likelihood)"
            )
        });
    cell.provenance
        .insert("peak_rss_bytes".into(), memory.method().into());
}

/// Requests whose prompts the accuracy check decodes again on both sides.
const ACCURACY_REQUESTS: u64 = 3;

/// What greedy decoding of one prompt produced: per sequence its tokens and, per step, the last
/// position's logits; and the prompt's summed negative log-likelihood under the prefill's logits
/// with the count of tokens scored.
struct Transcript {
    tokens: Vec<Vec<i64>>,
    logits: Vec<Vec<Vec<f32>>>,
    prompt_nll: f64,
    scored: usize,
}

fn transcript(
    run: &mut DecodeLoop,
    prompt: &[Vec<i64>],
    steps: usize,
) -> Result<Transcript, String> {
    let batch = prompt.len();
    let mut logits: Vec<Vec<Vec<f32>>> = vec![Vec::new(); batch];
    let (mut prompt_nll, mut scored) = (0.0, 0);
    let mut shape_error = None;
    let times = run.request(prompt, steps, &mut |step, t| {
        let [b, sequence, vocabulary] = *t.shape() else {
            shape_error = Some(format!("logits of shape {:?}", t.shape()));
            return;
        };
        let values = t.to_f64_vec();
        let row = |seq: usize, position: usize| {
            &values[(seq * sequence + position) * vocabulary..][..vocabulary]
        };
        for seq in 0..b.min(batch) {
            logits[seq].push(row(seq, sequence - 1).iter().map(|&v| v as f32).collect());
            if step == 0 {
                for (position, &next) in prompt[seq].iter().enumerate().skip(1) {
                    prompt_nll -= log_softmax_at(row(seq, position - 1), next as usize);
                    scored += 1;
                }
            }
        }
    })?;
    if let Some(e) = shape_error {
        return Err(e);
    }
    Ok(Transcript {
        tokens: times.tokens,
        logits,
        prompt_nll,
        scored,
    })
}

/// `ln softmax(row)[index]`, computed stably.
fn log_softmax_at(row: &[f64], index: usize) -> f64 {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
    row[index] - max - sum.ln()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 && nb == 0.0 {
        1.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// The cell's greedy generation against the fp32 model's on the first reference that loads it.
#[allow(clippy::too_many_arguments)] // the session, the model and where its reference runs
fn accuracy(
    run: &mut DecodeLoop,
    model: &ModelUnderTest,
    source: &ModelSource,
    growing: &[String],
    references: &[Target],
    prompts: &[Vec<Vec<i64>>],
    steps: usize,
) -> Result<GenerationAccuracy, String> {
    let reference_source = ModelSource {
        path: model.reference.clone(),
        inputs: source.inputs.clone(),
    };
    let mut refusals = Vec::new();
    for target in references {
        let loaded = target.backend.load_growing(
            &reference_source,
            &target.device,
            &SessionOptions::default(),
            growing,
        );
        let mut session = match loaded {
            Ok(s) => s,
            Err(e) => {
                refusals.push(format!("{}: {e}", target.label()));
                continue;
            }
        };
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name.as_str()).collect();
        let decoder = Decoder::detect(run.decoder.inputs.clone(), &outputs)?;
        let mut reference = DecodeLoop::new(session.as_mut(), decoder)?;
        let mut pairs = Vec::new();
        for p in prompts {
            pairs.push((
                transcript(run, p, steps)?,
                transcript(&mut reference, p, steps)?,
            ));
        }
        return Ok(compare_transcripts(
            format!("{} fp32", target.label()),
            &pairs,
        ));
    }
    Err(format!(
        "no reference backend loads the fp32 model ({})",
        refusals.join("; ")
    ))
}

/// Tokens by position, logits while the fed tokens agree, perplexities of the prompts.
fn compare_transcripts(
    reference: String,
    pairs: &[(Transcript, Transcript)],
) -> GenerationAccuracy {
    let mut first_difference = Vec::new();
    let (mut identical, mut tokens) = (0usize, 0usize);
    let mut logits_cosine_min = 1.0f64;
    for (cell, reference) in pairs {
        for (seq, (mine, theirs)) in cell.tokens.iter().zip(&reference.tokens).enumerate() {
            let first = mine.iter().zip(theirs).position(|(a, b)| a != b);
            first_difference.push(first);
            identical += mine.iter().zip(theirs).filter(|(a, b)| a == b).count();
            tokens += mine.len();
            // Step k's logits follow the tokens chosen before it: equal up to the first difference.
            let compared = first.map_or(mine.len(), |f| f + 1);
            for (a, b) in cell.logits[seq]
                .iter()
                .zip(&reference.logits[seq])
                .take(compared)
            {
                logits_cosine_min = logits_cosine_min.min(cosine(a, b));
            }
        }
    }
    let perplexity = |side: fn(&(Transcript, Transcript)) -> &Transcript| {
        let nll: f64 = pairs.iter().map(|p| side(p).prompt_nll).sum();
        let scored: usize = pairs.iter().map(|p| side(p).scored).sum();
        (scored > 0).then(|| (nll / scored as f64).exp())
    };
    GenerationAccuracy {
        reference,
        sequences: first_difference.len(),
        first_difference,
        identical_tokens: if tokens == 0 {
            1.0
        } else {
            identical as f64 / tokens as f64
        },
        logits_cosine_min,
        perplexity: perplexity(|p| &p.0),
        reference_perplexity: perplexity(|p| &p.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sequence: `tokens`, per step logits over a vocabulary of 4 that put `peak` on the
    /// token chosen, and the prompt's summed loss over `scored` tokens.
    fn transcript(tokens: &[i64], peak: f32, prompt_nll: f64, scored: usize) -> Transcript {
        let logits = tokens
            .iter()
            .map(|&t| {
                let mut row = vec![0.0; 4];
                row[t as usize] = peak;
                row
            })
            .collect();
        Transcript {
            tokens: vec![tokens.to_vec()],
            logits: vec![logits],
            prompt_nll,
            scored,
        }
    }

    #[test]
    fn tokens_logits_and_perplexity_are_compared_where_both_sides_saw_the_same_tokens() {
        let uniform = -log_softmax_at(&[0.5; 4], 2);
        assert!((uniform - 4f64.ln()).abs() < 1e-12);
        let same = (
            transcript(&[1, 2, 3], 2.0, 3.0 * uniform, 3),
            transcript(&[1, 2, 3], 2.0, 3.0 * uniform, 3),
        );
        // Differs at token 1, whose logits are compared (they follow the same tokens); token 2
        // agrees again but was decoded after different tokens, so its logits (orthogonal to the
        // reference's here) are not.
        let mut cell = transcript(&[1, 0, 3], 2.0, 3.0 * uniform, 3);
        cell.logits[0][1] = vec![0.0, 0.0, 2.0, 0.1];
        cell.logits[0][2] = vec![1.0, 0.0, 0.0, 0.0];
        let differs = (cell, transcript(&[1, 2, 3], 2.0, 6.0 * uniform, 3));
        let a = compare_transcripts("tract:cpu fp32".into(), &[same, differs]);
        assert_eq!(a.sequences, 2);
        assert_eq!(a.first_difference, [None, Some(1)]);
        assert!((a.identical_tokens - 5.0 / 6.0).abs() < 1e-12);
        // Step 1: [0, 0, 2, 0.1] against [0, 0, 2, 0].
        let expected = 2.0 / (4.01f64).sqrt();
        assert!(
            (a.logits_cosine_min - expected).abs() < 1e-6,
            "{}",
            a.logits_cosine_min
        );
        assert!((a.perplexity.unwrap() - 4.0).abs() < 1e-9);
        // The reference's second prompt scored at twice the uniform loss: exp(1.5 ln 4) = 8.
        assert!((a.reference_perplexity.unwrap() - 8.0).abs() < 1e-9);
        let none = (transcript(&[1], 1.0, 0.0, 0), transcript(&[1], 1.0, 0.0, 0));
        let a = compare_transcripts("r".into(), &[none]);
        assert_eq!((a.perplexity, a.logits_cosine_min), (None, 1.0));
    }
}
