//! `chipbench models`, and turning `--model NAME|PATH` plus input options into models ready to
//! benchmark (or into the reason they are not).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chipbench_core::result::ModelRecord;
use chipbench_core::spec::check_input;
use chipbench_core::{DType, Dim, InputSpec, Tensor, TensorInfo};
use chipbench_optimize::stats::ModelStats;
use chipbench_optimize::suite::{self, Installed, SUITE_FILE, Suite};
use chipbench_runner::ModelUnderTest;
use chipbench_runner::resources::MemoryNeed;
use clap::{Args, Subcommand};

use crate::{Outcome, UsageError};

#[derive(Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    action: Option<ModelsAction>,
    /// Folder of the built-in suite (default: ./models, else the one generated in the cache).
    #[arg(long, value_name = "DIR", global = true)]
    suite: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Regenerates the built-in models (deterministic: the same bytes every time).
    Generate {
        /// Where to write the models and suite.toml.
        #[arg(long, default_value = "models")]
        out: PathBuf,
    },
}

pub fn run(args: ModelsArgs) -> anyhow::Result<Outcome> {
    if let Some(ModelsAction::Generate { out }) = args.action {
        let files = suite::generate(&out)?;
        for f in files {
            println!("wrote {}", f.display());
        }
        return Ok(Outcome::Success);
    }
    let dir = suite_dir(args.suite.as_deref())?;
    let suite = Suite::load(&dir)?;
    println!(
        "{:<18} {:>10} {:>14} {:>10} {:>10}  inputs",
        "model", "params", "MACs", "weights", "file"
    );
    for m in &suite.models {
        let path = dir.join(&m.file);
        let line = (|| -> anyhow::Result<String> {
            let proto = chipbench_optimize::model::load(&path)?;
            let bound = bind_all(&m.inputs, &m.dims).map_err(anyhow::Error::msg)?;
            let stats = ModelStats::of(
                &proto,
                &bound,
                Some(chipbench_optimize::model::model_dir(&path)),
            );
            let file_bytes = std::fs::metadata(&path)?.len();
            Ok(format!(
                "{:<18} {:>10} {:>14} {:>10} {:>10}  {}",
                m.name,
                group(stats.params),
                stats.macs.map(group).unwrap_or_else(|| "unknown".into()),
                chipbench_report::format_bytes(stats.weight_bytes as f64),
                chipbench_report::format_bytes(file_bytes as f64),
                describe_inputs(&m.inputs)
            ))
        })();
        match line {
            Ok(l) => println!("{l}"),
            Err(e) => println!("{:<18} error: {}", m.name, crate::one_line(&e)),
        }
    }
    println!(
        "\nmodels in {}; params and MACs counted from the ONNX graph (MACs per inference at the \
         bound shapes).",
        dir.display()
    );
    Ok(Outcome::Success)
}

/// The options that shape a model's inputs, shared by every command that loads models (the
/// errors of input specs suggest them, so each such command must have all of them).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct InputArgs {
    /// Input shape (and type) for a model with dynamic dimensions: name:1x3x224x224[:f32].
    #[arg(long = "input", value_name = "NAME:SHAPE[:TYPE]")]
    pub inputs: Vec<String>,
    /// Binds a named dynamic dimension in every model that has it: batch=1.
    #[arg(long = "dim", value_name = "NAME=N")]
    pub dims: Vec<String>,
    /// Feeds an input from a .npy file instead of seeded random data: name=path.npy.
    #[arg(long = "input-file", value_name = "NAME=PATH")]
    pub input_files: Vec<String>,
    /// The inputs: real samples (a zoo model's held-out split, built from files that packages
    /// ship; its calibration split calibrates int8-static unless --calibration names a file) or
    /// seeded random data. Default: real for zoo models that have samples, random otherwise.
    #[arg(long = "data", value_enum, value_name = "real|random")]
    pub data: Option<DataChoice>,
    /// Sets an input to one value, in every element, instead of a file or generated data (a
    /// sample rate, say: sr=16000).
    #[arg(long = "input-value", value_name = "NAME=V")]
    pub input_values: Vec<String>,
}

/// `--data`
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataChoice {
    Real,
    Random,
}

impl InputArgs {
    /// `--input-value NAME=V` by input name.
    pub fn values(&self) -> Result<BTreeMap<String, f64>, UsageError> {
        self.input_values
            .iter()
            .map(|text| {
                text.split_once('=')
                    .and_then(|(n, v)| Some((n.to_string(), v.trim().parse::<f64>().ok()?)))
                    .filter(|(n, _)| !n.is_empty())
                    .ok_or_else(|| {
                        UsageError(format!(
                            "--input-value '{text}': expected NAME=NUMBER, e.g. sr=16000"
                        ))
                    })
            })
            .collect()
    }

    pub fn request(&self) -> Result<ModelRequest, UsageError> {
        let mut request = ModelRequest::default();
        for text in &self.inputs {
            let (name, shape, dtype) = chipbench_core::spec::parse_input_override(text)
                .map_err(|e| UsageError(format!("--input {e}")))?;
            request.shapes.insert(name, (shape, dtype));
        }
        for text in &self.dims {
            let (name, value) = text
                .split_once('=')
                .and_then(|(n, v)| Some((n.to_string(), v.parse::<usize>().ok()?)))
                .ok_or_else(|| {
                    UsageError(format!("--dim '{text}': expected NAME=N, e.g. batch=1"))
                })?;
            request.dims.insert(name, value);
        }
        for text in &self.input_files {
            let (name, path) = text.split_once('=').ok_or_else(|| {
                UsageError(format!("--input-file '{text}': expected NAME=PATH.npy"))
            })?;
            let tensor = chipbench_core::spec::load_npy(Path::new(path))
                .map_err(|e| UsageError(format!("--input-file {e}")))?;
            request.files.insert(name.to_string(), tensor);
        }
        request.data = self.data;
        request.values = self.values()?;
        if let Some(name) = request
            .values
            .keys()
            .find(|n| request.files.contains_key(*n))
        {
            return Err(UsageError(format!(
                "input '{name}' has both --input-value and --input-file; give one"
            )));
        }
        Ok(request)
    }
}

/// How the command line shapes the models' inputs.
#[derive(Default)]
pub struct ModelRequest {
    /// `--input name:shape[:type]`
    pub shapes: BTreeMap<String, (Vec<usize>, Option<DType>)>,
    /// `--dim name=N`
    pub dims: BTreeMap<String, usize>,
    /// `--input-file name=path.npy`
    pub files: BTreeMap<String, Tensor>,
    /// `--data`; `None`: real where a zoo model has samples.
    pub data: Option<DataChoice>,
    /// `--input-value name=v`
    pub values: BTreeMap<String, f64>,
    /// `--feedback OUT=IN` (`bench`): checked against each model's outputs and inputs.
    pub feedback: Vec<(String, String)>,
    /// Each cell's memory budget in bytes and where it comes from (`bench`); a model whose
    /// cells would need more is refused with the figures.
    pub budget: Option<(u64, String)>,
    /// The accuracy samples each cell keeps outputs of (`bench --accuracy-samples`).
    pub accuracy_samples: usize,
}

pub use chipbench_harness::Prepared;

/// The suite folder: `--suite`, else `./models`, else the built-in suite in the cache root
/// (`<cache>/suite`), generated there on first use and checked against the hashes this binary was
/// built with on every use (a damaged file is regenerated, with a message).
pub fn suite_dir(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let local = PathBuf::from("models");
    if local.join(SUITE_FILE).is_file() {
        return Ok(local);
    }
    let dir = crate::cache::root()?.join("suite");
    let installed = suite::install(&dir).with_context(|| {
        format!(
            "no models/ folder here, and the built-in suite cannot be placed in {} \
             (pass --cache-dir DIR or --suite DIR)",
            dir.display()
        )
    })?;
    match installed {
        Installed::Reused => {}
        Installed::Generated => eprintln!(
            "generated the built-in suite in {} (no models/ folder here; sha256 of every file checked)",
            dir.display()
        ),
        Installed::Repaired(files) => {
            for (file, why) in files {
                eprintln!(
                    "{}: {why}; regenerated it (the built-in suite, sha256 checked)",
                    dir.join(file).display()
                );
            }
        }
    }
    Ok(dir)
}

/// Resolves `--model` arguments (none = the whole suite) into prepared models.
pub fn resolve(
    suite_dir: &Path,
    names: &[String],
    request: &ModelRequest,
) -> anyhow::Result<Vec<Prepared>> {
    let suite = Suite::load(suite_dir).with_context(|| "cannot read the built-in suite")?;
    let wanted: Vec<String> = if names.is_empty() {
        suite.models.iter().map(|m| m.name.clone()).collect()
    } else {
        names.to_vec()
    };
    let mut prepared = Vec::new();
    for name in &wanted {
        if let Some(m) = suite.models.iter().find(|m| &m.name == name) {
            refuse_real_data(name, request)?;
            let path = suite_dir.join(&m.file);
            prepared.push(prepare(&m.name, &path, Some((&m.inputs, &m.dims)), request));
        } else if let Some(zoo_name) = name.strip_prefix("zoo:") {
            let (entry, path) = crate::cmd::zoo::model(zoo_name)?;
            let mut model = prepare(
                &entry.name,
                &path,
                Some((&entry.inputs, &entry.dims)),
                request,
            );
            if let Prepared::Ready(m) = &mut model {
                m.decoding = Some(entry.decoding.clone());
            }
            let model = refuse_unverified(model, &entry)?;
            prepared.push(with_real_inputs(model, zoo_name, request)?);
        } else if looks_like_path(name) {
            refuse_real_data(name, request)?;
            let path = PathBuf::from(name);
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| name.clone());
            prepared.push(prepare(&stem, &path, None, request));
        } else {
            let known: Vec<&str> = suite.models.iter().map(|m| m.name.as_str()).collect();
            return Err(UsageError(format!(
                "unknown model '{name}': not in the suite ({}), not zoo:NAME (see `chipbench zoo list`) \
                 and not a path to an .onnx file",
                known.join(", ")
            ))
            .into());
        }
    }
    check_every_override_is_used(&prepared, request)?;
    check_feedback(&prepared, &request.feedback)?;
    Ok(prepared)
}

/// The hash `prepare` took of the file it loaded must be the catalog's: a file changed between
/// the zoo's check and the load is not measured.
fn refuse_unverified(model: Prepared, entry: &chipbench_zoo::Entry) -> anyhow::Result<Prepared> {
    if let Prepared::Ready(m) = &model
        && m.record.sha256 != entry.source.sha256
    {
        anyhow::bail!(
            "{}: sha256 {} is not the zoo catalog's {} for '{}'; run `chipbench zoo fetch {}`",
            m.path.display(),
            m.record.sha256,
            entry.source.sha256,
            entry.name,
            entry.name
        );
    }
    Ok(model)
}

/// `--data real` for a model that has no real samples.
fn refuse_real_data(name: &str, request: &ModelRequest) -> Result<(), UsageError> {
    if request.data == Some(DataChoice::Real) {
        return Err(UsageError(format!(
            "--data real: model '{name}' has no real samples (zoo models have them, see \
             `chipbench zoo list`); use --data random or --input-file"
        )));
    }
    Ok(())
}

/// A zoo model with its real samples attached, unless `--data random` (or it has none, which
/// `--data real` refuses).
fn with_real_inputs(
    model: Prepared,
    zoo_name: &str,
    request: &ModelRequest,
) -> anyhow::Result<Prepared> {
    let Prepared::Ready(mut m) = model else {
        return Ok(model);
    };
    if request.data == Some(DataChoice::Random) {
        return Ok(Prepared::Ready(m));
    }
    let Some(samples) = crate::cmd::zoo::real_samples(zoo_name)? else {
        if request.data == Some(DataChoice::Real) {
            let entry = chipbench_zoo::Catalog::builtin().get(zoo_name)?.clone();
            return Err(UsageError(format!(
                "--data real: zoo:{zoo_name} has no real samples ({}); use --data random",
                entry.samples
            ))
            .into());
        }
        return Ok(Prepared::Ready(m));
    };
    let real = chipbench_runner::RealInputs::load(
        samples.held_out,
        samples.calibration,
        samples.source,
        &m.bound,
    )
    .map_err(|e| {
        UsageError(format!(
            "zoo:{zoo_name}: its real samples do not fit the inputs as bound ({e}); \
             use --data random for other shapes"
        ))
    })?;
    m.real = Some(real);
    Ok(Prepared::Ready(m))
}

fn looks_like_path(name: &str) -> bool {
    name.ends_with(".onnx")
        || name.contains('/')
        || name.contains('\\')
        || Path::new(name).is_file()
}

fn check_every_override_is_used(
    prepared: &[Prepared],
    request: &ModelRequest,
) -> Result<(), UsageError> {
    let has_input = |name: &str| {
        prepared.iter().any(|p| match p {
            Prepared::Ready(m) => m.specs.iter().any(|s| s.name == name),
            Prepared::Broken { .. } => true, // cannot tell; its cell reports the real problem
        })
    };
    for name in request
        .shapes
        .keys()
        .chain(request.files.keys())
        .chain(request.values.keys())
    {
        if !has_input(name) {
            return Err(UsageError(format!(
                "no selected model has an input named '{name}'"
            )));
        }
    }
    Ok(())
}

/// Every `--feedback OUT=IN` must name an output and an input of every selected model.
fn check_feedback(prepared: &[Prepared], feedback: &[(String, String)]) -> anyhow::Result<()> {
    if feedback.is_empty() {
        return Ok(());
    }
    for m in prepared.iter().filter_map(|p| match p {
        Prepared::Ready(m) => Some(m),
        Prepared::Broken { .. } => None,
    }) {
        let proto = chipbench_optimize::model::load(&m.path)?;
        let outputs: Vec<String> = chipbench_optimize::model::outputs(&proto)
            .into_iter()
            .map(|o| o.name)
            .collect();
        let inputs: Vec<&str> = m.bound.iter().map(|i| i.name.as_str()).collect();
        for (output, input) in feedback {
            let why = if !outputs.contains(output) {
                format!("no output '{output}' (its outputs: {})", outputs.join(", "))
            } else if !inputs.contains(&input.as_str()) {
                format!("no input '{input}' (its inputs: {})", inputs.join(", "))
            } else {
                continue;
            };
            return Err(UsageError(format!(
                "--feedback {output}={input}: model '{}' has {why}",
                m.record.name
            ))
            .into());
        }
    }
    Ok(())
}

fn prepare(
    name: &str,
    path: &Path,
    declared: Option<(&Vec<InputSpec>, &BTreeMap<String, usize>)>,
    request: &ModelRequest,
) -> Prepared {
    let mut record = ModelRecord {
        name: name.to_string(),
        path: path.display().to_string(),
        variant: "fp32".into(),
        ..ModelRecord::default()
    };
    match try_prepare(path, declared, request, &mut record) {
        Ok((specs, bound, fixed_inputs)) => Prepared::Ready(ModelUnderTest {
            record,
            path: path.to_path_buf(),
            specs,
            bound,
            fixed_inputs,
            real: None,
            reference: path.to_path_buf(),
            decoding: None,
        }),
        Err(e) => Prepared::Broken {
            record,
            error: crate::one_line(&e),
        },
    }
}

type Inputs = (Vec<InputSpec>, Vec<TensorInfo>, BTreeMap<String, Tensor>);

fn try_prepare(
    path: &Path,
    declared: Option<(&Vec<InputSpec>, &BTreeMap<String, usize>)>,
    request: &ModelRequest,
    record: &mut ModelRecord,
) -> anyhow::Result<Inputs> {
    let proto = chipbench_optimize::model::load(path)?;
    record.sha256 = chipbench_optimize::model::sha256_file(path)?;
    record.file_bytes = Some(
        std::fs::metadata(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            .len(),
    );
    let (mut specs, mut dims) = match declared {
        Some((specs, dims)) => (specs.clone(), dims.clone()),
        None => (chipbench_optimize::model::inputs(&proto)?, BTreeMap::new()),
    };
    dims.extend(request.dims.iter().map(|(k, v)| (k.clone(), *v)));
    for spec in &mut specs {
        if let Some((shape, dtype)) = request.shapes.get(&spec.name) {
            check_override(spec, shape).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            spec.shape = shape.iter().map(|&d| Dim::Fixed(d)).collect();
            if let Some(dtype) = dtype {
                spec.dtype = *dtype;
            }
        }
    }
    let bound = match chipbench_core::decoder::DecoderInputs::detect(&specs) {
        // A decoder's dims the command line leaves unbound default to one decode step: a batch
        // of 1, one new token after one cached token (no input may be empty: there would be
        // nothing to feed). The generate scenario binds its own steps.
        Ok(decoder) => {
            let dim = |name: &str, default| dims.get(name).copied().unwrap_or(default);
            let batch = match specs[decoder.input_ids].shape.first() {
                Some(Dim::Named(name)) => dim(name, 1),
                Some(Dim::Fixed(n)) => *n,
                None => 1,
            };
            decoder.bind(
                &specs,
                batch,
                dim(&decoder.sequence_dim, 1),
                dim(&decoder.past_dim, 1),
            )
        }
        Err(_) => {
            bind_all(&specs, &dims).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
    };
    let mut fixed = BTreeMap::new();
    for info in &bound {
        if let Some(tensor) = request.files.get(&info.name) {
            check_input(info, tensor).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            fixed.insert(info.name.clone(), tensor.clone());
        }
        if let Some(&value) = request.values.get(&info.name) {
            let tensor = chipbench_core::spec::filled(info, value)
                .map_err(|e| anyhow::anyhow!("--input-value {}: {e}", info.name))?;
            fixed.insert(info.name.clone(), tensor);
        }
    }
    // A model whose shapes cannot be inferred still runs; its MACs stay unknown.
    let inference = chipbench_optimize::infer_shapes(
        &proto,
        &bound,
        Some(chipbench_optimize::model::model_dir(path)),
    );
    let stats = ModelStats::with_inference(&proto, &inference);
    record.params = Some(stats.params);
    record.weight_bytes = Some(stats.weight_bytes);
    record.macs = stats.macs;
    // What the cell will hold, checked before anything is allocated.
    let output_bytes: u64 = chipbench_optimize::model::outputs(&proto)
        .iter()
        .filter_map(|o| {
            let shape = inference.shapes.get(&o.name)?;
            let dtype = o.elem_type?.to_dtype()?;
            let info = TensorInfo {
                name: o.name.clone(),
                dtype,
                shape: shape.clone(),
            };
            info.bytes()
        })
        .fold(0u64, u64::saturating_add);
    let need = MemoryNeed::estimate(
        &bound,
        output_bytes,
        stats.weight_bytes,
        request.accuracy_samples,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if let Some((budget, how)) = &request.budget
        && let Some(why) = need.over(*budget, how)
    {
        anyhow::bail!("{}: {why}", path.display());
    }
    Ok((specs, bound, fixed))
}

/// An `--input` shape must keep the rank and the fixed dimensions the model declares.
fn check_override(spec: &InputSpec, shape: &[usize]) -> Result<(), String> {
    let declared = spec
        .shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x");
    let given = chipbench_core::tensor::format_shape(shape);
    if spec.shape.len() != shape.len() {
        return Err(format!(
            "input '{}': --input gives {given} ({} dims) but the model declares {declared} ({} dims)",
            spec.name,
            shape.len(),
            spec.shape.len()
        ));
    }
    for (i, (d, &g)) in spec.shape.iter().zip(shape).enumerate() {
        if let Dim::Fixed(f) = d
            && *f != g
        {
            return Err(format!(
                "input '{}': --input gives {given} but dimension {i} is fixed at {f} (declared {declared})",
                spec.name
            ));
        }
    }
    Ok(())
}

fn bind_all(
    specs: &[InputSpec],
    dims: &BTreeMap<String, usize>,
) -> Result<Vec<TensorInfo>, String> {
    specs
        .iter()
        .map(|s| s.bind(dims).map_err(|e| e.to_string()))
        .collect()
}

fn describe_inputs(specs: &[InputSpec]) -> String {
    specs
        .iter()
        .map(|s| {
            format!(
                "{}:{}:{}",
                s.name,
                s.shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x"),
                s.dtype
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// 1234567 -> 1.23M
fn group(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}M", n as f64 / 1e6),
        _ => format!("{:.2}G", n as f64 / 1e9),
    }
}
