//! The messages between a run and the processes that measure for it, one JSON object per line:
//! a parent and its `chipbench worker` children, and a device running a whole plan for
//! `chipbench remote`. Each side's first message is `Hello` with its protocol version; a side
//! that meets another version says so and stops, instead of misreading the other.
//!
//! A worker answers each request as it comes and flushes, so a parent can keep one alive for
//! several requests: the executor starts a process per cell, and one per round of further
//! sessions and device (see `executor.rs` for why).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use chipbench_core::result::{CellResult, IdleBaseline, ModelRecord};
use chipbench_core::task::Decoding;
use chipbench_core::{InputSpec, TensorInfo};
use chipbench_energy::{EnergyPlan, EstimateModel};
use chipbench_runner::{FreshSession, MeasureSettings, ModelUnderTest, RealInputs};
use serde::{Deserialize, Serialize};

use crate::plan::{Cell, Plan};
use crate::scenario::settings::ScenarioSettings;

/// Bumped on any change a reader of the previous version would misread (2: a job's scenario,
/// which a version-1 worker would ignore and measure single-stream; 3: a job's output decoding
/// and real samples, which a version-2 worker would ignore (no task accuracy, random inputs), and
/// the held sessions of `chipbench ab`, which it would refuse request by request).
pub const PROTOCOL_VERSION: u32 = 3;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    /// First from each side.
    Hello { version: u32, tool_version: String },
    /// Parent to worker: measure a cell's first session.
    MeasureCell(Box<Job>),
    /// Parent to worker: measure the cell and its further sessions, one after another, in this
    /// process (a constrained one) and report what the process saw of its constraints.
    MeasureConstrained(Box<Job>),
    /// Parent to worker: load the cell afresh and time one further session.
    FurtherSession(Box<Job>),
    /// Parent to worker (`ab`): load the job's model, warm it up and hold the session for the
    /// `TimeWindow` requests that follow, until `CloseSession`. Answered with `Opened`.
    OpenSession(Box<Job>),
    /// Parent to worker: time the held session for this many seconds. Answered with `Window`.
    TimeWindow { seconds: f64 },
    /// Parent to worker: drop the held session.
    CloseSession,
    /// Parent to worker: no more requests.
    Stop,
    /// A measured cell; `observed` for `MeasureConstrained`.
    Cell {
        cell: Box<CellResult>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        observed: Option<Observed>,
    },
    /// A further session.
    Session(FreshSession),
    /// The held session is loaded and warm.
    Opened { load_ms: f64, threads: usize },
    /// A window of the held session: its median latency and inferences.
    Window { p50_ms: f64, inferences: u64 },
    /// A request that could not be carried out, and why.
    Failed(String),
    /// Device to `remote`: the process id of the run (so a lost connection can stop it).
    Pid(u32),
    /// Device to `remote`: the run's plan, before its first cell.
    Plan(Box<Plan>),
    /// Device to `remote`: the run ended with this exit code; the last lines of its stderr.
    Exit { code: i32, stderr: Vec<String> },
}

impl Message {
    pub fn hello() -> Message {
        Message::Hello {
            version: PROTOCOL_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// One line of the conversation: `None` for a line that is not a message (a shell's or an
    /// engine's output mixed into the stream).
    pub fn parse(line: &str) -> Option<Message> {
        serde_json::from_str(line.trim()).ok()
    }

    /// Writes the message as one line and flushes it.
    pub fn send(&self, to: &mut impl Write) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        line.push(b'\n');
        to.write_all(&line)?;
        to.flush()
    }

    /// The reason a peer's `Hello` cannot be talked to; `None` when it can.
    pub fn incompatible(&self) -> Option<String> {
        match self {
            Message::Hello { version, .. } if *version == PROTOCOL_VERSION => None,
            Message::Hello {
                version,
                tool_version,
            } => Some(format!(
                "the other side (chipbench {tool_version}) speaks protocol version {version}, this \
                 chipbench {} speaks {PROTOCOL_VERSION}: run the same chipbench on both",
                env!("CARGO_PKG_VERSION")
            )),
            _ => Some("the other side did not start with a Hello".into()),
        }
    }
}

/// What a worker needs to measure one cell.
#[derive(Clone, Serialize, Deserialize)]
pub struct Job {
    pub model: ModelRecord,
    pub path: PathBuf,
    pub specs: Vec<InputSpec>,
    pub bound: Vec<TensorInfo>,
    pub reference: PathBuf,
    /// How the outputs become the model's decisions, for task-level accuracy (zoo models).
    #[serde(default)]
    pub decoding: Option<Decoding>,
    /// `--input-file` tensors by input name, which the worker loads again.
    pub input_files: BTreeMap<String, PathBuf>,
    /// `--input-value` values by input name, which the worker fills its tensors with again.
    #[serde(default)]
    pub input_values: BTreeMap<String, f64>,
    /// Real samples (`--data real`), which the worker reads again; `None`: seeded data.
    #[serde(default)]
    pub real_inputs: Option<RealInputsJob>,
    /// `backend:device`
    pub backend: String,
    pub threads: Option<usize>,
    pub settings: MeasureSettings,
    /// The engine options the parent built its backends with (`ort_lib`, say), so that the
    /// worker finds the same ones.
    pub engines: BTreeMap<String, String>,
    /// What the worker rebuilds the parent's energy plan from (its meters are the host's own);
    /// `None` measures no energy.
    #[serde(default)]
    pub energy: Option<EnergyJob>,
    /// How the load generator drives the cell; `None` for single-stream.
    #[serde(default)]
    pub scenario: Option<ScenarioSettings>,
}

/// Where a model's real samples are, and what they are.
#[derive(Clone, Serialize, Deserialize)]
pub struct RealInputsJob {
    pub held_out: PathBuf,
    pub calibration: PathBuf,
    pub source: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct EnergyJob {
    pub estimate: EstimateModel,
    pub idle: Option<IdleBaseline>,
}

/// The parts of the parent's state a job carries.
#[derive(Clone, Default)]
pub struct JobContext {
    /// `--input-file` tensors by input name.
    pub input_files: BTreeMap<String, PathBuf>,
    /// `--input-value` values by input name.
    pub input_values: BTreeMap<String, f64>,
    pub engines: BTreeMap<String, String>,
    /// The parent's energy plan, which a worker rebuilds from its own meters; `None` measures no
    /// energy.
    pub energy: Option<Arc<EnergyPlan>>,
}

impl Job {
    pub fn new(cell: &Cell, settings: &MeasureSettings, context: &JobContext) -> Job {
        let model = cell.model;
        Job {
            model: model.record.clone(),
            path: model.path.clone(),
            specs: model.specs.clone(),
            bound: model.bound.clone(),
            reference: model.reference.clone(),
            decoding: model.decoding.clone(),
            input_files: context
                .input_files
                .iter()
                .filter(|(name, _)| model.fixed_inputs.contains_key(*name))
                .map(|(n, p)| (n.clone(), p.clone()))
                .collect(),
            input_values: context
                .input_values
                .iter()
                .filter(|(name, _)| model.fixed_inputs.contains_key(*name))
                .map(|(n, v)| (n.clone(), *v))
                .collect(),
            real_inputs: model.real.as_ref().map(|r| RealInputsJob {
                held_out: r.held_out.clone(),
                calibration: r.calibration.clone(),
                source: r.source.clone(),
            }),
            backend: cell.target.label(),
            threads: cell.threads,
            settings: settings.clone(),
            engines: context.engines.clone(),
            energy: context.energy.as_deref().map(|plan| EnergyJob {
                estimate: plan.estimate().clone(),
                idle: plan.idle_baseline().cloned(),
            }),
            scenario: cell.scenario.cloned(),
        }
    }

    /// The job without an energy window (further sessions and constrained cells record none).
    pub fn without_energy(mut self) -> Job {
        self.energy = None;
        self
    }

    /// The model as the worker measures it, its `--input-file` tensors loaded.
    pub fn model(&self) -> chipbench_core::Result<ModelUnderTest> {
        let mut fixed_inputs = BTreeMap::new();
        for (name, path) in &self.input_files {
            fixed_inputs.insert(name.clone(), chipbench_core::spec::load_npy(path)?);
        }
        for (name, &value) in &self.input_values {
            if let Some(info) = self.bound.iter().find(|i| &i.name == name) {
                fixed_inputs.insert(name.clone(), chipbench_core::spec::filled(info, value)?);
            }
        }
        let real = match &self.real_inputs {
            Some(r) => Some(RealInputs::load(
                r.held_out.clone(),
                r.calibration.clone(),
                r.source.clone(),
                &self.bound,
            )?),
            None => None,
        };
        Ok(ModelUnderTest {
            record: self.model.clone(),
            path: self.path.clone(),
            specs: self.specs.clone(),
            bound: self.bound.clone(),
            fixed_inputs,
            real,
            reference: self.reference.clone(),
            decoding: self.decoding.clone(),
        })
    }

    /// The parent's energy plan rebuilt from this host's meters.
    pub fn energy_plan(&self) -> Option<Arc<EnergyPlan>> {
        let energy = self.energy.as_ref()?;
        let (mut plan, _) =
            EnergyPlan::discover(std::path::Path::new("/"), energy.estimate.clone());
        if let Some(idle) = &energy.idle {
            plan.set_idle_baseline(idle.clone());
        }
        Some(Arc::new(plan))
    }
}

/// The constraints as a constrained worker saw them from inside.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Observed {
    /// The CPUs it may run on (sched_getaffinity).
    pub cpus: Vec<usize>,
    /// Peak virtual size (VmPeak), which RLIMIT_AS caps.
    pub vm_peak_bytes: Option<u64>,
}

impl Observed {
    pub fn now() -> Observed {
        Observed {
            cpus: allowed_cpus().unwrap_or_default(),
            vm_peak_bytes: vm_peak(),
        }
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Result<Vec<usize>, String> {
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into the set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(format!(
            "cannot read the CPUs this process may use (sched_getaffinity): {}",
            std::io::Error::last_os_error()
        ));
    }
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    if cpus.is_empty() {
        return Err("sched_getaffinity lists no CPU".into());
    }
    Ok(cpus)
}

fn vm_peak() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmPeak:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
