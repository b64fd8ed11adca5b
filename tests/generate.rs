//! The generate scenario's decode loop on the suite's gpt-tiny, on tract and ONNX Runtime's CPU
//! provider: with the cache fed back, every step's logits are the logits of a full forward pass
//! over the same tokens without a cache; and a request's times add up.

use std::path::{Path, PathBuf};

use chipbench_core::decoder::{Decoder, DecoderInputs};
use chipbench_core::{Backend, InputSpec, ModelSource, Session, SessionOptions, Tensor};
use chipbench_harness::scenario::generate::{DecodeLoop, prompt};

mod common;

fn gpt_tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gpt-tiny.onnx")
}

fn specs() -> Vec<InputSpec> {
    let proto = chipbench_optimize::model::load(&gpt_tiny()).unwrap();
    chipbench_optimize::model::inputs(&proto).unwrap()
}

/// A session of gpt-tiny on `backend`'s first device whose sequence dimensions grow, and the
/// decoder layout found in it.
fn session(backend: &dyn Backend) -> (Box<dyn Session>, Decoder) {
    let specs = specs();
    let inputs = DecoderInputs::detect(&specs).unwrap();
    let source = ModelSource {
        path: gpt_tiny(),
        inputs: inputs.bind(&specs, 1, 4, 0),
    };
    let device = backend.devices().unwrap().remove(0);
    let session = backend
        .load_growing(
            &source,
            &device,
            &SessionOptions::default(),
            &inputs.growing_dims(),
        )
        .unwrap();
    let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name.as_str()).collect();
    let decoder = Decoder::detect(inputs, &outputs).unwrap();
    (session, decoder)
}

/// The logits of the last position, as f32.
fn last_row(logits: &Tensor) -> Vec<f32> {
    let v = logits.shape()[2];
    let values = logits.as_slice::<f32>().unwrap();
    values[values.len() - v..].to_vec()
}

/// Step k of a request (prefill of 5 tokens, then 6 decode steps) against a prefill of the
/// 5 + k tokens it has seen, which runs the model without a cache.
fn cached_steps_match_full_passes(backend: &dyn Backend) {
    let (mut session, decoder) = session(backend);
    let mut run = DecodeLoop::new(session.as_mut(), decoder).unwrap();
    let vocabulary = 2048;
    let prompt = prompt(7, 0, 1, 5, vocabulary);
    let mut cached = Vec::new();
    let times = run
        .request(&prompt, 6, &mut |_, logits| cached.push(last_row(logits)))
        .unwrap();
    assert_eq!(run.vocabulary(), vocabulary);
    assert_eq!(cached.len(), 7);
    assert_eq!(times.tokens[0].len(), 7);
    let mut worst = 0f32;
    for (k, step) in cached.iter().enumerate() {
        let mut seen = prompt[0].clone();
        seen.extend(&times.tokens[0][..k]);
        let mut full = Vec::new();
        run.request(&[seen], 0, &mut |_, logits| full.push(last_row(logits)))
            .unwrap();
        for (a, b) in step.iter().zip(&full[0]) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!(
        "{}: largest difference of cached and full logits {worst:e}",
        backend.name()
    );
    assert!(worst <= 1e-4, "{worst}");
    // The logits are not all alike: a wrong cache would show.
    let spread = cached[6].iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(spread > 0.05, "{spread}");
    // The times are consecutive readings of one clock.
    assert_eq!(times.tpot.len(), 6);
    assert_eq!(times.ttft + times.decode_time(), times.end_to_end);
    // 4 layers x key and value x [1, 4 heads, 5 + 6 tokens, 32] f32.
    assert_eq!(times.kv_cache_bytes, 4 * 2 * 4 * 11 * 32 * 4);
}

#[test]
fn cached_decoding_matches_full_passes_on_tract() {
    cached_steps_match_full_passes(&chipbench_backend_tract::TractBackend);
}

#[test]
fn cached_decoding_matches_full_passes_on_ort_cpu() {
    if !common::backend_available("ort", "CHIPBENCH_REQUIRE_ORT") {
        return;
    }
    cached_steps_match_full_passes(&chipbench_backend_ort::OrtBackend::new(None));
}

/// `bench --scenario generate` through the binary on tract (and ort:cpu where it is installed):
/// gpt-tiny's cells measure every request, their times add up and tokens per second are the
/// tokens over the decode time; mlp, which has no cache, fails its generate cells with what is
/// missing while its single-stream cell and gpt-tiny's cells are unaffected; the run validates
/// against the schema.
#[test]
fn generate_through_the_binary_next_to_a_model_without_a_cache() {
    let mut args = vec![
        "--model",
        "models/gpt-tiny.onnx",
        "--model",
        "mlp",
        "--backend",
        "tract",
        "--scenario",
        "generate,single-stream",
        "--prompt-tokens",
        "4,9",
        "--gen-tokens",
        "5",
        "--requests",
        "3",
        "--batch",
        "2",
    ];
    let ort = common::backend_available("ort", "CHIPBENCH_REQUIRE_ORT");
    if ort {
        args.extend(["--backend", "ort:cpu"]);
    }
    let (code, run, _out) = common::bench(&args);
    assert_eq!(code, 1, "mlp's generate cells fail: {run}");
    common::validate(&run);
    let back: chipbench_core::result::RunResult = serde_json::from_value(run.clone()).unwrap();
    let backends = if ort { 2 } else { 1 };
    // Per model and backend: 2 generate cells (prompt 4 and 9) and a single-stream one.
    assert_eq!(back.cells.len(), 2 * backends * 3);
    for c in &back.cells {
        let label = format!("{} {} {}", c.model.name, c.backend.name, c.scenario_label());
        match (c.model.name.as_str(), c.scenario.as_str()) {
            ("mlp", "generate") => {
                assert_eq!(c.status, chipbench_core::result::Status::Failed, "{label}");
                let e = c.error.as_deref().unwrap();
                assert!(e.contains("not a decoder with a KV cache"), "{e}");
                assert!(e.contains("no input 'past_key_values.0.key'"), "{e}");
            }
            (_, "single-stream") => {
                assert_eq!(
                    c.status,
                    chipbench_core::result::Status::Ok,
                    "{label}: {:?}",
                    c.error
                );
            }
            ("gpt-tiny", "generate") => {
                assert_eq!(
                    c.status,
                    chipbench_core::result::Status::Ok,
                    "{label}: {:?}",
                    c.error
                );
                let g = c.generation.as_ref().unwrap();
                assert_eq!((g.batch, g.gen_tokens, g.requests), (2, 5, 3));
                assert_eq!(g.per_request.len(), 3);
                assert!(c.provenance["generation"].contains("monotonic clock"));
                // Key and value of 4 layers, [2, 4, prompt + 5, 32] f32 each.
                let tokens = g.prompt_tokens + 5;
                assert_eq!(g.kv_cache_bytes, (4 * 2 * 2 * 4 * tokens * 32 * 4) as u64);
                let mut prefill = 0.0;
                let mut decode = 0.0;
                for r in &g.per_request {
                    assert_eq!(r.tpot_ms.len(), 5);
                    let steps: f64 = r.tpot_ms.iter().sum();
                    let sum = r.ttft_ms + steps;
                    assert!(
                        (sum - r.end_to_end_ms).abs() < 1e-6,
                        "{sum} vs {}",
                        r.end_to_end_ms
                    );
                    let rate = (2 * 5) as f64 / (steps / 1e3);
                    assert!((r.gen_tokens_per_s / rate - 1.0).abs() < 1e-9, "{label}");
                    let prompt_rate = (2 * g.prompt_tokens) as f64 / (r.ttft_ms / 1e3);
                    assert!((r.prompt_tokens_per_s / prompt_rate - 1.0).abs() < 1e-9);
                    prefill += r.ttft_ms;
                    decode += steps;
                }
                let rate = (3 * 2 * 5) as f64 / (decode / 1e3);
                assert!((g.gen_tokens_per_s / rate - 1.0).abs() < 1e-6, "{label}");
                let prompt_rate = (3 * 2 * g.prompt_tokens) as f64 / (prefill / 1e3);
                assert!((g.prompt_tokens_per_s / prompt_rate - 1.0).abs() < 1e-6);
                assert_eq!(g.tpot_ms.n, 15);
                assert_eq!(c.throughput_per_s, Some(g.gen_tokens_per_s));
            }
            other => panic!("unexpected cell {other:?}"),
        }
    }
}

/// Options of the generate scenario are refused, naming the option, before any cell runs.
#[test]
fn generate_options_are_checked_before_any_cell_runs() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--scenario", "offline", "--prompt-tokens", "4"],
            "--prompt-tokens applies to --scenario generate",
        ),
        (
            &["--scenario", "generate", "--gen-tokens", "0"],
            "--gen-tokens must be at least 1",
        ),
        (
            &["--scenario", "generate", "--concurrency", "2"],
            "--concurrency applies to",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec![
            "bench",
            "--quick",
            "--model",
            "models/gpt-tiny.onnx",
            "--backend",
            "tract",
        ];
        args.extend_from_slice(extra);
        let o = common::chipbench(&args);
        assert_eq!(o.status.code(), Some(2), "{}", common::printed(&o));
        assert!(
            common::printed(&o).contains(expected),
            "{}",
            common::printed(&o)
        );
    }
}
