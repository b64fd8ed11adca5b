//! What chipbench adds to ONNX Runtime's own latency.
//!
//! For every suite model, `ort:cpu` through the runner's timed loop (chipbench's `Session`
//! wrapper: ONNX Runtime tensors made once, output copies, the loop's clock reads) against a bare loop of
//! `ort::session::Session::run` on the same session (same model, same threads, same options)
//! with the inputs prepared once, as a user of `ort` would write it. Both sides time each
//! inference with the same monotonic clock and run in alternating rounds, so drift (frequency,
//! other processes) hits both alike. Printed: the ratio of medians per model (goal <= 1.03).
//!
//! Needs the ONNX Runtime library (`scripts/setup-ort.sh`). Threads: 1, or
//! `CHIPBENCH_BENCH_THREADS`. Run: `cargo bench --bench ort_overhead`

use std::path::Path;
use std::time::{Duration, Instant};

use chipbench_backend_ort::{OrtBackend, OrtSession, Provider};
use chipbench_core::stats::summarize;
use chipbench_core::{ModelSource, Session, SessionOptions, Tensor, TensorData};
use chipbench_optimize::suite::Suite;
use chipbench_runner::StopRule;
use chipbench_runner::measure::timed_loop;
use criterion::{Criterion, criterion_group};
use ort::session::SessionInputValue;
use ort::value::TensorRef;

/// Alternating rounds per model, each side timing this long per round.
const ROUNDS: usize = 10;
const ROUND_TIME: Duration = Duration::from_millis(300);

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

fn models_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models"))
}

fn threads() -> usize {
    std::env::var("CHIPBENCH_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The inputs as ONNX Runtime values in the session's input order, made once.
fn bare_inputs<'a>(session: &mut OrtSession, inputs: &'a [Tensor]) -> Vec<SessionInputValue<'a>> {
    let infos = session.inputs().to_vec();
    session
        .raw()
        .inputs()
        .iter()
        .map(|outlet| {
            let i = infos
                .iter()
                .position(|info| info.name == outlet.name())
                .expect("bound input");
            let t = &inputs[i];
            let shape = t.shape();
            match t.data() {
                TensorData::F32(v) => TensorRef::from_array_view((shape, v.as_slice()))
                    .unwrap()
                    .into(),
                TensorData::I64(v) => TensorRef::from_array_view((shape, v.as_slice()))
                    .unwrap()
                    .into(),
                other => panic!("the suite has no {:?} inputs", other.dtype()),
            }
        })
        .collect()
}

fn per_model(c: &mut Criterion) {
    let backend = OrtBackend::new(None);
    let runtime = match backend.runtime() {
        Ok(r) => r,
        Err(e) => {
            println!("ort_overhead: skipped, ONNX Runtime is unusable here: {e}");
            return;
        }
    };
    let threads = threads();
    println!(
        "ONNX Runtime {} ({}), ort:cpu, {threads} intra-op thread(s), {ROUNDS} alternating rounds of {} ms a side",
        runtime.library.version,
        runtime.library.path.display(),
        ROUND_TIME.as_millis()
    );
    let suite = Suite::load(models_dir()).expect("models/suite.toml");
    let options = SessionOptions {
        threads: Some(threads),
        ..Default::default()
    };
    for model in &suite.models {
        let bound = model.bound_inputs().unwrap();
        let inputs = chipbench_core::spec::random_inputs(&model.inputs, &bound, 0, 0);
        let source = ModelSource {
            path: model.path(models_dir()),
            inputs: bound,
        };
        let mut session = OrtSession::load(runtime, Provider::Cpu, &source, &options).unwrap();
        let values = bare_inputs(&mut session, &inputs);

        // Warm both paths, and size a round from the latency seen.
        let warm = timed_loop(&mut session, &inputs, &exactly(20)).unwrap();
        let estimate = summarize(&warm.samples_ms).unwrap().p50;
        let per_round = ((ROUND_TIME.as_secs_f64() * 1e3 / estimate) as u64).max(20);

        let mut group =
            c.benchmark_group(format!("{} on ort:cpu, {threads} thread(s)", model.name));
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(20);
        group.bench_function("through the runner", |b| {
            b.iter_custom(|iters| {
                timed_loop(&mut session, &inputs, &exactly(iters.max(1)))
                    .unwrap()
                    .wall
            })
        });
        group.bench_function("bare ort Session::run", |b| {
            b.iter(|| drop(session.raw().run(values.as_slice()).unwrap()))
        });
        group.finish();

        let (mut runner, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            runner.extend(
                timed_loop(&mut session, &inputs, &exactly(per_round))
                    .unwrap()
                    .samples_ms,
            );
            let raw = session.raw();
            for _ in 0..per_round {
                let t = Instant::now();
                let outputs = raw.run(values.as_slice()).unwrap();
                let elapsed = t.elapsed();
                drop(outputs);
                bare.push(elapsed.as_nanos() as f64 / 1e6);
            }
        }
        let (r, b) = (summarize(&runner).unwrap(), summarize(&bare).unwrap());
        println!(
            "{:<18} median: runner {:.4} ms [CI95 {:.4}, {:.4}], bare ort {:.4} ms [CI95 {:.4}, {:.4}], \
             ratio {:.3} (goal <= 1.03), {} samples a side",
            model.name,
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

criterion_group!(benches, per_model);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
