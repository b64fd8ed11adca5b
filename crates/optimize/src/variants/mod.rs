//! Model variants derived from an fp32 model by a named recipe ([`Recipe`]): float16, int8
//! dynamic, int8 static (QDQ, calibrated), weight-only int8 and int4 (block-wise, as
//! `DequantizeLinear` or ONNX Runtime's `MatMulNBits`), and unstructured, 2:4 and channel
//! pruning.
//!
//! Which layers the int8 recipes leave in float is a policy ([`KeepFloat`]). The default,
//! `auto`, keeps the first and the last layer, and the layers a sensitivity pass finds worst:
//! each candidate is quantized alone, the model is run on calibration samples, and the
//! output's cosine similarity to the fp32 outputs ranks them. The most sensitive stay in float,
//! worst first, only while the output cosine of the model with the others in int8 is below
//! [`SensitivityOptions::target_cosine`] (measured on every calibration sample, starting from
//! an estimate: one minus the sum of the single-candidate losses), and never more than
//! [`SensitivityOptions::max_keep_fraction`] of them. `first-last` skips the pass; `none`
//! quantizes every eligible layer, as ONNX Runtime's `quantize_static` does. Every layer kept in
//! float is in the [`VariantReport`] with the reason.
//!
//! Calibration and the sensitivity pass run models, and this crate runs none: the caller
//! passes a [`ModelRunner`] (the CLI's runs on tract).

pub mod cache;
pub mod calibrate;
mod fold;
mod fp16;
mod graph;
mod int8;
mod opset;
pub mod prune;
pub mod quant;
pub mod recipe;
pub mod weight_only;

use std::collections::HashMap;
use std::path::Path;

use chipbench_core::{InputSpec, Tensor, TensorInfo, accuracy};
use serde::{Deserialize, Serialize};

pub use calibrate::{CalibrationSettings, RangeMethod};
pub use fp16::KEPT_IN_FP32;
pub use prune::{ChannelGroup, ChannelSlice, PrunedLayer};
pub use recipe::{RECIPE_HELP, Recipe, Step};

use crate::error::{Error, Result};
use crate::infer::infer_shapes;
use crate::onnx::{ModelProto, StringStringEntryProto};
use quant::Layer;

/// Runs models for the recipes that need to see values.
pub trait ModelRunner {
    /// Runs `model` on each sample (one tensor per model input, in the order of the inputs the
    /// caller declared) and returns every graph output of each run, in the graph's order.
    fn run(
        &mut self,
        model: &ModelProto,
        samples: &[Vec<Tensor>],
    ) -> std::result::Result<Vec<Vec<Tensor>>, String>;
}

impl<F> ModelRunner for F
where
    F: FnMut(&ModelProto, &[Vec<Tensor>]) -> std::result::Result<Vec<Vec<Tensor>>, String>,
{
    fn run(
        &mut self,
        model: &ModelProto,
        samples: &[Vec<Tensor>],
    ) -> std::result::Result<Vec<Vec<Tensor>>, String> {
        self(model, samples)
    }
}

/// Which layers the int8 recipes leave in float.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeepFloat {
    /// The first and the last layer, and those the sensitivity pass finds worst: accuracy
    /// first, the default.
    #[default]
    Auto,
    /// The first and the last layer only (no sensitivity pass).
    FirstLast,
    /// None: every eligible layer is quantized, as ONNX Runtime's `quantize_static` does,
    /// whatever it costs in accuracy.
    None,
}

/// The policies `--keep-float` accepts, for error messages.
pub const KEEP_FLOAT_HELP: &str = "auto (first and last layers, and the layers the sensitivity \
     pass finds worst), first-last (no sensitivity pass), none (quantize every eligible layer)";

impl KeepFloat {
    /// The policy in words, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            KeepFloat::Auto => {
                "auto (the first and last layers, and the layers the sensitivity pass finds worst)"
            }
            KeepFloat::FirstLast => "first-last (the first and last layers; no sensitivity pass)",
            KeepFloat::None => "none (every eligible layer is quantized)",
        }
    }
}

impl std::fmt::Display for KeepFloat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeepFloat::Auto => "auto",
            KeepFloat::FirstLast => "first-last",
            KeepFloat::None => "none",
        })
    }
}

impl std::str::FromStr for KeepFloat {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<KeepFloat, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(KeepFloat::Auto),
            "first-last" => Ok(KeepFloat::FirstLast),
            "none" => Ok(KeepFloat::None),
            _ => Err(format!(
                "unknown float-keeping policy '{text}' (known: {KEEP_FLOAT_HELP})"
            )),
        }
    }
}

/// How the sensitivity pass of the `auto` policy runs.
#[derive(Clone, Debug, PartialEq)]
pub struct SensitivityOptions {
    /// The output cosine similarity to fp32 the int8 model should keep on the calibration
    /// samples; the worst candidates stay in float only while it is not reached.
    pub target_cosine: f64,
    /// At most this fraction of the candidates (first and last layers excluded) stays in
    /// float, rounded to the nearest count; 0 keeps none.
    pub max_keep_fraction: f64,
    /// Calibration samples each candidate is ranked on (the first ones); the stopping rule
    /// measures on all of them.
    pub samples: usize,
}

impl Default for SensitivityOptions {
    fn default() -> Self {
        SensitivityOptions {
            target_cosine: 0.99,
            max_keep_fraction: 0.5,
            samples: 2,
        }
    }
}

/// Everything a recipe may need besides the model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeriveOptions {
    pub calibration: CalibrationSettings,
    pub keep_float: KeepFloat,
    pub sensitivity: SensitivityOptions,
}

/// The fp32 model a variant is derived from.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    pub model: &'a ModelProto,
    /// Where its external data lives, when it has any.
    pub model_dir: Option<&'a Path>,
    /// Its inputs as declared (for generated calibration samples) and bound to the shapes the
    /// variant is derived for.
    pub specs: &'a [InputSpec],
    pub bound: &'a [TensorInfo],
}

/// A layer a precision step left in float, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeptLayer {
    pub node: String,
    pub op: String,
    pub reason: String,
}

/// The output cosine similarity to fp32 with one layer quantized alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSensitivity {
    pub node: String,
    pub cosine: f64,
}

/// What a recipe did, for the user and the results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VariantReport {
    pub recipe: String,
    /// The float-keeping policy of an int8 step.
    #[serde(default)]
    pub keep_float: Option<KeepFloat>,
    /// Layers converted to int8 or float16.
    pub converted: Vec<String>,
    /// Layers left in float by a precision step, with the reason.
    pub kept_float: Vec<KeptLayer>,
    /// Layers pruned, or left alone by pruning with the reason.
    pub pruned: Vec<PrunedLayer>,
    /// Output channels removed by channel pruning.
    pub channel_groups: Vec<ChannelGroup>,
    /// The sensitivity pass, most sensitive first.
    pub sensitivity: Vec<LayerSensitivity>,
    /// What the activation ranges were calibrated on.
    pub calibration: Option<String>,
    /// Other facts worth knowing (folded normalizations...).
    pub notes: Vec<String>,
}

/// A derived model and its report.
#[derive(Clone, Debug)]
pub struct Derived {
    pub model: ModelProto,
    pub report: VariantReport,
}

/// Derives the variant `recipe` of `source`. The model is self-contained (external data is
/// read in) and carries `chipbench.recipe` in its metadata.
pub fn derive(
    source: &Source,
    recipe: &Recipe,
    options: &DeriveOptions,
    runner: &mut dyn ModelRunner,
) -> Result<Derived> {
    let mut model = graph::prepare(source.model, source.model_dir)?;
    let mut report = VariantReport {
        recipe: recipe.name(),
        ..Default::default()
    };
    for step in &recipe.steps {
        let graph = model.graph.as_mut().expect("prepared models have a graph");
        match *step {
            Step::PruneUnstructured(s) => report.pruned.extend(prune::unstructured(graph, s)),
            Step::Prune2of4 => report.pruned.extend(prune::two_of_four(graph)),
            Step::PruneChannels(r) => {
                let inference = infer_shapes(&model, source.bound, None);
                let graph = model.graph.as_mut().expect("prepared models have a graph");
                let (groups, skipped) = prune::channels(graph, r, &inference);
                fold::drop_unused_initializers(graph);
                report.channel_groups.extend(groups);
                report.pruned.extend(skipped);
            }
            Step::Fp16 => {
                fold_norms(&mut model, &mut report);
                let (converted, kept) = fp16::convert(&model, source.bound)?;
                model = converted;
                report
                    .converted
                    .push("every float operator not listed in kept_float".into());
                report
                    .kept_float
                    .extend(kept.into_iter().map(|(node, op)| KeptLayer {
                        reason: format!(
                            "{op} is computed in float32 (numerically sensitive in float16)"
                        ),
                        node,
                        op,
                    }));
            }
            Step::WeightOnly(settings) => {
                let (converted, kept) = weight_only::convert(&mut model, &settings);
                report.converted.extend(converted);
                report.kept_float.extend(kept);
                report.notes.push(settings.describe());
            }
            Step::Int8Dynamic | Step::Int8Static => {
                model = quantize(
                    source,
                    model,
                    *step == Step::Int8Static,
                    options,
                    runner,
                    &mut report,
                )?;
            }
        }
    }
    model
        .metadata_props
        .retain(|p| p.key() != "chipbench.recipe");
    model.metadata_props.push(StringStringEntryProto::new(
        "chipbench.recipe",
        &recipe.name(),
    ));
    Ok(Derived { model, report })
}

fn fold_norms(model: &mut ModelProto, report: &mut VariantReport) {
    let graph = model.graph.as_mut().expect("prepared models have a graph");
    let folded = fold::fold_batch_norms(graph);
    if folded > 0 {
        report.notes.push(format!(
            "{folded} BatchNormalization folded into the Conv before it"
        ));
    }
}

fn run(
    runner: &mut dyn ModelRunner,
    model: &ModelProto,
    samples: &[Vec<Tensor>],
    what: &str,
) -> Result<Vec<Vec<Tensor>>> {
    runner.run(model, samples).map_err(|reason| Error::Runner {
        what: what.to_string(),
        reason,
    })
}

/// What the sensitivity pass can leave in float: a layer with weights, or (int8-static) an
/// operator on two activations (a MatMul of attention, a residual Add).
#[derive(Clone, Copy)]
enum Candidate<'a> {
    Layer(&'a Layer),
    Op(usize),
}

/// The layers and the activation operators among `chosen`.
fn split<'a>(chosen: &[Candidate<'a>]) -> (Vec<&'a Layer>, std::collections::HashSet<usize>) {
    let mut layers = Vec::new();
    let mut ops = std::collections::HashSet::new();
    for c in chosen {
        match *c {
            Candidate::Layer(l) => layers.push(l),
            Candidate::Op(i) => {
                ops.insert(i);
            }
        }
    }
    (layers, ops)
}

/// The int8 recipes: layer choice, calibration (static), sensitivity pass, and the build.
fn quantize(
    source: &Source,
    mut model: ModelProto,
    is_static: bool,
    options: &DeriveOptions,
    runner: &mut dyn ModelRunner,
    report: &mut VariantReport,
) -> Result<ModelProto> {
    fold_norms(&mut model, report);
    let why = if is_static {
        "int8-static (QuantizeLinear with axis)"
    } else {
        "int8-dynamic (DynamicQuantizeLinear)"
    };
    let opset = model.onnx_opset().unwrap_or(0);
    let inference = infer_shapes(&model, source.bound, None);
    opset::raise_to_13(&mut model, &inference, why)?;
    if opset < opset::TARGET {
        report.notes.push(format!(
            "opset {opset} raised to {}: the operators whose form changed rewritten (axes as inputs; \
             a Softmax not on the last axis flattened as opset {opset} defines it)",
            opset::TARGET
        ));
    }
    let policy = options.keep_float;
    report.keep_float = Some(policy);
    let graph = model.graph.as_ref().expect("prepared models have a graph");
    let layers = quant::layers(graph);
    let mut candidates: Vec<Candidate> = if policy == KeepFloat::None {
        layers.iter().map(Candidate::Layer).collect()
    } else if layers.len() < 3 {
        report.notes.push(format!(
            "{} layer(s) with float weights: the first and last stay in float, nothing is quantized",
            layers.len()
        ));
        for l in &layers {
            report
                .kept_float
                .push(kept(l, "the first or last layer (kept in float by rule)"));
        }
        return Ok(model);
    } else {
        let (first, last) = (&layers[0], &layers[layers.len() - 1]);
        report.kept_float.push(kept(
            first,
            "the first layer: it reads the raw input (kept in float by rule)",
        ));
        report.kept_float.push(kept(
            last,
            "the last layer: it writes the outputs (kept in float by rule)",
        ));
        layers[1..layers.len() - 1]
            .iter()
            .map(Candidate::Layer)
            .collect()
    };

    let samples = options.calibration.inputs(source.specs, source.bound)?;
    let outputs = graph.output.len();
    let types = infer_shapes(&model, source.bound, None).elem_types;
    let is_float = |v: &str| types.get(v) == Some(&crate::onnx::DataType::Float);
    if is_static {
        candidates.extend(
            int8::activation_ops(graph, &is_float)
                .into_iter()
                .map(Candidate::Op),
        );
    }
    let (reference, ranges) = if is_static {
        let (all_layers, all_ops) = split(&candidates);
        let plan = int8::plan_static(graph, &all_layers, &all_ops, &is_float);
        for &node in &plan.demoted {
            if let Some(layer) = all_layers.iter().find(|l| l.node == node) {
                report.kept_float.push(kept(
                    layer,
                    "it reads a MaxPool/AveragePool whose input stays float: int8 from there on makes \
                     ONNX Runtime run the pool on uint8 in NCHW layout, far slower than in float",
                ));
            }
        }
        candidates.retain(|c| !matches!(c, Candidate::Layer(l) if plan.demoted.contains(&l.node)));
        // Graph inputs (the `none` policy quantizes the first layer's input) are read from the
        // samples themselves; the other tensors are exposed as extra outputs.
        let fed = |name: &str| source.bound.iter().position(|b| b.name == name);
        let output_index = |name: &str| graph.output.iter().position(|o| o.name() == name);
        let exposed_names: Vec<String> = plan
            .tensors
            .iter()
            .filter(|t| fed(t).is_none() && output_index(t).is_none())
            .cloned()
            .collect();
        let exposed = graph::expose(&model, &exposed_names);
        let what = format!(
            "the fp32 model with {} activations exposed (calibration)",
            exposed_names.len()
        );
        let results = run(runner, &exposed, &samples, &what)?;
        let mut ranges = HashMap::new();
        for name in &plan.tensors {
            let mut values: Vec<f32> = Vec::new();
            for (sample, result) in samples.iter().zip(&results) {
                let t = match (fed(name), output_index(name)) {
                    (Some(k), _) => sample.get(k),
                    (None, Some(k)) => result.get(k),
                    (None, None) => {
                        let k = exposed_names.iter().position(|e| e == name);
                        k.and_then(|k| result.get(outputs + k))
                    }
                };
                let t = t.ok_or_else(|| Error::Runner {
                    what: what.clone(),
                    reason: format!(
                        "it returned {} outputs, {} expected",
                        result.len(),
                        outputs + exposed_names.len()
                    ),
                })?;
                values.extend(t.to_f64_vec().into_iter().map(|v| v as f32));
            }
            ranges.insert(
                name.clone(),
                calibrate::range(&mut values, options.calibration.method),
            );
        }
        let hash = options
            .calibration
            .file
            .as_deref()
            .and_then(|f| crate::model::sha256_file(f).ok());
        report.calibration = Some(options.calibration.describe(hash.as_deref()));
        let reference: Vec<Vec<Tensor>> = results
            .into_iter()
            .map(|mut s| {
                s.truncate(outputs);
                s
            })
            .collect();
        (reference, ranges)
    } else if policy == KeepFloat::Auto {
        let what = "the fp32 model (sensitivity reference)";
        (run(runner, &model, &samples, what)?, HashMap::new())
    } else {
        (Vec::new(), HashMap::new())
    };
    let build = |chosen: &[Candidate]| -> ModelProto {
        let (layers, ops) = split(chosen);
        if is_static {
            let plan = int8::plan_static(graph, &layers, &ops, &is_float);
            int8::build_static(&model, &layers, &plan, &ranges)
        } else {
            int8::build_dynamic(&model, &layers)
        }
    };
    let describe = |c: &Candidate| -> (String, String) {
        match c {
            Candidate::Layer(l) => (l.label.clone(), l.op.clone()),
            Candidate::Op(i) => (
                graph::label(&graph.node[*i]),
                graph.node[*i].op_type().to_string(),
            ),
        }
    };

    let sensitive = if policy == KeepFloat::Auto {
        let pass = Sensitivity {
            candidates: &candidates,
            samples: &samples,
            reference: &reference,
            outputs: graph.output.iter().map(|o| o.name().to_string()).collect(),
            build: &build,
            describe: &describe,
        };
        pass.run(&options.sensitivity, runner, report)?
    } else {
        Vec::new()
    };
    let chosen: Vec<Candidate> = candidates
        .iter()
        .enumerate()
        .filter(|(i, _)| !sensitive.contains(i))
        .map(|(_, c)| *c)
        .collect();
    report
        .converted
        .extend(chosen.iter().map(|c| describe(c).0));
    Ok(build(&chosen))
}

/// What the sensitivity pass works on: the candidates, the calibration samples and the fp32
/// outputs on them, and how to build the model with a set of candidates in int8.
struct Sensitivity<'a> {
    candidates: &'a [Candidate<'a>],
    samples: &'a [Vec<Tensor>],
    reference: &'a [Vec<Tensor>],
    outputs: Vec<String>,
    build: &'a dyn Fn(&[Candidate]) -> ModelProto,
    describe: &'a dyn Fn(&Candidate) -> (String, String),
}

impl Sensitivity<'_> {
    /// The output cosine to fp32 on the first `n` calibration samples with `chosen` in int8.
    fn cosine(
        &self,
        chosen: &[Candidate],
        n: usize,
        what: String,
        runner: &mut dyn ModelRunner,
    ) -> Result<f64> {
        let model = (self.build)(chosen);
        let actual = run(runner, &model, &self.samples[..n], &what)?;
        accuracy::compare("fp32", &self.outputs, &self.reference[..n], &actual)
            .map(|a| a.cosine)
            .map_err(|e| Error::Runner {
                what,
                reason: e.to_string(),
            })
    }

    /// Ranks the candidates by the output cosine with each alone in int8, then keeps the
    /// worst in float, in order, only while the model with the rest in int8 stays below the
    /// target on the calibration samples. Returns the indices of the candidates kept in float.
    fn run(
        &self,
        options: &SensitivityOptions,
        runner: &mut dyn ModelRunner,
        report: &mut VariantReport,
    ) -> Result<Vec<usize>> {
        let total = self.candidates.len();
        let max_keep = ((options.max_keep_fraction * total as f64).round() as usize).min(total);
        if max_keep == 0 || self.samples.is_empty() {
            return Ok(Vec::new());
        }
        let n = options.samples.clamp(1, self.samples.len());
        let mut scores = Vec::with_capacity(total);
        for (i, candidate) in self.candidates.iter().enumerate() {
            let what = format!(
                "the model with only '{}' quantized (sensitivity pass)",
                (self.describe)(candidate).0
            );
            let cosine = self.cosine(std::slice::from_ref(candidate), n, what, runner)?;
            scores.push((i, cosine));
        }
        scores.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        // Small independent errors add up: one minus the sum of the single-candidate losses of
        // those left in int8 estimates the output cosine. It is where the search starts; the
        // measured cosine decides.
        let estimate = |keep: usize| {
            1.0 - scores[keep..]
                .iter()
                .map(|(_, c)| (1.0 - c).max(0.0))
                .sum::<f64>()
        };
        let target = options.target_cosine;
        let all = self.samples.len();
        let measure = |keep: usize, runner: &mut dyn ModelRunner| -> Result<f64> {
            let int8: Vec<Candidate> = scores[keep..]
                .iter()
                .map(|&(i, _)| self.candidates[i])
                .collect();
            let what = format!(
                "the model with the {keep} most sensitive candidate(s) in float (sensitivity pass)"
            );
            self.cosine(&int8, all, what, runner)
        };
        let mut keep = (0..=max_keep)
            .find(|&k| estimate(k) >= target)
            .unwrap_or(max_keep);
        let mut measured = measure(keep, runner)?;
        let mut tried = 1;
        if measured < target {
            while measured < target && keep < max_keep {
                keep += 1;
                measured = measure(keep, runner)?;
                tried += 1;
            }
        } else {
            while keep > 0 {
                let fewer = measure(keep - 1, runner)?;
                tried += 1;
                if fewer < target {
                    break;
                }
                keep -= 1;
                measured = fewer;
            }
        }
        let mut kept = Vec::with_capacity(keep);
        for (rank, &(i, cosine)) in scores.iter().enumerate() {
            let (node, op) = (self.describe)(&self.candidates[i]);
            report.sensitivity.push(LayerSensitivity {
                node: node.clone(),
                cosine,
            });
            if rank < keep {
                kept.push(i);
                report.kept_float.push(KeptLayer {
                    node,
                    op,
                    reason: format!(
                        "sensitivity: output cosine {cosine:.6} with this alone in int8, the {} lowest of {total} \
                         (measured on {n} calibration sample(s))",
                        ordinal(rank + 1)
                    ),
                });
            }
        }
        let how = format!(
            "with the other {} in int8 it is {measured:.5}, measured over the {all} calibration \
             samples ({tried} trial build(s); estimated {:.5} from the single-candidate losses)",
            total - keep,
            estimate(keep)
        );
        report.notes.push(if measured >= target {
            format!(
                "sensitivity pass: {keep} of {total} candidates kept in float, the most sensitive first: \
                 the fewest that bring the output cosine to fp32 to the target {target}; {how}"
            )
        } else {
            format!(
                "sensitivity pass: {keep} of {total} candidates kept in float, the most sensitive first: \
                 the most allowed, and the output cosine to fp32 stays below the target {target}; {how}"
            )
        });
        Ok(kept)
    }
}

fn kept(layer: &Layer, reason: &str) -> KeptLayer {
    KeptLayer {
        node: layer.label.clone(),
        op: layer.op.clone(),
        reason: reason.to_string(),
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Zeros among the elements of the model's weight tensors (initializers of rank 2 or more,
/// float or integer), as a fraction; `None` when there are none.
pub fn weight_sparsity(model: &ModelProto) -> Option<f64> {
    let graph = model.graph.as_ref()?;
    let (mut zeros, mut total) = (0u64, 0u64);
    for t in graph.initializer.iter().filter(|t| t.dims.len() >= 2) {
        let Ok(dt) = t.elem_type() else { continue };
        let counted = if dt.is_float() {
            t.to_f32()
                .ok()
                .map(|v| v.iter().filter(|x| **x == 0.0).count())
        } else {
            t.to_i64()
                .ok()
                .map(|v| v.iter().filter(|x| **x == 0).count())
        };
        if let Some(z) = counted {
            zeros += z as u64;
            total += t.element_count();
        }
    }
    (total > 0).then(|| zeros as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_keeping_policies_parse_and_print_by_name() {
        for policy in [KeepFloat::Auto, KeepFloat::FirstLast, KeepFloat::None] {
            assert_eq!(policy.to_string().parse::<KeepFloat>(), Ok(policy));
        }
        assert_eq!(
            " First-Last ".parse::<KeepFloat>(),
            Ok(KeepFloat::FirstLast)
        );
        assert_eq!(KeepFloat::default(), KeepFloat::Auto);
        let err = "some".parse::<KeepFloat>().unwrap_err();
        assert!(
            err.contains("'some'") && err.contains("auto") && err.contains("none"),
            "{err}"
        );
        assert_eq!(
            serde_json::to_string(&KeepFloat::FirstLast).unwrap(),
            "\"first-last\"",
            "the report and the cache write the CLI's names"
        );
    }
}
