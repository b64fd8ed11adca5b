//! Every recipe on every suite model, checked for what it promises: valid ONNX
//! (`onnx.checker` with `full_check`), a model that runs on tract and on ONNX Runtime's CPU
//! provider with accuracy against fp32 within stated bounds, exact sparsity, exact channel
//! surgery, and int8 weights within half a quantization step of the fp32 ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chipbench_backend_ort::OrtBackend;
use chipbench_backend_tract::TractBackend;
use chipbench_core::result::Accuracy;
use chipbench_core::{Backend, ModelSource, SessionOptions, Tensor, TensorInfo, accuracy};
use chipbench_optimize::onnx::{DataType, ModelProto};
use chipbench_optimize::suite::{Suite, SuiteModel};
use chipbench_optimize::variants::{self, DeriveOptions, Derived, KeepFloat, Recipe, Source};
use chipbench_optimize::{ModelStats, model};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn suite() -> Suite {
    Suite::load(&models_dir()).unwrap()
}

/// Runs models on tract's CPU device, as the CLI does for calibration.
fn run_on(
    backend: &dyn Backend,
    path: &Path,
    bound: &[TensorInfo],
    samples: &[Vec<Tensor>],
) -> Result<Vec<Vec<Tensor>>, String> {
    let device = backend.devices().map_err(|e| e.0)?.remove(0);
    let source = ModelSource {
        path: path.to_path_buf(),
        inputs: bound.to_vec(),
    };
    let mut session = backend
        .load(&source, &device, &SessionOptions::default())
        .map_err(|e| e.to_string())?;
    samples
        .iter()
        .map(|s| session.run(s).map_err(|e| e.to_string()))
        .collect()
}

fn tract_runner(
    bound: Vec<TensorInfo>,
) -> impl FnMut(&ModelProto, &[Vec<Tensor>]) -> Result<Vec<Vec<Tensor>>, String> {
    move |m: &ModelProto, samples: &[Vec<Tensor>]| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("model.onnx");
        model::save(m, &path).map_err(|e| e.to_string())?;
        run_on(&TractBackend, &path, &bound, samples)
    }
}

struct Loaded {
    entry: SuiteModel,
    proto: ModelProto,
    bound: Vec<TensorInfo>,
}

fn load(name: &str) -> Loaded {
    let entry = suite().model(name).unwrap().clone();
    let proto = model::load(&entry.path(&models_dir())).unwrap();
    let bound = entry.bound_inputs().unwrap();
    Loaded {
        entry,
        proto,
        bound,
    }
}

fn derive(m: &Loaded, recipe: &str) -> Derived {
    derive_with(m, recipe, &DeriveOptions::default())
}

fn derive_with(m: &Loaded, recipe: &str, options: &DeriveOptions) -> Derived {
    let recipe: Recipe = recipe.parse().unwrap();
    let source = Source {
        model: &m.proto,
        model_dir: None,
        specs: &m.entry.inputs,
        bound: &m.bound,
    };
    let mut runner = tract_runner(m.bound.clone());
    variants::derive(&source, &recipe, options, &mut runner)
        .unwrap_or_else(|e| panic!("{} {recipe}: {e}", m.entry.name))
}

/// Seeded inputs as `chipbench bench` draws them (seed 0): never the calibration samples.
fn accuracy_samples(m: &Loaded, n: u64) -> Vec<Vec<Tensor>> {
    (0..n)
        .map(|i| chipbench_core::spec::random_inputs(&m.entry.inputs, &m.bound, 0, i))
        .collect()
}

fn compare(m: &Loaded, reference: &[Vec<Tensor>], actual: &[Vec<Tensor>]) -> Accuracy {
    let names: Vec<String> = model::outputs(&m.proto)
        .into_iter()
        .map(|o| o.name)
        .collect();
    accuracy::compare("tract fp32", &names, reference, actual).unwrap()
}

/// The ONNX Runtime backend, or `None` with the reason printed; under
/// `CHIPBENCH_REQUIRE_ORT=1` a missing runtime is a failure.
fn ort_or_skip() -> Option<OrtBackend> {
    let backend = OrtBackend::new(None);
    match backend.runtime() {
        Ok(_) => Some(backend),
        Err(e) if std::env::var("CHIPBENCH_REQUIRE_ORT").as_deref() == Ok("1") => {
            panic!("CHIPBENCH_REQUIRE_ORT=1 but ONNX Runtime is unusable: {e}")
        }
        Err(e) => {
            eprintln!("skipped the ort:cpu runs: ONNX Runtime is unusable here ({e})");
            None
        }
    }
}

/// Runs `onnx.checker.check_model(full_check=True)` on each file; `None` when Python or its
/// `onnx` package is missing (a failure when CI is set).
fn onnx_checker(files: &[PathBuf]) -> Option<Vec<String>> {
    let script = "import sys, onnx\n\
                  for f in sys.argv[1:]:\n\
                  \x20   try:\n\
                  \x20       onnx.checker.check_model(onnx.load(f), full_check=True)\n\
                  \x20       print('ok ' + f)\n\
                  \x20   except Exception as e:\n\
                  \x20       print('FAIL ' + f + ': ' + str(e).replace('\\n', ' '))\n";
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(files)
        .output();
    let missing = match &output {
        Err(e) => Some(format!("python3 cannot be run ({e})")),
        Ok(o) if !o.status.success() => Some(format!(
            "python3 with the onnx package is needed ({})",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
        Ok(_) => None,
    };
    if let Some(reason) = missing {
        assert!(std::env::var_os("CI").is_none(), "CI is set but {reason}");
        eprintln!("skipped onnx.checker: {reason}");
        return None;
    }
    let stdout = String::from_utf8(output.unwrap().stdout).unwrap();
    Some(
        stdout
            .lines()
            .filter(|l| !l.starts_with("ok "))
            .map(str::to_string)
            .collect(),
    )
}

const RECIPES: [&str; 7] = [
    "fp16",
    "int8-dynamic",
    "int8-static",
    "prune-unstructured:0.5",
    "prune-2:4",
    "prune-channels:0.3",
    "prune-2:4+int8-static",
];

/// The lowest cosine similarity to fp32 each recipe must keep on the suite's models, on each
/// backend (pruned variants change the function on purpose and have no bound here).
///
/// The suite's MobileNetV2 has random weights in the chaotic regime: an error in an early layer
/// grows through the 17 blocks (quantizing `block1.expand` alone gives cosine 0.94), so int8
/// keeps about half its layers in float; ONNX Runtime's own `quantize_static` (per-channel QDQ,
/// percentile 99.99) gets 0.87 on it. The sensitivity pass keeps layers in float until the
/// output cosine reaches 0.99 on the calibration samples and no further, so on other inputs the
/// static variant lands next to 0.99, on either side: 0.9898 on tract and 0.9901 on ort:cpu
/// over this test's 4 inputs (ranges fitted to the calibration samples do a little worse
/// elsewhere; dynamic int8 has no ranges to fit and keeps 0.9915). tract's float16 kernels lose
/// more than ONNX Runtime's on it (0.9988 against 0.9998 for the same file).
fn cosine_bound(model: &str, recipe: &str, backend: &str) -> Option<f64> {
    match (recipe, model) {
        ("fp16", "mobilenet-v2-0.5") if backend == "tract" => Some(0.998),
        ("fp16", _) => Some(0.999),
        ("int8-static", "mobilenet-v2-0.5") => Some(0.988),
        ("int8-static" | "int8-dynamic", _) => Some(0.99),
        _ => None,
    }
}

#[test]
fn every_variant_of_every_suite_model_is_valid_and_runs_with_bounded_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let ort = ort_or_skip();
    let mut files = Vec::new();
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for entry in suite().models {
        let m = load(&entry.name);
        let samples = accuracy_samples(&m, 4);
        let reference_path = m.entry.path(&models_dir());
        let reference = run_on(&TractBackend, &reference_path, &m.bound, &samples).unwrap();
        let before = ModelStats::of(&m.proto, &m.bound, None);
        for recipe in RECIPES {
            let started = std::time::Instant::now();
            let derived = derive(&m, recipe);
            let took = started.elapsed();
            let path = dir.path().join(format!(
                "{}.{}.onnx",
                entry.name,
                recipe.replace([':', '+'], "_")
            ));
            model::save(&derived.model, &path).unwrap();
            files.push(path.clone());
            let after = ModelStats::of(&derived.model, &m.bound, None);
            assert_eq!(
                after.shape_issues,
                Vec::<String>::new(),
                "{} {recipe}",
                entry.name
            );
            let tract = run_on(&TractBackend, &path, &m.bound, &samples)
                .unwrap_or_else(|e| panic!("{} {recipe} on tract: {e}", entry.name));
            let on_tract = compare(&m, &reference, &tract);
            let on_ort = ort.as_ref().map(|ort| {
                let out = run_on(ort, &path, &m.bound, &samples)
                    .unwrap_or_else(|e| panic!("{} {recipe} on ort:cpu: {e}", entry.name));
                compare(&m, &reference, &out)
            });
            let top1 = |a: &Accuracy| a.top1_agreement.map_or("-".into(), |t| format!("{t:.2}"));
            table.push(format!(
                "{:<17} {:<22} tract cos {:.6} top1 {:>4} | ort cos {} top1 {} | {:>9} -> {:>9} bytes | derived in {:.1}s | {} kept float",
                entry.name,
                recipe,
                on_tract.cosine,
                top1(&on_tract),
                on_ort.as_ref().map_or("-".into(), |a| format!("{:.6}", a.cosine)),
                on_ort.as_ref().map_or("-".into(), top1),
                before.weight_bytes,
                after.weight_bytes,
                took.as_secs_f64(),
                derived.report.kept_float.len()
            ));
            for (backend, a) in [("tract", Some(&on_tract)), ("ort:cpu", on_ort.as_ref())] {
                if let Some(bound) = cosine_bound(&entry.name, recipe, backend)
                    && let Some(a) = a.filter(|a| a.cosine < bound)
                {
                    failures.push(format!(
                        "{} {recipe} on {backend}: cosine {} < {bound}",
                        entry.name, a.cosine
                    ));
                }
            }
            if recipe.contains("int8") {
                assert!(
                    after.weight_bytes < before.weight_bytes,
                    "{} {recipe}: smaller weights",
                    entry.name
                );
                assert!(
                    !derived.report.kept_float.is_empty(),
                    "first and last layers are reported"
                );
            }
            if recipe == "fp16" {
                assert!(
                    after.params_by_type.contains_key("float16"),
                    "{} {recipe}",
                    entry.name
                );
            }
        }
    }
    for line in &table {
        println!("{line}");
    }
    if let Some(problems) = onnx_checker(&files) {
        assert_eq!(
            problems,
            Vec::<String>::new(),
            "onnx.checker found invalid variants"
        );
    }
    assert_eq!(failures, Vec::<String>::new());
}

#[test]
fn pruned_layers_have_exactly_the_requested_sparsity() {
    for name in ["mlp", "resnet-mini", "bert-tiny"] {
        let m = load(name);
        let derived = derive(&m, "prune-unstructured:0.37");
        let graph = derived.model.graph.as_ref().unwrap();
        assert!(!derived.report.pruned.is_empty());
        for layer in &derived.report.pruned {
            let w = graph
                .initializer
                .iter()
                .find(|t| t.name() == layer.weight)
                .unwrap();
            let values = w.to_f32().unwrap();
            let expected = (0.37 * values.len() as f64).round() as usize;
            let zeros = values.iter().filter(|v| **v == 0.0).count();
            assert_eq!(zeros, expected, "{name}/{}", layer.node);
            // The pruned weights are the smallest: every survivor is at least as large.
            let original = m
                .proto
                .graph
                .as_ref()
                .unwrap()
                .initializer
                .iter()
                .find(|t| t.name() == layer.weight)
                .unwrap();
            let original = original.to_f32().unwrap();
            let largest_pruned = original
                .iter()
                .zip(&values)
                .filter(|(_, p)| **p == 0.0)
                .map(|(o, _)| o.abs())
                .fold(0f32, f32::max);
            assert!(
                values
                    .iter()
                    .filter(|v| **v != 0.0)
                    .all(|v| v.abs() >= largest_pruned),
                "{name}/{}",
                layer.node
            );
        }

        let derived = derive(&m, "prune-2:4");
        let graph = derived.model.graph.as_ref().unwrap();
        let mut checked = 0;
        for layer in derived.report.pruned.iter().filter(|l| l.skipped.is_none()) {
            let w = graph
                .initializer
                .iter()
                .find(|t| t.name() == layer.weight)
                .unwrap();
            let (shape, values) = (w.shape().unwrap(), w.to_f32().unwrap());
            let node = graph
                .node
                .iter()
                .find(|n| n.input.get(1) == Some(&layer.weight))
                .unwrap();
            let axis = match node.op_type() {
                "Conv" => 1,
                "Gemm" if node.attr_i("transB") == Some(1) => 1,
                _ => 0,
            };
            let inner: usize = shape[axis + 1..].iter().product();
            let len = shape[axis];
            let outer: usize = shape[..axis].iter().product();
            for o in 0..outer {
                for i in 0..inner {
                    for g in (0..len).step_by(4) {
                        let group_zeros = (g..g + 4)
                            .filter(|d| values[(o * len + d) * inner + i] == 0.0)
                            .count();
                        assert!(
                            group_zeros >= 2,
                            "{name}/{}: a group of 4 with {group_zeros} zeros",
                            layer.node
                        );
                    }
                }
            }
            assert_eq!(layer.sparsity, Some(0.5));
            checked += 1;
        }
        assert!(checked >= 2, "{name}: {checked} layers 2:4-pruned");
    }
    // A first convolution over 3 colour channels cannot hold 2:4 groups: left alone, reported.
    let m = load("resnet-mini");
    let derived = derive(&m, "prune-2:4");
    let stem = derived
        .report
        .pruned
        .iter()
        .find(|l| l.node == "stem")
        .unwrap();
    assert!(
        stem.skipped
            .as_deref()
            .unwrap()
            .contains("is 3 long, not a multiple of 4"),
        "{stem:?}"
    );
}

/// The original model with the inputs of the removed channels zeroed where they are consumed.
fn masked(original: &ModelProto, groups: &[variants::ChannelGroup]) -> ModelProto {
    let mut masked = original.clone();
    let graph = masked.graph.as_mut().unwrap();
    for group in groups {
        for slice in group.slices.iter().filter(|s| s.sink) {
            let name = graph.node[slice.node].input[slice.input].clone();
            let t = graph
                .initializer
                .iter_mut()
                .find(|t| t.name() == name)
                .unwrap();
            let (shape, mut values) = (t.shape().unwrap(), t.to_f32().unwrap());
            let inner: usize = shape[slice.axis + 1..].iter().product();
            for (i, v) in values.iter_mut().enumerate() {
                if group.removed.contains(&((i / inner) % shape[slice.axis])) {
                    *v = 0.0;
                }
            }
            *t = chipbench_optimize::onnx::TensorProto::from_f32(&name, &shape, &values);
        }
    }
    masked
}

#[test]
fn channel_pruning_equals_the_original_with_those_channels_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["mlp", "mobilenet-v2-0.5", "resnet-mini", "bert-tiny"] {
        let m = load(name);
        let derived = derive(&m, "prune-channels:0.3");
        let groups = &derived.report.channel_groups;
        assert!(
            !groups.is_empty(),
            "{name}: nothing pruned ({:?})",
            derived.report.pruned
        );
        for g in groups {
            // round(0.3·M), moved so that an aligned layer keeps a multiple of 8 channels.
            let (m, removed) = (g.channels_before, g.removed.len());
            let exact = (0.3 * m as f64).round() as usize;
            if m % 8 == 0 {
                assert_eq!(
                    (m - removed) % 8,
                    0,
                    "{name}/{}: keeps {}",
                    g.node,
                    m - removed
                );
                assert!(
                    removed.abs_diff(exact) <= 4,
                    "{name}/{}: {removed} of {m}",
                    g.node
                );
            } else {
                assert_eq!(removed, exact, "{name}/{}", g.node);
            }
        }
        let pruned_path = dir.path().join(format!("{name}.pruned.onnx"));
        model::save(&derived.model, &pruned_path).unwrap();
        let masked_path = dir.path().join(format!("{name}.masked.onnx"));
        model::save(&masked(&m.proto, groups), &masked_path).unwrap();
        let samples = accuracy_samples(&m, 2);
        let pruned = run_on(&TractBackend, &pruned_path, &m.bound, &samples).unwrap();
        let reference = run_on(&TractBackend, &masked_path, &m.bound, &samples).unwrap();
        for (p, r) in pruned.iter().flatten().zip(reference.iter().flatten()) {
            assert_eq!(p.shape(), r.shape());
            let (p, r) = (p.to_f64_vec(), r.to_f64_vec());
            let scale = r.iter().fold(0f64, |a, v| a.max(v.abs()));
            let worst = p
                .iter()
                .zip(&r)
                .map(|(a, b)| (a - b).abs())
                .fold(0f64, f64::max);
            assert!(
                worst <= 1e-4 * scale.max(1.0),
                "{name}: max difference {worst} (outputs up to {scale})"
            );
        }
        let before = ModelStats::of(&m.proto, &m.bound, None);
        let after = ModelStats::of(&derived.model, &m.bound, None);
        assert!(
            after.params < before.params && after.macs < before.macs,
            "{name}: really smaller"
        );
        println!(
            "{name}: {} groups pruned, params {} -> {}, MACs {:?} -> {:?}; left alone: {:?}",
            groups.len(),
            before.params,
            after.params,
            before.macs,
            after.macs,
            derived
                .report
                .pruned
                .iter()
                .map(|p| format!("{}: {}", p.node, p.skipped.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn residual_adds_are_left_alone_and_depthwise_convolutions_follow() {
    let m = load("mobilenet-v2-0.5");
    let derived = derive(&m, "prune-channels:0.3");
    let pruned: BTreeMap<&str, &variants::ChannelGroup> = derived
        .report
        .channel_groups
        .iter()
        .map(|g| (g.node.as_str(), g))
        .collect();
    assert!(pruned.contains_key("block1.expand"));
    assert!(
        !pruned.contains_key("block2.project"),
        "block2's output feeds a residual Add"
    );
    let skipped = derived
        .report
        .pruned
        .iter()
        .find(|p| p.node == "block2.project")
        .unwrap();
    assert!(
        skipped.skipped.as_deref().unwrap().contains("residual"),
        "{skipped:?}"
    );
    let graph = derived.model.graph.as_ref().unwrap();
    let depthwise = graph
        .node
        .iter()
        .find(|n| n.name() == "block1.depthwise")
        .unwrap();
    let expand = pruned["block1.expand"];
    let kept = (expand.channels_before - expand.removed.len()) as i64;
    assert_eq!(depthwise.attr_i("group"), Some(kept));
}

#[test]
fn int8_weights_are_within_half_a_step_of_the_fp32_ones() {
    // No normalization to fold in these two: every int8 weight has its fp32 original by name.
    for name in ["bert-tiny", "mlp"] {
        let m = load(name);
        let derived = derive(&m, "int8-static");
        let graph = derived.model.graph.as_ref().unwrap();
        let original = m.proto.graph.as_ref().unwrap();
        let mut checked = 0;
        for dq in graph
            .node
            .iter()
            .filter(|n| n.op_type() == "DequantizeLinear")
        {
            let q = graph.initializer.iter().find(|t| t.name() == dq.input[0]);
            let Some(q) = q.filter(|q| q.elem_type().unwrap() == DataType::Int8) else {
                continue;
            };
            let scales = graph
                .initializer
                .iter()
                .find(|t| t.name() == dq.input[1])
                .unwrap()
                .to_f32()
                .unwrap();
            let source_name = q.name().trim_end_matches(".quantized");
            let w = original
                .initializer
                .iter()
                .find(|t| t.name() == source_name)
                .unwrap();
            let (values, quantized) = (w.to_f32().unwrap(), q.to_i64().unwrap());
            let shape = w.shape().unwrap();
            let axis = dq.attr_i("axis").unwrap() as usize;
            assert_eq!(
                scales.len(),
                shape[axis],
                "{source_name}: one scale per output channel"
            );
            let inner: usize = shape[axis + 1..].iter().product();
            for (i, (&v, &qv)) in values.iter().zip(&quantized).enumerate() {
                let s = scales[(i / inner) % shape[axis]];
                assert!(
                    (v - qv as f32 * s).abs() <= s / 2.0 * 1.0001,
                    "{source_name}[{i}]: {v} vs {qv}·{s}"
                );
            }
            checked += 1;
        }
        assert!(checked >= 1, "{name}: {checked} int8 weights checked");
    }
}

#[test]
fn constant_node_weights_are_weights_too() {
    let model = chipbench_optimize::fixtures::constant_weights();
    let bound = vec![TensorInfo {
        name: "x".into(),
        dtype: chipbench_core::DType::F32,
        shape: vec![2, 4],
    }];
    let specs = vec![chipbench_core::InputSpec {
        name: "x".into(),
        dtype: chipbench_core::DType::F32,
        shape: vec![chipbench_core::Dim::Fixed(2), chipbench_core::Dim::Fixed(4)],
        range: None,
    }];
    let source = Source {
        model: &model,
        model_dir: None,
        specs: &specs,
        bound: &bound,
    };
    let recipe: Recipe = "prune-unstructured:0.5".parse().unwrap();
    let derived = variants::derive(
        &source,
        &recipe,
        &DeriveOptions::default(),
        &mut tract_runner(bound.clone()),
    )
    .unwrap();
    assert_eq!(derived.report.pruned.len(), 1);
    assert_eq!(derived.report.pruned[0].weight, "W");
    assert_eq!(derived.report.pruned[0].sparsity, Some(0.5));
}

#[test]
fn the_cache_reuses_a_variant_until_its_key_changes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = variants::cache::VariantCache::new(dir.path().join("cache"));
    let m = load("mlp");
    let source = Source {
        model: &m.proto,
        model_dir: None,
        specs: &m.entry.inputs,
        bound: &m.bound,
    };
    let recipe: Recipe = "int8-static".parse().unwrap();
    let options = DeriveOptions::default();
    let runs = std::cell::Cell::new(0);
    let mut counting = |model: &ModelProto, samples: &[Vec<Tensor>]| {
        runs.set(runs.get() + 1);
        tract_runner(m.bound.clone())(model, samples)
    };
    let first = cache
        .get_or_derive("mlp", "abc", &source, &recipe, &options, &mut counting)
        .unwrap();
    assert!(!first.reused);
    let derivation_runs = runs.get();
    assert!(derivation_runs >= 1, "calibration runs the model");
    let again = cache
        .get_or_derive("mlp", "abc", &source, &recipe, &options, &mut counting)
        .unwrap();
    assert_eq!(runs.get(), derivation_runs, "a reused variant runs nothing");
    assert!(again.reused && again.path == first.path);
    assert_eq!(again.report.kept_float, first.report.kept_float);
    let other = cache
        .get_or_derive("mlp", "abd", &source, &recipe, &options, &mut counting)
        .unwrap();
    assert!(
        !other.reused && other.path != first.path,
        "another source is another key"
    );
    let mut minmax = options.clone();
    minmax.calibration.method = variants::RangeMethod::MinMax;
    let other = cache
        .get_or_derive("mlp", "abc", &source, &recipe, &minmax, &mut counting)
        .unwrap();
    assert!(!other.reused, "other calibration settings are another key");
    assert_eq!(runs.get(), 3 * derivation_runs);
    let none = DeriveOptions {
        keep_float: KeepFloat::None,
        ..options.clone()
    };
    let other = cache
        .get_or_derive("mlp", "abc", &source, &recipe, &none, &mut counting)
        .unwrap();
    assert!(!other.reused, "another float-keeping policy is another key");
    assert_eq!(other.report.keep_float, Some(KeepFloat::None));
    assert!(other.report.kept_float.is_empty(), "{:?}", other.report);
}

/// The node that writes graph output `name`.
fn producer<'a>(model: &'a ModelProto, name: &str) -> &'a chipbench_optimize::onnx::NodeProto {
    let graph = model.graph.as_ref().unwrap();
    graph
        .node
        .iter()
        .find(|n| n.output.iter().any(|o| o == name))
        .unwrap()
}

#[test]
fn the_float_keeping_policy_decides_which_layers_stay_float() {
    let ort = ort_or_skip();
    let dir = tempfile::tempdir().unwrap();
    for name in ["mlp", "resnet-mini"] {
        let m = load(name);
        let layers = ["fc1", "fc2", "logits"];
        let samples = accuracy_samples(&m, 4);
        let reference_path = m.entry.path(&models_dir());
        let reference = run_on(&TractBackend, &reference_path, &m.bound, &samples).unwrap();
        let output = model::outputs(&m.proto)[0].name.clone();

        // none: every layer in int8, the first and the last included, as ONNX Runtime's tool
        // does; the graph output is still what the last layer computes, in float.
        let none = DeriveOptions {
            keep_float: KeepFloat::None,
            ..Default::default()
        };
        let derived = derive_with(&m, "int8-static", &none);
        let report = &derived.report;
        assert_eq!(report.keep_float, Some(KeepFloat::None));
        assert_eq!(report.kept_float, vec![], "{name}");
        assert!(report.sensitivity.is_empty(), "no sensitivity pass");
        if name == "mlp" {
            assert_eq!(report.converted, layers);
        }
        assert!(report.converted.iter().any(|c| c == "logits"), "{name}");
        assert_eq!(producer(&derived.model, &output).op_type(), "Gemm");
        let path = dir.path().join(format!("{name}.none.onnx"));
        model::save(&derived.model, &path).unwrap();
        for backend in [
            Some(&TractBackend as &dyn Backend),
            ort.as_ref().map(|o| o as &dyn Backend),
        ]
        .into_iter()
        .flatten()
        {
            let out = run_on(backend, &path, &m.bound, &samples).unwrap();
            let a = compare(&m, &reference, &out);
            assert!(
                a.cosine >= 0.99,
                "{name} none on {}: {}",
                backend.name(),
                a.cosine
            );
        }

        // first-last: those two only, no sensitivity pass.
        let first_last = DeriveOptions {
            keep_float: KeepFloat::FirstLast,
            ..Default::default()
        };
        let derived = derive_with(&m, "int8-static", &first_last);
        let kept: Vec<&str> = derived
            .report
            .kept_float
            .iter()
            .map(|k| k.node.as_str())
            .collect();
        assert_eq!(
            &kept[..2],
            [if name == "mlp" { "fc1" } else { "stem" }, "logits"]
        );
        assert!(derived.report.sensitivity.is_empty());
        assert!(
            derived.report.kept_float[2..]
                .iter()
                .all(|k| k.reason.contains("MaxPool")),
            "{:?}",
            derived.report.kept_float
        );

        // auto: the sensitivity pass ranks every candidate, and keeps none of them in float
        // when the others already reach the target (no fixed minimum).
        let derived = derive(&m, "int8-static");
        assert_eq!(derived.report.keep_float, Some(KeepFloat::Auto));
        assert!(!derived.report.sensitivity.is_empty());
        assert!(
            derived
                .report
                .kept_float
                .iter()
                .all(|k| !k.reason.starts_with("sensitivity")),
            "{name}: {:?}",
            derived.report
        );
    }

    // int8-dynamic follows the policy too: with none, no float Gemm is left in the MLP.
    let m = load("mlp");
    let derived = derive_with(
        &m,
        "int8-dynamic",
        &DeriveOptions {
            keep_float: KeepFloat::None,
            ..Default::default()
        },
    );
    let ops: Vec<&str> = derived
        .model
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type())
        .collect();
    assert_eq!(ops.iter().filter(|o| **o == "MatMulInteger").count(), 3);
    assert!(!ops.contains(&"Gemm"), "{ops:?}");
}

#[test]
fn the_sensitivity_pass_keeps_the_fewest_worst_candidates_that_reach_the_target() {
    // bert-tiny in int8 is at cosine 0.9994 on its calibration samples: a target above that
    // makes the pass keep some candidates in float.
    let m = load("bert-tiny");
    let mut options = DeriveOptions::default();
    options.sensitivity.target_cosine = 0.9996;
    let derived = derive_with(&m, "int8-static", &options);
    let report = &derived.report;
    let total = report.sensitivity.len();
    let kept: Vec<&str> = report
        .kept_float
        .iter()
        .filter(|k| k.reason.starts_with("sensitivity"))
        .map(|k| k.node.as_str())
        .collect();
    let worst: Vec<&str> = report.sensitivity[..kept.len()]
        .iter()
        .map(|s| s.node.as_str())
        .collect();
    assert_eq!(kept, worst, "the worst first");
    assert!(
        report
            .sensitivity
            .windows(2)
            .all(|w| w[0].cosine <= w[1].cosine),
        "ranked worst first"
    );
    assert!(
        !kept.is_empty() && kept.len() < total / 2,
        "{} of {total} kept",
        kept.len()
    );

    // Measured again here, on the calibration samples: the variant reaches the target...
    let samples = options
        .calibration
        .inputs(&m.entry.inputs, &m.bound)
        .unwrap();
    let cosine_on_calibration = |d: &Derived| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.onnx");
        model::save(&d.model, &path).unwrap();
        let reference = run_on(
            &TractBackend,
            &m.entry.path(&models_dir()),
            &m.bound,
            &samples,
        )
        .unwrap();
        let actual = run_on(&TractBackend, &path, &m.bound, &samples).unwrap();
        compare(&m, &reference, &actual).cosine
    };
    let reached = cosine_on_calibration(&derived);
    assert!(reached >= 0.9996, "{reached}");
    // ...and one candidate fewer in float (the pass capped there) does not.
    options.sensitivity.max_keep_fraction = (kept.len() - 1) as f64 / total as f64;
    let fewer = derive_with(&m, "int8-static", &options);
    let below = cosine_on_calibration(&fewer);
    assert!(below < 0.9996, "{below} with {} kept", kept.len() - 1);
    assert!(
        fewer
            .report
            .notes
            .iter()
            .any(|n| n.contains("stays below the target")),
        "{:?}",
        fewer.report.notes
    );
}

/// An unrolled recurrent cell reads one weight matrix at every time step: the int8 variants
/// store that weight once, not once per step (int8-dynamic of the zoo's captcha-crnn, whose
/// LSTM is unrolled over 40 steps, came out 3.6 times larger than its fp32 source), and still
/// compute what the fp32 model does.
#[test]
fn a_weight_shared_by_many_layers_is_quantized_once() {
    use chipbench_optimize::builder::GraphBuilder;
    let (steps, n) = (6, 64);
    let mut g = GraphBuilder::new("unrolled");
    let mut h = g.input("x", DataType::Float, &["4", "64"]);
    let values: Vec<f32> = (0..n * n)
        .map(|i| ((i * 7 % 23) as f32 - 11.0) / 64.0)
        .collect();
    let w = g.weight("W", &[n, n], &values);
    for step in 0..steps {
        let y = g.node("MatMul", &format!("y{step}"), &[&h, &w], vec![]);
        h = g.node("Tanh", &format!("h{step}"), &[&y], vec![]);
    }
    g.output(&h, DataType::Float, &["4", "64"]);
    let proto = g.into_model().unwrap();
    let bound = vec![TensorInfo {
        name: "x".into(),
        dtype: chipbench_core::DType::F32,
        shape: vec![4, n],
    }];
    let specs = vec![chipbench_core::InputSpec {
        name: "x".into(),
        dtype: chipbench_core::DType::F32,
        shape: vec![chipbench_core::Dim::Fixed(4), chipbench_core::Dim::Fixed(n)],
        range: None,
    }];
    let source = Source {
        model: &proto,
        model_dir: None,
        specs: &specs,
        bound: &bound,
    };
    let options = DeriveOptions {
        keep_float: KeepFloat::None,
        ..DeriveOptions::default()
    };
    let samples: Vec<Vec<Tensor>> = (0..4)
        .map(|s| {
            let x: Vec<f32> = (0..4 * n)
                .map(|i| (((i + s * 13) % 29) as f32 - 14.0) / 14.0)
                .collect();
            vec![Tensor::from_vec(vec![4, n], x).unwrap()]
        })
        .collect();
    let reference = tract_runner(bound.clone())(&proto, &samples).unwrap();
    for recipe in ["int8-dynamic", "int8-static"] {
        let recipe: Recipe = recipe.parse().unwrap();
        let derived =
            variants::derive(&source, &recipe, &options, &mut tract_runner(bound.clone())).unwrap();
        assert_eq!(
            derived.report.converted.len(),
            steps,
            "{recipe}: every step in int8"
        );
        let int8: Vec<_> = derived
            .model
            .graph
            .as_ref()
            .unwrap()
            .initializer
            .iter()
            .filter(|t| {
                t.data_type == Some(DataType::Int8 as i32) && t.dims == [n as i64, n as i64]
            })
            .collect();
        assert_eq!(int8.len(), 1, "{recipe}: W stored once in int8");
        let actual = tract_runner(bound.clone())(&derived.model, &samples).unwrap();
        for (r, a) in reference.iter().zip(&actual) {
            let (r, a) = (
                r[0].as_slice::<f32>().unwrap(),
                a[0].as_slice::<f32>().unwrap(),
            );
            let worst = r
                .iter()
                .zip(a)
                .map(|(r, a)| (r - a).abs())
                .fold(0.0f32, f32::max);
            // Six steps of 8-bit weights and activations through tanh: a few percent of the
            // [-1, 1] range at most.
            assert!(worst < 0.1, "{recipe}: max abs error {worst}");
        }
    }
}
