//! Measuring in a process of its own: the job a parent hands a `chipbench` child on its stdin
//! (a cell, a cell of an edge run, or one further session of a cell), and the child's side.
//!
//! A cell's further sessions run in fresh processes because processes differ by more than one
//! process's sessions show: the sessions of one process reuse its memory (the allocator hands
//! the freed buffers back), so they share its placement. Measured on a 2-vCPU VM over 21
//! processes of five sessions each: the 22 µs mlp on tract varied by 1.0 % (sd) between the
//! sessions of one process, and the processes' means by 1.6 %, where those sessions predict
//! 0.45 %.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use chipbench_core::result::{CellResult, IdleBaseline, ModelRecord};
use chipbench_core::{Backend, InputSpec, TensorInfo};
use chipbench_energy::{EnergyPlan, EstimateModel};
use chipbench_runner::measure::INTERRUPTED;
use chipbench_runner::{FreshSession, ModelUnderTest, Settings, Sweep, Target};
use serde::{Deserialize, Serialize};

use crate::Outcome;
use crate::backends::{self, EngineArgs};

/// What the parent hands a worker on its stdin.
#[derive(Serialize, Deserialize)]
pub struct Job {
    model: ModelRecord,
    path: PathBuf,
    specs: Vec<InputSpec>,
    bound: Vec<TensorInfo>,
    reference: PathBuf,
    /// `--input-file` tensors by input name, which the worker loads again.
    input_files: BTreeMap<String, PathBuf>,
    /// `backend:device`
    backend: String,
    pub threads: Option<usize>,
    settings: Settings,
    ort_lib: Option<PathBuf>,
    /// What the child rebuilds the parent's energy plan from (its meters are the host's own);
    /// `None` measures no energy.
    #[serde(default)]
    energy: Option<EnergyJob>,
}

#[derive(Serialize, Deserialize)]
struct EnergyJob {
    estimate: EstimateModel,
    idle: Option<IdleBaseline>,
}

impl Job {
    pub fn new(
        model: &ModelUnderTest,
        target: &Target,
        threads: Option<usize>,
        settings: &Settings,
        input_files: &BTreeMap<String, PathBuf>,
        ort_lib: Option<PathBuf>,
    ) -> Job {
        Job {
            model: model.record.clone(),
            path: model.path.clone(),
            specs: model.specs.clone(),
            bound: model.bound.clone(),
            reference: model.reference.clone(),
            input_files: input_files
                .iter()
                .filter(|(name, _)| model.fixed_inputs.contains_key(*name))
                .map(|(n, p)| (n.clone(), p.clone()))
                .collect(),
            backend: target.label(),
            threads,
            settings: settings.clone(),
            ort_lib,
            energy: settings.energy.as_deref().map(|plan| EnergyJob {
                estimate: plan.estimate().clone(),
                idle: plan.idle_baseline().cloned(),
            }),
        }
    }

    /// The job without an energy window (further sessions and edge cells record none).
    pub fn without_energy(mut self) -> Job {
        self.energy = None;
        self
    }

    /// Reads the job on stdin and installs the worker's panic and Ctrl-C handling.
    pub fn receive() -> anyhow::Result<Job> {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the job on stdin")?;
        let job: Job = serde_json::from_str(&text).context("the job on stdin is not valid")?;
        // The engines catch some panics and keep only that one happened; the parent reads the
        // messages on stderr.
        let recorder = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            eprintln!("panic: {info}");
            recorder(info);
        }));
        // Ctrl-C reaches the whole process group: end early and keep the samples, as bench does.
        let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
        Ok(job)
    }

    /// The backends the job may use (the same discovery as the parent's).
    pub fn registry(&self) -> Vec<Box<dyn Backend>> {
        backends::registry(&EngineArgs {
            ort_lib: self.ort_lib.clone(),
        })
    }

    /// What the job measures: the sweep, the model and the target.
    pub fn prepare<'r>(
        &self,
        registry: &'r [Box<dyn Backend>],
    ) -> anyhow::Result<(Sweep<'r>, ModelUnderTest, Target<'r>)> {
        let job = self;
        let (targets, skipped) = backends::select(registry, std::slice::from_ref(&job.backend))?;
        let target = match targets.into_iter().next() {
            Some(t) => t,
            None => anyhow::bail!(
                "{} is not available in the worker: {}",
                job.backend,
                skipped
                    .first()
                    .map(|s| s.reason.as_str())
                    .unwrap_or("no such device")
            ),
        };
        let references = crate::bench::reference_targets(registry, target.backend.name() == "ort")?;
        let mut fixed_inputs = BTreeMap::new();
        for (name, path) in &job.input_files {
            fixed_inputs.insert(name.clone(), chipbench_core::spec::load_npy(path)?);
        }
        let model = ModelUnderTest {
            record: job.model.clone(),
            path: job.path.clone(),
            specs: job.specs.clone(),
            bound: job.bound.clone(),
            fixed_inputs,
            reference: job.reference.clone(),
        };
        let mut sweep = Sweep::new(job.settings.clone(), references);
        if let Some(energy) = &job.energy {
            let (mut plan, _) = EnergyPlan::discover(Path::new("/"), energy.estimate.clone());
            if let Some(idle) = &energy.idle {
                plan.set_idle_baseline(idle.clone());
            }
            sweep.settings.energy = Some(Arc::new(plan));
        }
        Ok((sweep, model, target))
    }
}

/// `--input-file NAME=PATH` pairs by input name.
pub fn input_file_paths(pairs: &[String]) -> BTreeMap<String, PathBuf> {
    pairs
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, path)| (name.to_string(), PathBuf::from(path)))
        .collect()
}

/// Measures one further session of a cell in a fresh `chipbench session-worker` process and
/// returns its median, count and stop reason; the reason when it fails.
pub fn session_in_fresh_process(job: &Job, timeout: Duration) -> Result<FreshSession, String> {
    let end = in_fresh_process("session-worker", job, timeout)?;
    match serde_json::from_str::<FreshSession>(&end.stdout) {
        Ok(session) if end.status.success() => Ok(session),
        _ => Err(died("the session's process", &end, timeout)),
    }
}

/// Measures one cell in a fresh `chipbench cell-worker` process: the cell, or the reason the
/// process gave none (a signal, the deadline, an exit without a result).
pub fn cell_in_fresh_process(job: &Job, timeout: Duration) -> Result<CellResult, String> {
    let end = in_fresh_process("cell-worker", job, timeout)?;
    match serde_json::from_str::<CellResult>(&end.stdout) {
        Ok(cell) if end.status.success() => Ok(cell),
        _ => Err(died("the cell's process", &end, timeout)),
    }
}

fn in_fresh_process(
    subcommand: &str,
    job: &Job,
    timeout: Duration,
) -> Result<crate::cell_process::ChildEnd, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the chipbench binary to start a {subcommand}: {e}"))?;
    let mut command = Command::new(&exe);
    command.arg(subcommand);
    let job_json = serde_json::to_vec(job).map_err(|e| e.to_string())?;
    crate::cell_process::run(command, &job_json, Some(timeout))
        .map_err(|e| format!("cannot run {} {subcommand}: {e}", exe.display()))
}

/// Why a child gave no result: the deadline, or how it ended and its last words on stderr.
fn died(what: &str, end: &crate::cell_process::ChildEnd, timeout: Duration) -> String {
    if end.timed_out {
        return format!(
            "timed out after {} (--cell-timeout): {what} was killed",
            humantime::format_duration(timeout)
        );
    }
    let words = end.last_words(3, |l| l.starts_with("note: run with `RUST_BACKTRACE"));
    format!(
        "{what} ended with {} without a result{}",
        end.how(),
        if words.is_empty() {
            String::new()
        } else {
            format!(": {words}")
        }
    )
}

/// `chipbench cell-worker` (hidden): measures the cell described on stdin, its first session
/// only (further sessions are the parent's rounds), and prints it.
pub fn cell_worker() -> anyhow::Result<Outcome> {
    let job = Job::receive()?;
    let registry = job.registry();
    let (mut sweep, model, target) = job.prepare(&registry)?;
    let cell = sweep.run_cell(&model, &target, job.threads);
    println!("{}", serde_json::to_string(&cell)?);
    Ok(Outcome::Success)
}

/// `chipbench session-worker` (hidden): loads the cell described on stdin afresh, warms it up,
/// times it under the further-session rules and prints the median.
pub fn session_worker() -> anyhow::Result<Outcome> {
    let job = Job::receive()?;
    let registry = job.registry();
    let (sweep, model, target) = job.prepare(&registry)?;
    let session = sweep
        .fresh_session_p50(&model, &target, job.threads)
        .map_err(anyhow::Error::msg)?;
    println!("{}", serde_json::to_string(&session)?);
    Ok(Outcome::Success)
}
