//! How a cell gets measured: inside this process, in a fresh process of its own, or (the CLI's
//! edge emulation) in a constrained one. The harness sees only [`Executor`].
//!
//! Further sessions run in fresh processes when cells are isolated, because processes differ by
//! more than one process's sessions show: the sessions of one process reuse its memory (the
//! allocator hands the freed buffers back), so they share its placement. Measured on a 2-vCPU VM
//! over 21 processes of five sessions each: the 22 µs mlp on tract varied by 1.0 % (sd) between
//! the sessions of one process, and the processes' means by 1.6 %, where those sessions predict
//! 0.45 %. What matters is that no two sessions of one cell share a process, so one process per
//! round and device serves the sessions of every cell on that device: a process start with ONNX
//! Runtime costs about 0.1 s (its first session builds the engine's kernel registry), paid once
//! per round instead of once per cell.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use chipbench_core::result::CellResult;
use chipbench_runner::{FreshSession, MeasureSettings, Sweep};

use crate::child::Worker;
use crate::memory::{Confinement, MemoryCap, MemoryLimit, allocation_failure_in};
use crate::plan::Cell;
use crate::protocol::{Job, JobContext, Message};

/// Measures cells, one at a time.
pub trait Executor {
    /// Measures a cell's first session (and its further ones, for an executor whose
    /// [`Executor::rounds`] is `None`). Never fails: a failure is a failed cell with the reason.
    fn measure(&mut self, cell: &Cell, settings: &MeasureSettings) -> CellResult;

    /// How this executor measures further sessions in the harness's rounds, for the cells'
    /// provenance; `None` when [`Executor::measure`] measures them itself.
    fn rounds(&self) -> Option<&'static str>;

    /// One further session of a measured cell, loaded afresh.
    fn further_session(
        &mut self,
        cell: &Cell,
        settings: &MeasureSettings,
    ) -> Result<FreshSession, String>;

    /// A round of further sessions (one per cell) is over: the next round's sessions must not
    /// share a process with this round's.
    fn round_ended(&mut self) {}
}

/// Measures every cell inside this process: the fastest to start, but a crash or hang of an
/// engine ends the whole run (`bench --in-process`).
pub struct InProcess<'r> {
    sweep: Sweep<'r>,
}

impl<'r> InProcess<'r> {
    /// `references`: see [`crate::targets::references`]; `energy`: the meters and estimate of
    /// each cell's energy (`None`: none recorded).
    pub fn new(
        references: Vec<chipbench_runner::Target<'r>>,
        energy: Option<std::sync::Arc<chipbench_energy::EnergyPlan>>,
    ) -> Self {
        let mut sweep = Sweep::new(MeasureSettings::default(), references);
        sweep.energy = energy;
        InProcess { sweep }
    }
}

impl Executor for InProcess<'_> {
    fn measure(&mut self, cell: &Cell, settings: &MeasureSettings) -> CellResult {
        self.sweep.settings = settings.clone();
        let (model, target, threads) = (cell.model, cell.target, cell.threads);
        crate::scenario::cell::measure(&mut self.sweep, model, target, threads, cell.scenario)
    }

    fn rounds(&self) -> Option<&'static str> {
        Some(
            "one after another in the run's own process (--in-process), in rounds over all its cells",
        )
    }

    fn further_session(
        &mut self,
        cell: &Cell,
        settings: &MeasureSettings,
    ) -> Result<FreshSession, String> {
        self.sweep.settings = settings.clone();
        self.sweep
            .fresh_session_p50(cell.model, cell.target, cell.threads)
    }
}

/// Measures each cell in a `chipbench worker` child of its own, killed past `timeout` and capped
/// in memory; the further sessions of a round in one child per device, which answers that
/// round's session of every cell on the device (so each of a cell's sessions still comes from a
/// process of its own).
pub struct FreshProcess {
    /// The chipbench binary.
    exe: PathBuf,
    context: JobContext,
    timeout: Duration,
    /// Each child's memory cap, and where its size comes from (`--memory-cap`).
    cap: Option<(MemoryCap, String)>,
    /// This round's child per `backend:device`.
    round: BTreeMap<String, CappedWorker>,
}

/// A worker and its place under the memory cap, kept until the worker has ended.
struct CappedWorker {
    // Dropped first: the process ends before its cgroup is removed.
    worker: Worker,
    confinement: Option<Confinement>,
}

impl FreshProcess {
    pub fn new(
        exe: PathBuf,
        context: JobContext,
        timeout: Duration,
        cap: Option<(MemoryCap, String)>,
    ) -> Self {
        FreshProcess {
            exe,
            context,
            timeout,
            cap,
            round: BTreeMap::new(),
        }
    }

    fn start(&self) -> Result<CappedWorker, String> {
        let mut command = Command::new(&self.exe);
        command.arg("worker");
        let mut confinement = self
            .cap
            .as_ref()
            .map(|(cap, _)| cap.confine(&mut command))
            .transpose()?;
        let worker = Worker::start(command)
            .map_err(|e| format!("cannot run {} worker: {e}", self.exe.display()))?;
        if let Some(c) = confinement.as_mut() {
            c.started();
        }
        Ok(CappedWorker {
            worker,
            confinement,
        })
    }

    /// `reason` (why a request failed) said as running out of memory when the cap ended the
    /// process: its cgroup's OOM killer, or an allocation refused under RLIMIT_AS.
    fn out_of_memory(&self, confinement: Option<&Confinement>, reason: String) -> String {
        let (Some((cap, _)), Some(confinement)) = (&self.cap, confinement) else {
            return reason;
        };
        let (peak, oom_kills) = confinement.usage();
        let refused =
            matches!(cap.limit, MemoryLimit::RlimitAs) && allocation_failure_in(&reason).is_some();
        if oom_kills == 0 && !refused {
            return reason;
        }
        let peak = peak.map_or(String::new(), |p| {
            format!(" (peak {})", chipbench_core::format_bytes(p as f64))
        });
        format!(
            "out of memory: the cell's process passed its memory cap of {}{peak}; {reason}",
            cap.describe()
        )
    }
}

impl Executor for FreshProcess {
    fn measure(&mut self, cell: &Cell, settings: &MeasureSettings) -> CellResult {
        let job = Job::new(cell, settings, &self.context);
        let what = "the cell's process";
        let mut capped = match self.start() {
            Ok(capped) => capped,
            Err(reason) => return cell.failed(reason),
        };
        let reply = capped
            .worker
            .ask(&Message::MeasureCell(Box::new(job)), what, self.timeout);
        let mut result = match reply {
            Ok(Message::Cell { cell, .. }) => *cell,
            Ok(_) => cell.failed(format!("{what} answered something else than a cell")),
            Err(reason) => cell.failed(reason),
        };
        let CappedWorker {
            worker,
            confinement,
        } = capped;
        worker.stop();
        if let Some(error) = result.error.take() {
            result.error = Some(self.out_of_memory(confinement.as_ref(), error));
        }
        drop(confinement);
        if let Some((cap, source)) = &self.cap {
            result.provenance.insert(
                "memory_cap".into(),
                format!(
                    "the cell's process ran capped at {} ({source})",
                    cap.describe()
                ),
            );
        }
        result
    }

    fn rounds(&self) -> Option<&'static str> {
        Some(
            "in rounds over all the run's cells, each round's sessions in a fresh process per \
             device (a cell's sessions never share one)",
        )
    }

    fn further_session(
        &mut self,
        cell: &Cell,
        settings: &MeasureSettings,
    ) -> Result<FreshSession, String> {
        let job = Job::new(cell, settings, &self.context).without_energy();
        let what = "the session's process";
        let device = cell.target.label();
        let mut capped = match self.round.remove(&device) {
            Some(capped) => capped,
            None => self.start()?,
        };
        // A worker that failed or died is dropped (killed): the next session starts another.
        match capped
            .worker
            .ask(&Message::FurtherSession(Box::new(job)), what, self.timeout)
        {
            Ok(Message::Session(session)) => {
                self.round.insert(device, capped);
                Ok(session)
            }
            Ok(_) => Err(format!("{what} answered something else than a session")),
            Err(reason) => Err(self.out_of_memory(capped.confinement.as_ref(), reason)),
        }
    }

    fn round_ended(&mut self) {
        for (_, capped) in std::mem::take(&mut self.round) {
            capped.worker.stop();
        }
    }
}

impl Cell<'_> {
    /// This cell failed before it measured anything (its process died, timed out or could not
    /// start), with the reason.
    pub fn failed(&self, reason: String) -> CellResult {
        let mut cell = self.target.failed_cell(self.model, self.threads, reason);
        // Recorded under the scenario it was planned with, so that its id is the planned one.
        if let Some(s) = self.scenario {
            cell.scenario = s.scenario.name().into();
            cell.scenario_point = Some(s.point());
        }
        cell
    }

    /// The cell stands for `--find-peak` searches, whose probes are cells of their own.
    pub fn is_search(&self) -> bool {
        self.scenario.is_some_and(|s| s.find_peak.is_some())
    }
}
