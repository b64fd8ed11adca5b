//! `chipbench optimize`: derives one variant of a model and says what it changed; and the
//! variants of `chipbench bench --variant`, derived once and kept in the variant cache.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chipbench_backend_tract::TractBackend;
use chipbench_core::result::{Accuracy, Derivation, KeptFloat, ModelRecord};
use chipbench_core::task::{self, Decoding, TaskAccuracy};
use chipbench_core::{Backend, ModelSource, SessionOptions, Tensor, TensorInfo, accuracy};
use chipbench_optimize::ModelStats;
use chipbench_optimize::onnx::ModelProto;
use chipbench_optimize::variants::cache::{self, CachedVariant, VariantCache};
use chipbench_optimize::variants::weight_only::Format;
use chipbench_optimize::variants::{
    self, CalibrationSettings, DeriveOptions, KeepFloat, RECIPE_HELP, RangeMethod, Recipe, Source,
    VariantReport,
};
use chipbench_runner::ModelUnderTest;
use clap::Args;

use crate::cmd::models::{self, Prepared};
use crate::cmd::outputs::StoredTensor;
use crate::{Outcome, UsageError};

/// How int8-static calibrates (shared by `optimize` and `bench`).
#[derive(Args, Clone, Debug, Default)]
pub struct CalibrationArgs {
    /// Calibration samples for int8-static: a .npz (numpy.savez) with one array per model input,
    /// one sample or N stacked (default: a zoo model's real calibration split under --data real,
    /// else seeded samples drawn like the inputs).
    #[arg(long, value_name = "FILE.npz")]
    calibration: Option<PathBuf>,
    /// Seeded calibration samples when no --calibration file is given.
    #[arg(long, value_name = "N", default_value_t = 8)]
    calibration_samples: usize,
    /// Activation ranges holding this percentage of the calibration values, the outliers cut
    /// equally from both ends (default 99.99).
    #[arg(long, value_name = "P", conflicts_with = "minmax")]
    percentile: Option<f64>,
    /// Activation ranges from the smallest and largest calibration values.
    #[arg(long)]
    minmax: bool,
    /// Which layers the int8 recipes leave in float: auto (the first and last layers, and the
    /// layers a sensitivity pass finds worst, until the output cosine to fp32 reaches 0.99 on
    /// the calibration samples), first-last (no sensitivity pass), or none (every eligible
    /// layer in int8, as ONNX Runtime's quantize_static does, whatever it costs in accuracy).
    #[arg(long, value_name = "POLICY", default_value = "auto", value_parser = parse_keep_float)]
    keep_float: KeepFloat,
}

fn parse_keep_float(text: &str) -> Result<KeepFloat, String> {
    text.parse()
}

impl CalibrationArgs {
    pub fn options(&self) -> Result<DeriveOptions, UsageError> {
        let mut calibration = CalibrationSettings {
            file: self.calibration.clone(),
            ..Default::default()
        };
        if self.calibration_samples == 0 {
            return Err(UsageError(
                "--calibration-samples must be at least 1".into(),
            ));
        }
        calibration.samples = self.calibration_samples;
        if self.minmax {
            calibration.method = RangeMethod::MinMax;
        } else if let Some(p) = self.percentile {
            if !(50.0..=100.0).contains(&p) {
                return Err(UsageError(format!(
                    "--percentile {p}: expected a percentile between 50 and 100, e.g. 99.99"
                )));
            }
            calibration.method = RangeMethod::Percentile(p);
        }
        Ok(DeriveOptions {
            calibration,
            keep_float: self.keep_float,
            ..Default::default()
        })
    }
}

#[derive(Args)]
pub struct OptimizeArgs {
    /// A suite model name, zoo:NAME (a real trained model, see `chipbench zoo list`) or a path
    /// to an ONNX file.
    #[arg(value_name = "MODEL")]
    model: String,
    /// The recipe: fp16, int8-dynamic, int8-static, prune-unstructured:S, prune-2:4,
    /// prune-channels:R, or pruning chained with one precision step (prune-2:4+int8-static).
    #[arg(long, value_name = "RECIPE")]
    variant: String,
    /// Where to write the variant.
    #[arg(short = 'o', long = "out", value_name = "OUT.onnx")]
    out: PathBuf,
    #[command(flatten)]
    calibration: CalibrationArgs,
    #[command(flatten)]
    inputs: models::InputArgs,
    /// Seeded inputs the variant's accuracy is measured on against the fp32 model.
    #[arg(long, value_name = "N", default_value_t = 8)]
    accuracy_samples: usize,
    /// Seed of those inputs (the seed `chipbench bench` uses for its accuracy check).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder of the built-in suite (default: ./models, else the one generated in the cache).
    #[arg(long, value_name = "DIR")]
    suite: Option<PathBuf>,
    /// Also write the accuracy check's outputs (fp32's and the variant's, every sample), the
    /// zoo decoding and the accuracy computed from them to FILE.json, to check the figures
    /// elsewhere (scripts/check-task-accuracy.py recomputes the task accuracy with numpy).
    #[arg(long, value_name = "FILE.json")]
    dump_outputs: Option<PathBuf>,
}

/// What `optimize --dump-outputs` writes.
#[derive(serde::Serialize)]
struct DumpedOutputs<'a> {
    model: &'a str,
    variant: String,
    seed: u64,
    /// The zoo catalog's decoding of the outputs (absent for other models).
    decoding: Option<&'a Decoding>,
    output_names: &'a [String],
    /// `reference[sample][output]`: the fp32 model's outputs on tract.
    reference: Vec<Vec<StoredTensor>>,
    /// `actual[sample][output]`: the variant's, on the same inputs.
    actual: Vec<Vec<StoredTensor>>,
    accuracy: &'a Accuracy,
}

pub fn parse_recipe(text: &str) -> Result<Recipe, UsageError> {
    text.parse::<Recipe>()
        .map_err(|e| UsageError(format!("--variant {e}")))
}

pub fn run(args: OptimizeArgs) -> anyhow::Result<Outcome> {
    let recipe = parse_recipe(&args.variant)?;
    if args.dump_outputs.is_some() && args.accuracy_samples == 0 {
        return Err(UsageError(
            "--dump-outputs writes the accuracy check's outputs: it needs --accuracy-samples of 1 or more"
                .into(),
        )
        .into());
    }
    let options = args.calibration.options()?;
    let request = args.inputs.request()?;
    let suite_dir = models::suite_dir(args.suite.as_deref())?;
    let model =
        match models::resolve(&suite_dir, std::slice::from_ref(&args.model), &request)?.remove(0) {
            Prepared::Ready(m) => m,
            Prepared::Broken { error, .. } => anyhow::bail!("{error}"),
        };
    let proto = chipbench_optimize::model::load(&model.path)?;
    let source = Source {
        model: &proto,
        model_dir: Some(chipbench_optimize::model::model_dir(&model.path)),
        specs: &model.specs,
        bound: &model.bound,
    };
    let started = std::time::Instant::now();
    let options = options_for(&options, &model);
    let derived = variants::derive(&source, &recipe, &options, &mut tract_runner(&model.bound))
        .with_context(|| format!("{}: cannot derive {recipe}", model.path.display()))?;
    let took = started.elapsed();
    chipbench_optimize::model::save(&derived.model, &args.out)?;

    let before = ModelStats::of(&proto, &model.bound, source.model_dir);
    let after = ModelStats::of(&derived.model, &model.bound, None);
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "{} -> {} ({recipe}, derived in {:.1} s)",
        model.path.display(),
        args.out.display(),
        took.as_secs_f64()
    );
    println!("{:<14} {:>14} {:>14}", "", "fp32", recipe.name());
    let bytes = |b: u64| chipbench_report::format_bytes(b as f64);
    println!(
        "{:<14} {:>14} {:>14}",
        "file size",
        bytes(size(&model.path)),
        bytes(size(&args.out))
    );
    println!(
        "{:<14} {:>14} {:>14}",
        "weight bytes",
        bytes(before.weight_bytes),
        bytes(after.weight_bytes)
    );
    println!(
        "{:<14} {:>14} {:>14}",
        "params", before.params, after.params
    );
    let macs = |m: Option<u64>| m.map_or("unknown".to_string(), |m| m.to_string());
    println!(
        "{:<14} {:>14} {:>14}",
        "MACs",
        macs(before.macs),
        macs(after.macs)
    );
    let sparsity = |m: &ModelProto| {
        variants::weight_sparsity(m).map_or("-".into(), |s| format!("{:.1}%", 100.0 * s))
    };
    println!(
        "{:<14} {:>14} {:>14}",
        "sparsity",
        sparsity(&proto),
        sparsity(&derived.model)
    );
    print_report(&derived.report);

    let samples: Vec<Vec<Tensor>> = (0..args.accuracy_samples as u64)
        .map(|i| model.inputs(args.seed, i))
        .collect();
    if !samples.is_empty() {
        let reference =
            run_file(&model.path, &model.bound, &samples).map_err(anyhow::Error::msg)?;
        let actual = run_file(&args.out, &model.bound, &samples).map_err(anyhow::Error::msg)?;
        let names: Vec<String> = chipbench_optimize::model::outputs(&proto)
            .into_iter()
            .map(|o| o.name)
            .collect();
        let mut a = accuracy::compare("tract fp32", &names, &reference, &actual)?;
        if let Some(decoding) = &model.decoding {
            a.task = task::compare(decoding, &names, &reference, &actual)?;
        }
        let inputs = match &model.real {
            Some(real) => format!("real held-out inputs of {}", real.source),
            None => format!("seeded inputs, seed {}", args.seed),
        };
        println!(
            "accuracy against fp32 (measured: both on tract, {} {inputs}): cosine {:.6}, top-1 agreement {}, \
             max abs error {:.3e}, mean relative error {:.3e}",
            samples.len(),
            a.cosine,
            a.top1_agreement
                .map_or("n/a (no class-score output)".into(), |t| format!(
                    "{:.3}",
                    t
                )),
            a.max_abs_err,
            a.mean_rel_err
        );
        if model.decoding.is_some() {
            print_task_accuracy(a.task.as_ref(), &inputs);
        }
        if let Some(path) = &args.dump_outputs {
            let stored = |outputs: &[Vec<Tensor>]| -> Vec<Vec<StoredTensor>> {
                outputs
                    .iter()
                    .map(|sample| sample.iter().map(StoredTensor::of).collect())
                    .collect()
            };
            let dump = DumpedOutputs {
                model: &model.record.name,
                variant: recipe.name(),
                seed: args.seed,
                decoding: model.decoding.as_ref(),
                output_names: &names,
                reference: stored(&reference),
                actual: stored(&actual),
                accuracy: &a,
            };
            std::fs::write(path, serde_json::to_vec(&dump)?)
                .with_context(|| format!("cannot write --dump-outputs {}", path.display()))?;
            println!("outputs and accuracy written to {}", path.display());
        }
    }
    Ok(Outcome::Success)
}

/// What the model decides (class, text, boxes, yes/no) with the variant against fp32, by the
/// decoding the zoo catalog names for it, on the `inputs` the accuracy line names.
fn print_task_accuracy(task: Option<&TaskAccuracy>, inputs: &str) {
    let Some(t) = task else {
        println!(
            "task accuracy: none (the model's outputs are features, not decisions; see cosine)"
        );
        return;
    };
    let figures: Vec<String> = t
        .figures()
        .into_iter()
        .map(|(name, v)| format!("{name} {v}"))
        .collect();
    println!(
        "task accuracy against fp32 ({}, measured: both on tract, the same {} {inputs}): {}",
        t.decoding,
        t.samples,
        figures.join(", ")
    );
}

fn print_report(report: &VariantReport) {
    if let Some(policy) = report.keep_float {
        println!("kept in float by policy {}", policy.describe());
    }
    if let Some(c) = &report.calibration {
        println!("calibration: {c}");
    }
    for k in &report.kept_float {
        println!("kept in float: {} ({}): {}", k.node, k.op, k.reason);
    }
    let skipped: Vec<_> = report
        .pruned
        .iter()
        .filter(|p| p.skipped.is_some())
        .collect();
    for p in skipped {
        println!(
            "not pruned: {} ({}): {}",
            p.node,
            p.op,
            p.skipped.as_deref().unwrap_or("")
        );
    }
    for g in &report.channel_groups {
        println!(
            "channels: {} ({}) {} -> {}",
            g.node,
            g.op,
            g.channels_before,
            g.channels_before - g.removed.len()
        );
    }
    for n in &report.notes {
        println!("note: {n}");
    }
}

/// Runs a model file on tract's CPU device.
fn run_file(
    path: &Path,
    bound: &[TensorInfo],
    samples: &[Vec<Tensor>],
) -> Result<Vec<Vec<Tensor>>, String> {
    let backend = TractBackend;
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

/// The runner calibration and the sensitivity pass use: tract on the CPU, the model written to
/// a temporary file.
fn tract_runner(
    bound: &[TensorInfo],
) -> impl FnMut(&ModelProto, &[Vec<Tensor>]) -> Result<Vec<Vec<Tensor>>, String> {
    let bound = bound.to_vec();
    move |m: &ModelProto, samples: &[Vec<Tensor>]| {
        let dir =
            tempfile::tempdir().map_err(|e| format!("cannot create a temporary folder: {e}"))?;
        let path = dir.path().join("model.onnx");
        chipbench_optimize::model::save(m, &path).map_err(|e| e.to_string())?;
        run_file(&path, &bound, samples)
    }
}

/// Where derived variants are cached: `--variant-cache`, else [`cache::DEFAULT_DIR`].
pub fn variant_cache(explicit: Option<&Path>) -> VariantCache {
    VariantCache::new(
        explicit
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(cache::DEFAULT_DIR)),
    )
}

/// `--variant` names, checked up front.
pub fn parse_variants(texts: &[String]) -> Result<Vec<Recipe>, UsageError> {
    let mut recipes: Vec<Recipe> = Vec::new();
    for text in texts.iter().filter(|t| !t.trim().is_empty()) {
        let expanded = Recipe::parse_sweep(text)
            .map_err(|e| UsageError(format!("--variant {e}; known: {RECIPE_HELP}")))?;
        for recipe in expanded {
            if !recipes.contains(&recipe) {
                recipes.push(recipe);
            }
        }
    }
    if recipes.is_empty() {
        recipes.push(Recipe { steps: Vec::new() });
    }
    Ok(recipes)
}

/// Every model in every requested variant, model by model: the fp32 ones as resolved, the
/// derived ones from the cache (or derived now). A variant that cannot be derived is a model
/// whose cells fail with the reason. A variant whose representation follows the backend is
/// derived once per representation the run's `backends` need, each file for its backends.
pub fn expand(
    prepared: Vec<Prepared>,
    recipes: &[Recipe],
    options: &DeriveOptions,
    cache: &VariantCache,
    backends: &[String],
    talk: bool,
) -> Vec<Prepared> {
    let mut out = Vec::new();
    for model in prepared {
        for recipe in recipes {
            if recipe.is_identity() {
                out.push(model.clone());
                continue;
            }
            for (written, for_backends) in forms(recipe, backends) {
                let derivation = (!for_backends.is_empty()).then(|| Derivation {
                    backends: for_backends.clone(),
                    ..Default::default()
                });
                let mut record = ModelRecord {
                    variant: recipe.name(),
                    recipe: Some(written.name()),
                    derivation,
                    ..model.record().clone()
                };
                let Prepared::Ready(m) = &model else {
                    let error = match &model {
                        Prepared::Broken { error, .. } => {
                            format!("the fp32 source is unusable: {error}")
                        }
                        Prepared::Ready(_) => unreachable!("handled above"),
                    };
                    out.push(Prepared::Broken { record, error });
                    continue;
                };
                match derive_cached(m, recipe, &written, for_backends, options, cache) {
                    Ok((variant, cached)) => {
                        if talk {
                            let verb = if cached.reused {
                                "reusing cached"
                            } else {
                                "derived"
                            };
                            eprintln!(
                                "{verb} {} {}: {}",
                                m.record.name,
                                written.name(),
                                cached.path.display()
                            );
                        }
                        out.push(Prepared::Ready(variant));
                    }
                    Err(e) => {
                        record.path = String::new();
                        record.sha256 = String::new();
                        out.push(Prepared::Broken {
                            record,
                            error: format!("cannot derive {written}: {}", crate::one_line(&e)),
                        });
                    }
                }
            }
        }
    }
    out
}

/// The representation a weight-only variant takes on `backend` when its recipe leaves the
/// choice to the backend: ONNX Runtime runs its own packed `MatMulNBits` (kernels that read the
/// packed levels directly); every engine runs standard `DequantizeLinear`.
fn representation_for(backend: &str) -> Format {
    if backend == "ort" {
        Format::MatMulNBits
    } else {
        Format::DequantizeLinear
    }
}

/// The recipes `recipe` is derived as for a run on `backends`, each with the backends it is
/// for: itself for every backend, unless its representation follows the backend and the
/// backends need more than one.
fn forms(recipe: &Recipe, backends: &[String]) -> Vec<(Recipe, Vec<String>)> {
    if !recipe.follows_backend() {
        return vec![(recipe.clone(), Vec::new())];
    }
    let mut forms: Vec<(Format, Vec<String>)> = Vec::new();
    for backend in backends {
        let format = representation_for(backend);
        match forms.iter_mut().find(|(f, _)| *f == format) {
            Some((_, list)) if list.contains(backend) => {}
            Some((_, list)) => list.push(backend.clone()),
            None => forms.push((format, vec![backend.clone()])),
        }
    }
    match &forms[..] {
        [] => vec![(recipe.written_as(Format::default()), Vec::new())],
        [(format, _)] => vec![(recipe.written_as(*format), Vec::new())],
        _ => forms
            .into_iter()
            .map(|(format, list)| (recipe.written_as(format), list))
            .collect(),
    }
}

/// The options a model's variants are derived with: int8-static calibrates on the model's real
/// calibration split when it has real samples and no --calibration file was given.
fn options_for(options: &DeriveOptions, m: &ModelUnderTest) -> DeriveOptions {
    let mut options = options.clone();
    if let (Some(real), None) = (&m.real, &options.calibration.file) {
        options.calibration.file = Some(real.calibration.clone());
    }
    options
}

/// `recipe` (the variant asked for) of `m`, derived as `written` for `backends` (empty: all).
fn derive_cached(
    m: &ModelUnderTest,
    recipe: &Recipe,
    written: &Recipe,
    backends: Vec<String>,
    options: &DeriveOptions,
    cache: &VariantCache,
) -> anyhow::Result<(ModelUnderTest, CachedVariant)> {
    let options = &options_for(options, m);
    let proto = chipbench_optimize::model::load(&m.path)?;
    let source = Source {
        model: &proto,
        model_dir: Some(chipbench_optimize::model::model_dir(&m.path)),
        specs: &m.specs,
        bound: &m.bound,
    };
    let cached = cache.get_or_derive(
        &m.record.name,
        &m.record.sha256,
        &source,
        written,
        options,
        &mut tract_runner(&m.bound),
    )?;
    let variant_proto = chipbench_optimize::model::load(&cached.path)?;
    let stats = ModelStats::of(&variant_proto, &m.bound, None);
    let report = &cached.report;
    let derivation = Derivation {
        source_path: m.path.display().to_string(),
        source_sha256: m.record.sha256.clone(),
        sparsity: variants::weight_sparsity(&variant_proto),
        converted_layers: report.converted.len(),
        kept_float: report
            .kept_float
            .iter()
            .map(|k| KeptFloat {
                node: k.node.clone(),
                op: k.op.clone(),
                reason: k.reason.clone(),
            })
            .collect(),
        calibration: report.calibration.clone(),
        keep_float: report.keep_float.map(|p| p.to_string()),
        cached: cached.reused,
        notes: report.notes.clone(),
        backends,
    };
    let record = ModelRecord {
        name: m.record.name.clone(),
        path: cached.path.display().to_string(),
        sha256: chipbench_optimize::model::sha256_file(&cached.path)?,
        variant: recipe.name(),
        recipe: Some(written.name()),
        params: Some(stats.params),
        macs: stats.macs,
        weight_bytes: Some(stats.weight_bytes),
        file_bytes: Some(
            std::fs::metadata(&cached.path)
                .map(|md| md.len())
                .unwrap_or(0),
        ),
        derivation: Some(derivation),
    };
    let variant = ModelUnderTest {
        record,
        path: cached.path.clone(),
        specs: m.specs.clone(),
        bound: m.bound.clone(),
        fixed_inputs: m.fixed_inputs.clone(),
        real: m.real.clone(),
        reference: m.path.clone(),
        decoding: m.decoding.clone(),
    };
    Ok((variant, cached))
}

/// The accuracy of each derived variant against fp32, for the end of `chipbench bench`: the
/// summary table has no room for it, and a changed decision (top-1) matters as much as cosine.
pub fn variant_summary(run: &chipbench_core::result::RunResult) -> String {
    let mut lines = Vec::new();
    for cell in run.cells.iter().filter(|c| c.model.recipe.is_some()) {
        let d = cell.model.derivation.as_ref();
        let accuracy = match &cell.accuracy {
            Some(a) => format!(
                "cosine {:.6}, top-1 agreement {}",
                a.cosine,
                a.top1_agreement.map_or("n/a".into(), |t| format!("{t:.3}"))
            ),
            None => cell
                .provenance
                .get("accuracy")
                .cloned()
                .unwrap_or_else(|| format!("not measured ({:?})", cell.status).to_lowercase()),
        };
        lines.push(format!(
            "{} {} on {}:{}: {accuracy}; file {}, sparsity {}, {} layer(s) kept in float{}",
            cell.model.name,
            cell.model.variant,
            cell.backend.name,
            cell.backend.device,
            cell.model
                .file_bytes
                .map_or("-".into(), |b| chipbench_report::format_bytes(b as f64)),
            d.and_then(|d| d.sparsity)
                .map_or("-".into(), |s| format!("{:.1}%", 100.0 * s)),
            d.map_or(0, |d| d.kept_float.len()),
            d.and_then(|d| d.keep_float.as_deref())
                .map_or(String::new(), |p| format!(" (--keep-float {p})")),
        ));
    }
    if lines.is_empty() {
        return String::new();
    }
    let real = run
        .cells
        .iter()
        .any(|c| c.input_data == Some(chipbench_core::result::InputData::Real));
    format!(
        "variants against the fp32 model (measured: each cell's outputs against the fp32 model on tract, same {} inputs):\n{}\n",
        if real { "real held-out" } else { "seeded" },
        lines.join("\n")
    )
}
