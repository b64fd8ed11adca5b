//! What the harness costs.
//!
//! 1. The runner's timed loop around a session that does nothing: the per-iteration cost of the
//!    loop itself (goal <= 1 us), and the median timed sample, i.e. what the clock reads add to
//!    every measured latency.
//! 2. The suite's `mlp` (a 3 KB input) and its image models, `resnet-mini` (3x112x112, 150 KB)
//!    and `mobilenet-v2-0.5` (3x224x224, 600 KB), on tract through the runner (backend wrapper +
//!    timed loop, inputs prepared once before the loop) against a bare loop over the same tract
//!    model driven by tract's own API in the same process with its input made once: the ratio of
//!    medians (goal within 3 %), measured in alternating rounds so drift hits both sides alike.
//!
//! Run: `cargo bench --bench runner_overhead`

use std::path::Path;
use std::time::{Duration, Instant};

use chipbench_backend_tract::TractBackend;
use chipbench_core::stats::summarize;
use chipbench_core::{Backend, ModelSource, Result, Session, SessionOptions, Tensor, TensorInfo};
use chipbench_optimize::suite::Suite;
use chipbench_runner::StopRule;
use chipbench_runner::measure::timed_loop;
use criterion::{Criterion, criterion_group};
use tract_onnx::prelude::*;

struct NullSession;

impl Session for NullSession {
    fn inputs(&self) -> &[TensorInfo] {
        &[]
    }
    fn outputs(&self) -> &[TensorInfo] {
        &[]
    }
    fn run(&mut self, _: &[chipbench_core::Tensor]) -> Result<Vec<chipbench_core::Tensor>> {
        Ok(Vec::new())
    }
    fn threads(&self) -> usize {
        1
    }
}

/// A stop rule that ends after exactly `n` iterations.
fn exactly(n: u64) -> StopRule {
    StopRule {
        min_iterations: n,
        min_duration: Duration::ZERO,
        max_duration: Duration::from_secs(3600),
        target_relative_ci: f64::INFINITY,
        check_interval: Duration::ZERO,
    }
}

fn null_session(c: &mut Criterion) {
    c.bench_function("timed loop per iteration, null session", |b| {
        b.iter_custom(|iters| {
            timed_loop(&mut NullSession, &[], &exactly(iters.max(1)))
                .unwrap()
                .wall
        })
    });
    let m = timed_loop(&mut NullSession, &[], &exactly(1_000_000)).unwrap();
    let per_iteration = m.wall.as_secs_f64() * 1e9 / m.samples_ms.len() as f64;
    let median_ns = summarize(&m.samples_ms).unwrap().p50 * 1e6;
    println!(
        "null session: {per_iteration:.1} ns per loop iteration (goal <= 1000 ns); \
         median timed sample {median_ns:.1} ns (clock-read overhead inside every sample)"
    );
}

/// The suite models compared, and the alternating rounds: each side times this long per round.
const MODELS: [&str; 3] = ["mlp", "resnet-mini", "mobilenet-v2-0.5"];
const ROUNDS: usize = 10;
const ROUND_TIME: Duration = Duration::from_millis(300);

fn models_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models"))
}

fn suite_model(name: &str) -> (ModelSource, Vec<Tensor>) {
    let suite = Suite::load(models_dir()).expect("models/suite.toml");
    let model = suite.model(name).expect("a suite model");
    let bound = model.bound_inputs().unwrap();
    let inputs = chipbench_core::spec::random_inputs(&model.inputs, &bound, 0, 0);
    (
        ModelSource {
            path: model.path(models_dir()),
            inputs: bound,
        },
        inputs,
    )
}

/// The same model prepared with tract's API directly, as a user of tract would.
fn bare_tract(source: &ModelSource, data: &Tensor) -> (TypedSimpleState, TValue) {
    let info = &source.inputs[0];
    let model = tract_onnx::onnx()
        .model_for_path(&source.path)
        .unwrap()
        .with_input_fact(0, f32::fact(&info.shape).into())
        .unwrap()
        .into_optimized()
        .unwrap();
    let plan = model
        .into_runnable_with_options(&Default::default())
        .unwrap();
    let state = tract_onnx::tract_core::plan::SimpleState::new(&plan).unwrap();
    let input =
        tract_onnx::prelude::Tensor::from_shape(&info.shape, data.as_slice::<f32>().unwrap())
            .unwrap();
    (state, input.into())
}

fn through_runner_vs_bare(c: &mut Criterion) {
    let options = SessionOptions {
        threads: Some(1),
        ..Default::default()
    };
    let backend = TractBackend;
    let device = backend.devices().unwrap().remove(0);
    println!(
        "tract, 1 thread, {ROUNDS} alternating rounds of {} ms a side",
        ROUND_TIME.as_millis()
    );
    for name in MODELS {
        let (source, inputs) = suite_model(name);
        let mut session = backend.load(&source, &device, &options).unwrap();
        let (mut state, input) = bare_tract(&source, &inputs[0]);

        // Warm both paths, and size a round from the latency seen.
        let warm = timed_loop(session.as_mut(), &inputs, &exactly(20)).unwrap();
        for _ in 0..20 {
            drop(state.run(tvec![input.clone()]).unwrap());
        }
        let estimate = summarize(&warm.samples_ms).unwrap().p50;
        let per_round = ((ROUND_TIME.as_secs_f64() * 1e3 / estimate) as u64).max(20);

        let mut group = c.benchmark_group(format!("{name} on tract, 1 thread"));
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(20);
        group.bench_function("through the runner", |b| {
            b.iter_custom(|iters| {
                timed_loop(session.as_mut(), &inputs, &exactly(iters.max(1)))
                    .unwrap()
                    .wall
            })
        });
        group.bench_function("bare tract loop", |b| {
            b.iter(|| state.run(tvec![input.clone()]).unwrap())
        });
        group.finish();

        let (mut runner, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            runner.extend(
                timed_loop(session.as_mut(), &inputs, &exactly(per_round))
                    .unwrap()
                    .samples_ms,
            );
            for _ in 0..per_round {
                let t = Instant::now();
                let out = state.run(tvec![input.clone()]).unwrap();
                bare.push(t.elapsed().as_nanos() as f64 / 1e6);
                drop(out);
            }
        }
        let (r, b) = (summarize(&runner).unwrap(), summarize(&bare).unwrap());
        println!(
            "{name:<18} median: runner {:.4} ms [CI95 {:.4}, {:.4}], bare tract {:.4} ms [CI95 {:.4}, \
             {:.4}], ratio {:.3} (goal <= 1.03), {} samples a side",
            r.p50,
            r.median_ci95[0],
            r.median_ci95[1],
            b.p50,
            b.median_ci95[0],
            b.median_ci95[1],
            r.p50 / b.p50,
            runner.len()
        );
    }
}

criterion_group!(benches, null_session, through_runner_vs_bare);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
