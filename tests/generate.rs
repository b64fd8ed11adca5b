//! The generate scenario's decode loop on the suite's gpt-tiny, on tract and ONNX Runtime's CPU
//! provider: with the cache fed back, every step's logits are the logits of a full forward pass
//! over the same tokens without a cache; and a request's times add up.

use std::path::{Path, PathBuf};

use chipbench_core::decoder::{Decoder, DecoderInputs};
use chipbench_core::{Backend, Feedback, InputSpec, ModelSource, Session, SessionOptions, Tensor};
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
    session_of(backend, &gpt_tiny())
}

fn session_of(backend: &dyn Backend, path: &Path) -> (Box<dyn Session>, Decoder) {
    let specs = specs();
    let inputs = DecoderInputs::detect(&specs).unwrap();
    let source = ModelSource {
        path: path.to_path_buf(),
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

/// wgpu prepares a program per set of input shapes (`GrowingSession`): the prefill's, each decode
/// step's and each full pass's.
#[test]
fn cached_decoding_matches_full_passes_on_wgpu() {
    if !common::backend_available("wgpu", "CHIPBENCH_REQUIRE_GPU") {
        return;
    }
    cached_steps_match_full_passes(&chipbench_backend_wgpu::WgpuBackend::default());
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
    let (code, run, out) = common::bench(&args);
    assert_eq!(code, 1, "mlp's generate cells fail: {run}");
    common::validate(&run);
    // The HTML report charts gpt-tiny's TPOT against its two prompt lengths.
    let page = out.path().join("report.html");
    let o = common::chipbench(&[
        "report",
        out.path().to_str().unwrap(),
        "--format",
        "html",
        "-o",
        page.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::printed(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("gpt-tiny: time per output token against prompt length"),
        "no TPOT chart"
    );
    assert!(html.contains("fp32 tract:cpu b2 (p50, bar to p99)"));
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
                // The cache: 8 tensors out to the host and back in on tract, kept by ONNX
                // Runtime's I/O binding.
                let copies = if c.backend.name == "ort" { 0 } else { 16 };
                assert_eq!(g.cache_copies_per_step, Some(copies), "{label}");
                assert!(
                    g.cache_feedback
                        .starts_with(&format!("{copies} copies per step")),
                    "{label}: {}",
                    g.cache_feedback
                );
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

/// Each generate cell's tokens against the fp32 model's on tract: fp32 on tract is the reference
/// itself (every token, logit and perplexity equal); int4-weight decodes the same prompts from
/// logits within cosine 0.99 of fp32's (the bound tests/generate.rs holds for one step) and
/// scores them at a perplexity within 5 % of fp32's; ONNX Runtime's fp32, where installed,
/// within cosine 0.9999.
#[test]
fn generate_cells_compare_their_tokens_with_the_fp32_model() {
    let mut args = vec![
        "--model",
        "models/gpt-tiny.onnx",
        "--variant",
        "fp32,int4-weight",
        "--backend",
        "tract",
        "--scenario",
        "generate",
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "6",
        "--requests",
        "4",
    ];
    let ort = common::backend_available("ort", "CHIPBENCH_REQUIRE_ORT");
    if ort {
        args.extend(["--backend", "ort:cpu"]);
    }
    let (code, run, out) = common::bench(&args);
    assert_eq!(code, 0, "{run}");
    common::validate(&run);
    let back: chipbench_core::result::RunResult = serde_json::from_value(run.clone()).unwrap();
    assert_eq!(back.cells.len(), if ort { 4 } else { 2 });
    for c in &back.cells {
        let label = format!("{} {}", c.model.variant, c.backend.name);
        let a = c.generation.as_ref().unwrap().accuracy.as_ref();
        let a = a.unwrap_or_else(|| panic!("{label}: {:?}", c.provenance));
        assert_eq!(a.reference, "tract:cpu fp32", "{label}");
        // The first 3 requests' prompts, one sequence each.
        assert_eq!((a.sequences, a.first_difference.len()), (3, 3), "{label}");
        let (p, r) = (a.perplexity.unwrap(), a.reference_perplexity.unwrap());
        assert!(r > 1.0 && r.is_finite(), "{label}: {r}");
        match (c.model.variant.as_str(), c.backend.name.as_str()) {
            ("fp32", "tract") => {
                assert_eq!(a.first_difference, [None, None, None], "{label}");
                assert_eq!(a.identical_tokens, 1.0);
                assert!(a.logits_cosine_min > 1.0 - 1e-9, "{label}: {a:?}");
                assert!((p / r - 1.0).abs() < 1e-9, "{label}: {p} vs {r}");
            }
            ("fp32", _) => {
                assert!(a.logits_cosine_min > 0.9999, "{label}: {a:?}");
                assert!((p / r - 1.0).abs() < 1e-3, "{label}: {p} vs {r}");
            }
            _ => {
                assert!(a.logits_cosine_min > 0.99, "{label}: {a:?}");
                assert!((p / r - 1.0).abs() < 0.05, "{label}: {p} vs {r}");
            }
        }
        assert!(
            c.provenance["generation.accuracy"].contains("untimed"),
            "{label}"
        );
    }
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(
        report.contains("against tract:cpu fp32: tokens identical"),
        "{report}"
    );
}

/// Served generation on tract: 44 requests (what p90's early stopping needs) arriving at 40 per
/// second over 2 sessions. A TTFT bound of 10 s holds whatever the machine's load; a TPOT bound of
/// 1 ns fails for every request. Each request's TTFT (from its scheduled arrival) and TPOTs add
/// up to its end-to-end time, and the system's token rate is every decode token over the run.
#[test]
fn served_generation_gives_a_verdict_per_bound_from_each_request_s_arrival() {
    let (code, run, out) = common::bench(&[
        "--model",
        "models/gpt-tiny.onnx",
        "--backend",
        "tract",
        "--scenario",
        "generate",
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "4",
        "--target-qps",
        "40",
        "--concurrency",
        "2",
        "--latency-bound",
        "ttft:p90=10s,tpot:p90=1ns",
    ]);
    assert_eq!(code, 0, "{run}");
    common::validate(&run);
    let back: chipbench_core::result::RunResult = serde_json::from_value(run.clone()).unwrap();
    let [c] = &back.cells[..] else {
        panic!("one cell: {run}")
    };
    assert_eq!(c.scenario_point.as_deref(), Some("b1-p8-g4-c2-q40"));
    let g = c.generation.as_ref().unwrap();
    assert_eq!((g.requests, g.per_request.len()), (44, 44));
    for r in &g.per_request {
        let sum = r.ttft_ms + r.tpot_ms.iter().sum::<f64>();
        assert!((sum - r.end_to_end_ms).abs() < 1e-6, "{sum} vs {r:?}");
    }
    let load = c.scenario_run.as_ref().unwrap();
    assert_eq!(load.arrivals, "poisson");
    assert_eq!(
        (load.target_qps, load.concurrency, load.queries),
        (Some(40.0), 2, 44)
    );
    let serving = g.serving.as_ref().unwrap();
    let rate = (44 * 4) as f64 / load.duration_s;
    assert!((serving.gen_tokens_per_s / rate - 1.0).abs() < 1e-9);
    assert_eq!(c.throughput_per_s, Some(serving.gen_tokens_per_s));
    let [ttft, tpot] = &serving.verdicts[..] else {
        panic!("two verdicts: {serving:?}")
    };
    assert_eq!(
        (ttft.metric.as_str(), tpot.metric.as_str()),
        ("ttft", "tpot")
    );
    assert!(
        ttft.verdict.valid && ttft.verdict.over_bound == 0,
        "{ttft:?}"
    );
    assert_eq!(ttft.verdict.allowed_over_bound, Some(0));
    assert!(
        !tpot.verdict.valid && tpot.verdict.over_bound == 44,
        "{tpot:?}"
    );
    assert!(!serving.valid());
    assert!(c.provenance["generation"].contains("scheduled arrival"));
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(
        report.contains("served at 40 req/s (Poisson) by 2 sessions"),
        "{report}"
    );
    assert!(
        report.contains("ttft p90 ≤ 10000 ms VALID (0 of 44 over, 0 allowed)"),
        "{report}"
    );
}

/// `--find-peak` on a decoder: without a first rate, the requests one after another set it (a
/// cell of its own), and a TPOT bound their mean already breaks ends the search there, saying
/// so; from a first rate, bounds every rate meets double it until the probes run out.
#[test]
fn a_generate_search_starts_from_the_sequential_capacity_or_the_given_rate() {
    let base = [
        "--model",
        "models/gpt-tiny.onnx",
        "--backend",
        "tract",
        "--scenario",
        "generate",
        "--prompt-tokens",
        "4",
        "--gen-tokens",
        "2",
        "--concurrency",
        "2",
        "--find-peak",
    ];
    let mut args = base.to_vec();
    args.extend(["--latency-bound", "ttft:p90=10s,tpot:p90=1ns"]);
    let (code, run, _out) = common::bench(&args);
    common::validate(&run);
    let back: chipbench_core::result::RunResult = serde_json::from_value(run.clone()).unwrap();
    assert_eq!(code, 0, "{run}");
    let [peak] = &back.peaks[..] else {
        panic!("one search: {run}")
    };
    assert_eq!(peak.bounds.as_deref(), Some("ttft:p90=10s,tpot:p90=1ns"));
    assert_eq!(peak.point, "b1-p4-g2-c2");
    assert_eq!(peak.cells.len(), 1, "{peak:?}");
    assert!(peak.cells[0].contains("b1-p4-g2-peak1-start"), "{peak:?}");
    let stopped = peak.stopped.as_deref().unwrap();
    assert!(
        stopped.contains("no rate can be VALID: the mean TPOT"),
        "{stopped}"
    );
    assert_eq!(peak.valid_qps, None);

    let mut args = base.to_vec();
    args.extend([
        "--latency-bound",
        "ttft:p90=10s,tpot:p90=10s",
        "--target-qps",
        "100",
    ]);
    let (code, run, _out) = common::bench(&args);
    common::validate(&run);
    let back: chipbench_core::result::RunResult = serde_json::from_value(run.clone()).unwrap();
    assert_eq!(code, 0, "{run}");
    let [peak] = &back.peaks[..] else {
        panic!("one search: {run}")
    };
    assert_eq!(peak.start, "--target-qps");
    assert_eq!(peak.invalid_qps, None, "{peak:?}");
    assert!(
        peak.stopped
            .as_deref()
            .unwrap()
            .contains("found no INVALID rate")
    );
    let probes: Vec<&chipbench_core::result::CellResult> = back
        .cells
        .iter()
        .filter(|c| c.generation.as_ref().is_some_and(|g| g.serving.is_some()))
        .collect();
    assert_eq!(probes.len(), peak.cells.len());
    for (i, c) in probes.iter().enumerate() {
        let rate = 100.0 * 2f64.powi(i as i32);
        assert_eq!(c.scenario_run.as_ref().unwrap().target_qps, Some(rate));
        assert!(
            c.generation
                .as_ref()
                .unwrap()
                .serving
                .as_ref()
                .unwrap()
                .valid()
        );
    }
    assert_eq!(
        peak.valid_qps,
        Some(100.0 * 2f64.powi(probes.len() as i32 - 1))
    );
}

/// Options of the generate scenario are refused, naming the option, before any cell runs.
#[test]
fn generate_options_are_checked_before_any_cell_runs() {
    let cases: [(&[&str], &str); 6] = [
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
            "--concurrency applies to a served generate run",
        ),
        (
            &["--scenario", "generate", "--latency-bound", "ttft:p99=1s"],
            "--latency-bound applies to a served generate run",
        ),
        (
            &[
                "--scenario",
                "generate",
                "--target-qps",
                "5",
                "--latency-bound",
                "p99=1s",
            ],
            "a generate run's bounds name ttft or tpot",
        ),
        (
            &[
                "--scenario",
                "generate",
                "--target-qps",
                "5",
                "--latency-bound",
                "ttft:p99=1s",
                "--requests",
                "50",
            ],
            "--requests 50 is too few for --latency-bound ttft:p99",
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

/// int4-weight gpt-tiny in each scheme and representation. Every stored level dequantizes to
/// within half a step of its block's scale of the fp32 weight. The variant computes what the fp32
/// model with those dequantized weights computes, to float rounding (MatMulNBits as ONNX Runtime
/// reads it: this checks the packing), so that its logits differ from fp32's by the effect of
/// the weights' block quantization error alone, which keeps them within cosine 0.99 over a
/// request. It runs on tract and ort:cpu; the packed MatMulNBits file is the smaller.
#[test]
fn int4_weight_gpt_tiny_is_within_the_block_bound_and_runs() {
    use chipbench_optimize::onnx::TensorProto;
    use chipbench_optimize::variants::weight_only::{self, BlockQuantized, Format, Settings};
    let fp32 = chipbench_optimize::model::load(&gpt_tiny()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut backends: Vec<Box<dyn Backend>> = vec![Box::new(chipbench_backend_tract::TractBackend)];
    if common::backend_available("ort", "CHIPBENCH_REQUIRE_ORT") {
        backends.push(Box::new(chipbench_backend_ort::OrtBackend::new(None)));
    }
    let logits = |backend: &dyn Backend, path: &Path| {
        let (mut session, decoder) = session_of(backend, path);
        let mut run = DecodeLoop::new(session.as_mut(), decoder).unwrap();
        let mut rows = Vec::new();
        // The same tokens for every model: the prompt, then fixed ones (prefill only).
        let mut seen = prompt(3, 0, 1, 6, 2048);
        for step in 0..4 {
            run.request(&seen, 0, &mut |_, l| rows.push(last_row(l)))
                .unwrap();
            seen[0].push(step * 101);
        }
        rows
    };
    let reference: Vec<Vec<Vec<f32>>> = backends
        .iter()
        .map(|b| logits(b.as_ref(), &gpt_tiny()))
        .collect();
    let mut file_bytes = Vec::new();
    let mut levels = 0;
    for params in ["dq", "b64:asym:dq", "nbits", "b64:asym:nbits"] {
        let settings = Settings::parse(4, params).unwrap();
        let mut int4 = fp32.clone();
        let (converted, kept) = weight_only::convert(&mut int4, &settings);
        // query, key, value, attention output, FFN up and down of 4 layers.
        assert_eq!(converted.len(), 4 * 6, "{settings}");
        // Per layer the scores and context MatMuls (two activations), and the tied unembedding
        // (a Transpose's output): no initializer to quantize.
        assert_eq!(kept.len(), 4 * 2 + 1, "{kept:?}");
        // The fp32 model with every converted weight replaced by what its levels stand for.
        let mut dequantized = fp32.clone();
        let graph = int4.graph.as_ref().unwrap();
        let find = |name: &str| graph.initializer.iter().find(|t| t.name() == name);
        let mut checked = 0;
        for original in dequantized.graph.as_mut().unwrap().initializer.iter_mut() {
            let name = original.name().to_string();
            if find(&format!("{name}.scale")).is_none() {
                continue;
            }
            assert!(find(&name).is_none(), "the float weight is gone");
            let (k, n) = (original.dims[0] as usize, original.dims[1] as usize);
            let w = original.to_f32().unwrap();
            let q = weight_only::quantize(&w, k, n, &settings);
            if settings.written_as() == Format::DequantizeLinear {
                // What the file holds is what quantize returned.
                let stored = |suffix: &str| {
                    let t = find(&format!("{name}.{suffix}")).unwrap();
                    t.to_i64().unwrap().iter().map(|&v| v as i32).collect()
                };
                let from_file = BlockQuantized {
                    block: settings.block,
                    values: stored("quantized"),
                    scales: find(&format!("{name}.scale")).unwrap().to_f32().unwrap(),
                    zero_points: stored("zero_point"),
                };
                assert_eq!(from_file, q, "{name}");
            }
            let back = weight_only::dequantize(&q, k, n);
            for (i, (a, b)) in w.iter().zip(&back).enumerate() {
                let scale = q.scales[(i % n) * (k / settings.block) + (i / n) / settings.block];
                let bound = scale / 2.0 + 4.0 * f32::EPSILON * a.abs().max(b.abs());
                assert!((a - b).abs() <= bound, "{name}: {a} {b} {scale}");
            }
            *original = TensorProto::from_f32(&name, &[k, n], &back);
            checked += 1;
            levels += (k * n) as u64;
        }
        assert_eq!(checked, 24);
        // The same values and products in either representation: the source's params and MACs.
        let specs = specs();
        let bound = DecoderInputs::detect(&specs).unwrap().bind(&specs, 1, 4, 0);
        let stats = |m| chipbench_optimize::ModelStats::of(m, &bound, None);
        let (source, variant) = (stats(&fp32), stats(&int4));
        assert_eq!(variant.params, source.params, "{settings}");
        assert!(source.macs.is_some());
        assert_eq!(
            variant.macs, source.macs,
            "{settings}: {:?}",
            variant.macs_unknown
        );
        let path = dir.path().join(format!("gpt-tiny.{settings}.onnx"));
        let dequantized_path = dir
            .path()
            .join(format!("gpt-tiny.{settings}.dequantized.onnx"));
        chipbench_optimize::model::save(&int4, &path).unwrap();
        chipbench_optimize::model::save(&dequantized, &dequantized_path).unwrap();
        file_bytes.push(std::fs::metadata(&path).unwrap().len());
        for (backend, fp32_logits) in backends.iter().zip(&reference) {
            let label = format!("{settings} on {}", backend.name());
            let quantized = logits(backend.as_ref(), &path);
            let expected = logits(backend.as_ref(), &dequantized_path);
            for ((q, e), f) in quantized.iter().zip(&expected).zip(fp32_logits) {
                let largest = e.iter().fold(0f32, |m, v| m.max(v.abs()));
                let worst = q.iter().zip(e).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                eprintln!(
                    "{label}: logits within {worst} of the dequantized model's (largest {largest}), \
                     cosine {} to fp32's",
                    cosine(q, f)
                );
                assert!(worst <= 1e-3 * largest, "{label}: {worst} of {largest}");
                assert!(cosine(q, f) > 0.99, "{label}: {}", cosine(q, f));
                assert!(
                    q != f,
                    "{label}: the quantized model computes fp32's logits"
                );
            }
        }
    }
    // Two levels a byte against one: half a byte saved per level (the float embedding, the
    // larger part of gpt-tiny's file, is the same in both).
    let levels = levels / 4;
    let [sym, asym, sym_packed, asym_packed] = file_bytes[..] else {
        unreachable!("four variants")
    };
    assert!(
        sym - sym_packed >= levels / 2,
        "{file_bytes:?}, {levels} levels"
    );
    assert!(
        asym - asym_packed >= levels / 2,
        "{file_bytes:?}, {levels} levels"
    );
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// A step's host inputs for gpt-tiny (one sequence): `ids` after `past` tokens, and the cache:
/// empty with `past` 0, left out after (fed back) unless `cache` gives it.
fn step_inputs(
    session: &dyn Session,
    decoder: &Decoder,
    ids: &[i64],
    past: usize,
    cache: Option<&mut Vec<Tensor>>,
) -> Vec<Option<Tensor>> {
    let d = &decoder.inputs;
    let mut inputs: Vec<Option<Tensor>> = vec![None; session.inputs().len()];
    let (sequence, total) = (ids.len(), past + ids.len());
    inputs[d.input_ids] = Some(Tensor::from_vec(vec![1, sequence], ids.to_vec()).unwrap());
    inputs[d.attention_mask] = Some(Tensor::from_vec(vec![1, total], vec![1i64; total]).unwrap());
    if let Some(p) = d.position_ids {
        let positions = (past as i64..total as i64).collect();
        inputs[p] = Some(Tensor::from_vec(vec![1, sequence], positions).unwrap());
    }
    let past_inputs = d.past.iter().flatten();
    match cache {
        _ if past == 0 => {
            for &k in past_inputs {
                let empty = vec![1, d.heads, 0, d.head_dim];
                inputs[k] = Some(Tensor::from_vec::<f32>(empty, Vec::new()).unwrap());
            }
        }
        Some(cache) => {
            for (&k, t) in past_inputs.zip(cache.drain(..)) {
                inputs[k] = Some(t);
            }
        }
        None => {}
    }
    inputs
}

/// ONNX Runtime keeps the cache in the engine (I/O binding, no copy on the CPU provider): over a
/// prefill and several steps its logits equal those of the host round trip through
/// `Session::run` on the same session within 1e-5; a second request on the same `Feedback`
/// after a reset starts from an empty cache (equal to a fresh session's); a cache input given
/// from the host while one is held is refused, naming the input. tract's default path says it
/// copies each cache tensor out and back in.
#[test]
fn ort_keeps_the_cache_in_the_engine_with_the_host_round_trips_logits() {
    let (tract, tract_decoder) = session(&chipbench_backend_tract::TractBackend);
    let pairs =
        chipbench_runner::feedback_pairs(tract.as_ref(), &tract_decoder.feedback()).unwrap();
    let path = tract.feedback_path(&pairs);
    assert_eq!(path.copies_per_inference, 16, "{path:?}");
    assert!(path.how.starts_with("host round trip"), "{}", path.how);
    if !common::backend_available("ort", "CHIPBENCH_REQUIRE_ORT") {
        return;
    }
    let backend = chipbench_backend_ort::OrtBackend::new(None);
    let (mut session, decoder) = session(&backend);
    let session = session.as_mut();
    let pairs = chipbench_runner::feedback_pairs(session, &decoder.feedback()).unwrap();
    let path = session.feedback_path(&pairs);
    assert_eq!(path.copies_per_inference, 0, "{path:?}");
    assert!(path.how.contains("I/O binding"), "{}", path.how);
    assert!(path.how.contains("Cpu 0"), "{}", path.how);

    let logits = decoder.logits;
    let present: Vec<usize> = decoder.present.iter().flatten().copied().collect();
    let tokens = [
        [5i64, 17, 301, 9].as_slice(),
        &[44],
        &[1023],
        &[7],
        &[2047],
        &[0],
    ];
    // The host round trip: every present.* tensor to the host, then back in as past_key_values.*.
    let mut host = Vec::new();
    let mut cache = Vec::new();
    let mut past = 0;
    for ids in tokens {
        let inputs = step_inputs(session, &decoder, ids, past, Some(&mut cache));
        let inputs: Vec<Tensor> = inputs.into_iter().map(Option::unwrap).collect();
        let mut outputs = session.run(&inputs).unwrap();
        host.push(last_row(&outputs[logits]));
        cache = present
            .iter()
            .map(|&o| {
                std::mem::replace(
                    &mut outputs[o],
                    Tensor::from_vec::<f32>(vec![0], vec![]).unwrap(),
                )
            })
            .collect();
        past += ids.len();
    }
    // The same tokens with the cache kept by the session, twice on one Feedback.
    let mut feedback = Feedback::new(pairs);
    for request in 0..2 {
        feedback.reset();
        let mut past = 0;
        for (step, ids) in tokens.iter().enumerate() {
            let inputs = step_inputs(session, &decoder, ids, past, None);
            let outputs = session.run_feeding_back(inputs, &mut feedback).unwrap();
            for &o in &present {
                assert!(
                    outputs[o].is_none(),
                    "present output {o} came back to the host"
                );
            }
            let mine = last_row(outputs[logits].as_ref().unwrap());
            let worst = mine
                .iter()
                .zip(&host[step])
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst <= 1e-5, "request {request} step {step}: {worst}");
            past += ids.len();
            // 8 tensors of [1, 4 heads, past, 32] f32, read from the values' shapes.
            assert_eq!(feedback.held().len(), 8);
            let bytes: u64 = feedback.held().iter().map(|i| i.bytes().unwrap()).sum();
            assert_eq!(bytes, (8 * 4 * past * 32 * 4) as u64);
        }
    }
    // A cache given from the host while the session holds one is refused by name.
    let mut inputs = step_inputs(session, &decoder, &[3], past, None);
    let k = decoder.inputs.past[0][0];
    inputs[k] = Some(Tensor::from_vec::<f32>(vec![1, 4, 0, 32], vec![]).unwrap());
    let e = session.run_feeding_back(inputs, &mut feedback).unwrap_err();
    assert!(e.to_string().contains("past_key_values.0.key"), "{e}");
    // The first inference of a sequence needs the empty cache from the host.
    feedback.reset();
    let inputs = step_inputs(session, &decoder, &[3], 1, None);
    let e = session.run_feeding_back(inputs, &mut feedback).unwrap_err();
    assert!(e.to_string().contains("first inference"), "{e}");
}
