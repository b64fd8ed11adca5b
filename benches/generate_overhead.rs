//! What the generate scenario's decode loop adds to a decoder's own time per token.
//!
//! 1. A null session: each inference answers at once with zero logits (gpt-tiny's vocabulary of
//!    2048) and a cache one token longer, and clocks its own work, which is subtracted. What is
//!    left is the harness's cost per inference of a request: building the step's inputs, moving
//!    the cache back in, the greedy choice over the logits, the clock reads (goal < 5 us).
//! 2. gpt-tiny on ort:cpu: the TPOT through chipbench's `DecodeLoop` against a bare decode loop
//!    over the same session (inputs built by hand, `Session::run`, argmax, `present.*` handed
//!    back as `past_key_values.*`), in alternating rounds so that drift hits both alike; printed:
//!    the ratio of the median TPOTs (goal <= 1.03). The decode loop runs
//!    `Session::run_feeding_back`, which on ONNX Runtime keeps the cache in the engine (I/O
//!    binding), while the bare loop round-trips it through host tensors: below 1 is that saving.
//!    What chipbench's `Session` wrapper adds to
//!    ONNX Runtime's own `run` is `cargo bench --bench ort_overhead`'s figure.
//!
//! Needs the ONNX Runtime library for part 2 (`scripts/setup-ort.sh`); threads: 1, or
//! `CHIPBENCH_BENCH_THREADS`. Run: `cargo bench --bench generate_overhead`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chipbench_backend_ort::OrtBackend;
use chipbench_backend_tract::TractBackend;
use chipbench_core::decoder::{Decoder, DecoderInputs};
use chipbench_core::stats::summarize;
use chipbench_core::{Backend, ModelSource, Session, SessionOptions, Tensor, TensorInfo};
use chipbench_harness::scenario::generate::{DecodeLoop, greedy, prompt};
use criterion::{Criterion, criterion_group};

const PROMPT: usize = 16;
const STEPS: usize = 64;
const ROUNDS: usize = 10;

fn gpt_tiny() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models/gpt-tiny.onnx"))
}

fn threads() -> usize {
    std::env::var("CHIPBENCH_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// gpt-tiny's layout, its source bound to one sequence, and the dimensions that grow.
fn layout() -> (DecoderInputs, ModelSource, Vec<String>) {
    let proto = chipbench_optimize::model::load(&gpt_tiny()).expect("models/gpt-tiny.onnx");
    let specs = chipbench_optimize::model::inputs(&proto).unwrap();
    let inputs = DecoderInputs::detect(&specs).unwrap();
    let source = ModelSource {
        path: gpt_tiny(),
        inputs: inputs.bind(&specs, 1, PROMPT, 0),
    };
    let growing = inputs.growing_dims();
    (inputs, source, growing)
}

fn load(backend: &dyn Backend) -> Result<(Box<dyn Session>, Decoder), String> {
    let (inputs, source, growing) = layout();
    let device = backend.devices().map_err(|e| e.0)?.remove(0);
    let options = SessionOptions {
        threads: Some(threads()),
        ..Default::default()
    };
    let session = backend
        .load_growing(&source, &device, &options, &growing)
        .map_err(|e| e.to_string())?;
    let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name.as_str()).collect();
    let decoder = Decoder::detect(inputs, &outputs)?;
    Ok((session, decoder))
}

/// Answers every inference at once with zero logits and a cache one token longer, in the real
/// gpt-tiny's input and output layout; `inside` sums the time its own `run` took.
struct NullDecoder {
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    decoder: Decoder,
    vocabulary: usize,
    inside: Duration,
}

impl Session for NullDecoder {
    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }
    fn run(&mut self, inputs: &[Tensor]) -> chipbench_core::Result<Vec<Tensor>> {
        let t = Instant::now();
        let d = &self.decoder.inputs;
        let (batch, sequence) = match inputs[d.input_ids].shape() {
            [b, s] => (*b, *s),
            _ => (1, 1),
        };
        let past = inputs[d.past[0][0]].shape()[2];
        let cache = [batch, d.heads, past + sequence, d.head_dim];
        let zeros =
            |shape: &[usize]| Tensor::from_vec(shape.to_vec(), vec![0f32; shape.iter().product()]);
        let outputs = (0..self.outputs.len())
            .map(|i| {
                if i == self.decoder.logits {
                    zeros(&[batch, sequence, self.vocabulary])
                } else {
                    zeros(&cache)
                }
            })
            .collect();
        self.inside += t.elapsed();
        outputs
    }
    fn threads(&self) -> usize {
        1
    }
}

/// Part 1: the harness's cost per inference of a request, the null session's own time taken out.
fn null_overhead(c: &mut Criterion) {
    let (real, decoder) = match load(&TractBackend) {
        Ok(loaded) => loaded,
        Err(e) => {
            println!("generate_overhead: skipped, gpt-tiny does not load on tract: {e}");
            return;
        }
    };
    let mut null = NullDecoder {
        inputs: real.inputs().to_vec(),
        outputs: real.outputs().to_vec(),
        decoder: decoder.clone(),
        vocabulary: 2048,
        inside: Duration::ZERO,
    };
    let prompts: Vec<Vec<Vec<i64>>> = (0..200).map(|r| prompt(0, r, 1, PROMPT, 2048)).collect();
    let mut per_inference = Vec::new();
    for p in &prompts {
        let before = null.inside;
        let mut run = DecodeLoop::new(&mut null, decoder.clone()).unwrap();
        let times = run.request(p, STEPS, &mut |_, _| {}).unwrap();
        let harness = times.end_to_end - (null.inside - before);
        per_inference.push(harness.as_secs_f64() * 1e6 / (STEPS + 1) as f64);
    }
    let s = summarize(&per_inference).unwrap();
    println!(
        "decode loop with a null session (gpt-tiny's layout, vocabulary 2048, 4 layers): harness \
         cost per inference p50 {:.2} us, p90 {:.2} us (goal < 5 us), over {} requests of a \
         {PROMPT}-token prefill and {STEPS} steps",
        s.p50,
        s.p90,
        prompts.len()
    );
    c.bench_function("decode request, null session, 64 steps", |b| {
        b.iter(|| {
            let mut run = DecodeLoop::new(&mut null, decoder.clone()).unwrap();
            run.request(&prompts[0], STEPS, &mut |_, _| {}).unwrap()
        })
    });
}

/// A decode loop as a user of chipbench's `Session` writes it, with nothing else: per step the
/// token, a mask, positions and the previous step's `present.*` as the `past_key_values.*`.
fn bare_request(session: &mut dyn Session, d: &Decoder, prompt: &[i64], steps: usize) -> Vec<f64> {
    let i = &d.inputs;
    let mut inputs: Vec<Tensor> = (0..session.inputs().len())
        .map(|_| Tensor::from_vec::<f32>(vec![0], Vec::new()).unwrap())
        .collect();
    let length = prompt.len();
    inputs[i.input_ids] = Tensor::from_vec(vec![1, length], prompt.to_vec()).unwrap();
    inputs[i.attention_mask] = Tensor::from_vec(vec![1, length], vec![1i64; length]).unwrap();
    if let Some(p) = i.position_ids {
        inputs[p] = Tensor::from_vec(vec![1, length], (0..length as i64).collect()).unwrap();
    }
    for &k in i.past.iter().flatten() {
        inputs[k] = Tensor::from_vec::<f32>(vec![1, i.heads, 0, i.head_dim], Vec::new()).unwrap();
    }
    let mut outputs = session.run(&inputs).unwrap();
    let mut token = greedy(&outputs[d.logits]).unwrap()[0];
    let mut last = Instant::now();
    let mut tpot = Vec::with_capacity(steps);
    for step in 1..=steps {
        let total = length + step;
        inputs[i.input_ids] = Tensor::from_vec(vec![1, 1], vec![token]).unwrap();
        inputs[i.attention_mask] = Tensor::from_vec(vec![1, total], vec![1i64; total]).unwrap();
        if let Some(p) = i.position_ids {
            inputs[p] = Tensor::from_vec(vec![1, 1], vec![total as i64 - 1]).unwrap();
        }
        for (past, present) in i.past.iter().zip(&d.present) {
            for (&to, &from) in past.iter().zip(present) {
                inputs[to] = std::mem::replace(
                    &mut outputs[from],
                    Tensor::from_vec::<f32>(vec![0], Vec::new()).unwrap(),
                );
            }
        }
        outputs = session.run(&inputs).unwrap();
        token = greedy(&outputs[d.logits]).unwrap()[0];
        let now = Instant::now();
        tpot.push((now - last).as_secs_f64() * 1e3);
        last = now;
    }
    tpot
}

/// Part 2: gpt-tiny's TPOT on ort:cpu through chipbench against the bare loop.
fn ort_tpot() {
    let backend = OrtBackend::new(None);
    let (mut session, decoder) = match load(&backend) {
        Ok(loaded) => loaded,
        Err(e) => {
            println!("generate_overhead: ort:cpu part skipped: {e}");
            return;
        }
    };
    let (mut through, mut bare) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let p = prompt(0, round as u64, 1, PROMPT, 2048);
        let mut run = DecodeLoop::new(session.as_mut(), decoder.clone()).unwrap();
        let times = run.request(&p, STEPS, &mut |_, _| {}).unwrap();
        let mine: Vec<f64> = times.tpot.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        let theirs = bare_request(session.as_mut(), &decoder, &p[0], STEPS);
        // Round 0 warms both paths up.
        if round > 0 {
            through.extend(mine);
            bare.extend(theirs);
        }
    }
    let (a, b) = (summarize(&through).unwrap(), summarize(&bare).unwrap());
    println!(
        "gpt-tiny on ort:cpu ({} thread(s)), {ROUNDS} alternating rounds of a {PROMPT}-token \
         prefill and {STEPS} steps: TPOT p50 {:.4} ms through chipbench's decode loop, {:.4} ms \
         in a bare loop over the same session: ratio {:.3} (goal <= 1.03)",
        threads(),
        a.p50,
        b.p50,
        a.p50 / b.p50
    );
}

criterion_group!(benches, null_overhead);

fn main() {
    ort_tpot();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
