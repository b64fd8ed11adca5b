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
