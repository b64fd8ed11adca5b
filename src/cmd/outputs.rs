//! `chipbench outputs`: the built-in models' outputs on tract's CPU backend for seeded inputs,
//! written to a file or compared with a file written elsewhere — by another build, on another
//! machine, under emulation. A functional check with fp32 tolerance; it measures no time.

use std::path::PathBuf;

use anyhow::Context;
use chipbench_backend_tract::TractBackend;
use chipbench_core::{Backend, ModelSource, SessionOptions, Tensor, accuracy};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::cmd::models::{self, Prepared};
use crate::{Outcome, UsageError};

#[derive(Args)]
pub struct OutputsArgs {
    /// A suite model name or an ONNX file (repeatable; default: the whole suite).
    #[arg(long = "model", short = 'm', value_name = "NAME|PATH")]
    models: Vec<String>,
    /// Seeded input samples per model.
    #[arg(long, default_value_t = 2, value_name = "N")]
    samples: usize,
    /// Seed of the inputs (the same generator as `bench`).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder of the built-in suite (default: ./models, else the one generated in the cache).
    #[arg(long, value_name = "DIR")]
    suite: Option<PathBuf>,
    /// Write the outputs to FILE (JSON).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "compare",
        conflicts_with = "compare"
    )]
    write: Option<PathBuf>,
    /// Compare with outputs written by --write; exit 1 when a model differs by more than the
    /// tolerance.
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,
    /// Largest accepted max_rel_err: max |y - r| / max |r| over every output of a model.
    #[arg(long, default_value_t = 1e-4, value_name = "X")]
    tolerance: f64,
    #[command(flatten)]
    inputs: models::InputArgs,
}

/// What `--write` writes.
#[derive(Serialize, Deserialize)]
struct OutputsFile {
    chipbench: String,
    /// The architecture the outputs were computed on (`x86_64`, `aarch64`).
    arch: String,
    backend: String,
    seed: u64,
    models: Vec<ModelOutputs>,
}

#[derive(Serialize, Deserialize)]
struct ModelOutputs {
    name: String,
    sha256: String,
    output_names: Vec<String>,
    /// `samples[sample][output]`
    samples: Vec<Vec<StoredTensor>>,
}

/// A tensor's values, widened to f64 so that every element type is kept exactly.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredTensor {
    shape: Vec<usize>,
    values: Vec<f64>,
}

impl StoredTensor {
    pub(crate) fn of(tensor: &Tensor) -> StoredTensor {
        StoredTensor {
            shape: tensor.shape().to_vec(),
            values: tensor.to_f64_vec(),
        }
    }

    /// Compared as f32, the precision of the check.
    fn tensor(&self) -> anyhow::Result<Tensor> {
        Ok(Tensor::from_vec(
            self.shape.clone(),
            self.values.iter().map(|&v| v as f32).collect(),
        )?)
    }
}

pub fn run(args: OutputsArgs) -> anyhow::Result<Outcome> {
    if args.samples == 0 {
        return Err(UsageError("--samples must be at least 1".into()).into());
    }
    let reference: Option<OutputsFile> = match &args.compare {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
            Some(serde_json::from_str(&text).map_err(|e| {
                UsageError(format!(
                    "{}: not a chipbench outputs file: {e}",
                    path.display()
                ))
            })?)
        }
        None => None,
    };
    let suite_dir = models::suite_dir(args.suite.as_deref())?;
    let prepared = models::resolve(&suite_dir, &args.models, &args.inputs.request()?)?;
    let backend = TractBackend;
    let device = backend
        .devices()
        .map_err(|r| anyhow::anyhow!("tract is unavailable: {r}"))?
        .into_iter()
        .next()
        .context("tract has no device")?;
    let options = SessionOptions {
        threads: Some(1),
        ..SessionOptions::default()
    };
    let mut computed = Vec::new();
    for model in &prepared {
        let m = match model {
            Prepared::Ready(m) => m,
            Prepared::Broken { record, error } => anyhow::bail!("{}: {error}", record.name),
        };
        let source = ModelSource {
            path: m.path.clone(),
            inputs: m.bound.clone(),
        };
        let mut session = backend
            .load(&source, &device, &options)
            .with_context(|| m.record.name.clone())?;
        let outputs: Vec<Vec<Tensor>> = (0..args.samples as u64)
            .map(|i| session.run(&m.inputs(args.seed, i)))
            .collect::<Result<_, _>>()
            .with_context(|| m.record.name.clone())?;
        let names = session.outputs().iter().map(|o| o.name.clone()).collect();
        computed.push((m.record.clone(), names, outputs));
    }
    let backend_label = format!("tract {} cpu, 1 thread", backend.version());

    let Some(reference) = reference else {
        let file = OutputsFile {
            chipbench: env!("CARGO_PKG_VERSION").into(),
            arch: std::env::consts::ARCH.into(),
            backend: backend_label,
            seed: args.seed,
            models: computed
                .into_iter()
                .map(|(record, output_names, outputs)| ModelOutputs {
                    name: record.name,
                    sha256: record.sha256,
                    output_names,
                    samples: outputs
                        .iter()
                        .map(|s| s.iter().map(StoredTensor::of).collect())
                        .collect(),
                })
                .collect(),
        };
        let path = args
            .write
            .as_ref()
            .expect("clap requires --write without --compare");
        std::fs::write(path, serde_json::to_vec(&file)?)
            .with_context(|| path.display().to_string())?;
        eprintln!(
            "wrote the outputs of {} model(s) on {} ({}) to {}",
            file.models.len(),
            file.arch,
            file.backend,
            path.display()
        );
        return Ok(Outcome::Success);
    };

    if reference.seed != args.seed {
        return Err(UsageError(format!(
            "the reference was computed with --seed {}, this run uses {}",
            reference.seed, args.seed
        ))
        .into());
    }
    let mut differ = 0;
    for (record, names, outputs) in &computed {
        let Some(stored) = reference.models.iter().find(|m| m.name == record.name) else {
            println!("{}: not in the reference file", record.name);
            differ += 1;
            continue;
        };
        if stored.sha256 != record.sha256 {
            println!(
                "{}: a different model file than the reference's (sha256 differs)",
                record.name
            );
            differ += 1;
            continue;
        }
        let samples = outputs.len().min(stored.samples.len());
        let expected: Vec<Vec<Tensor>> = stored.samples[..samples]
            .iter()
            .map(|s| s.iter().map(StoredTensor::tensor).collect())
            .collect::<anyhow::Result<_>>()?;
        let actual: Vec<Vec<Tensor>> = outputs[..samples]
            .iter()
            .map(|s| s.iter().map(|t| StoredTensor::of(t).tensor()).collect())
            .collect::<anyhow::Result<_>>()?;
        let label = format!("{} on {}", reference.backend, reference.arch);
        let a = accuracy::compare(&label, names, &expected, &actual)?;
        let within = a.max_rel_err <= args.tolerance;
        if !within {
            differ += 1;
        }
        println!(
            "{}: {samples} samples, max abs err {:.3e}, max rel err {:.3e}, cosine {:.7}{} — {}",
            record.name,
            a.max_abs_err,
            a.max_rel_err,
            a.cosine,
            a.top1_agreement
                .map(|t| format!(", top-1 agreement {t:.3}"))
                .unwrap_or_default(),
            if within {
                "within tolerance"
            } else {
                "DIFFERS"
            }
        );
    }
    println!(
        "{} of {} models match the reference ({} on {}) within max rel err {:e}; this run: {backend_label} on {}",
        computed.len() - differ.min(computed.len()),
        computed.len(),
        reference.backend,
        reference.arch,
        args.tolerance,
        std::env::consts::ARCH
    );
    Ok(if differ == 0 {
        Outcome::Success
    } else {
        Outcome::SomeFailed
    })
}
