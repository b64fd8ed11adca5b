//! How a cell gets measured: inside this process, in a fresh process of its own, or (the CLI's
//! edge emulation) in a constrained one. The harness sees only [`Executor`].
//!
//! Further sessions run in fresh processes when cells are isolated, because processes differ by
//! more than one process's sessions show: the sessions of one process reuse its memory (the
//! allocator hands the freed buffers back), so they share its placement. Measured on a 2-vCPU VM
//! over 21 processes of five sessions each: the 22 µs mlp on tract varied by 1.0 % (sd) between
//! the sessions of one process, and the processes' means by 1.6 %, where those sessions predict
//! 0.45 %.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use chipbench_core::result::CellResult;
use chipbench_runner::{FreshSession, MeasureSettings, Sweep};

use crate::child;
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

/// Measures each cell, and each further session, in a `chipbench worker` child of its own,
/// killed past `timeout`.
pub struct FreshProcess {
    /// The chipbench binary.
    pub exe: PathBuf,
    pub context: JobContext,
    pub timeout: Duration,
}

impl FreshProcess {
    fn ask(&self, request: Message, what: &str) -> Result<Message, String> {
        let mut command = Command::new(&self.exe);
        command.arg("worker");
        child::converse(command, &[request], Some(self.timeout))
            .map_err(|e| format!("cannot run {} worker: {e}", self.exe.display()))?
            .reply(what, Some(self.timeout))
    }
}

impl Executor for FreshProcess {
    fn measure(&mut self, cell: &Cell, settings: &MeasureSettings) -> CellResult {
        let job = Job::new(cell, settings, &self.context);
        match self.ask(Message::MeasureCell(Box::new(job)), "the cell's process") {
            Ok(Message::Cell { cell, .. }) => *cell,
            Ok(_) => cell.failed("the cell's process answered something else than a cell".into()),
            Err(reason) => cell.failed(reason),
        }
    }

    fn rounds(&self) -> Option<&'static str> {
        Some("in a process of its own each, in rounds over all the run's cells")
    }

    fn further_session(
        &mut self,
        cell: &Cell,
        settings: &MeasureSettings,
    ) -> Result<FreshSession, String> {
        let job = Job::new(cell, settings, &self.context).without_energy();
        match self.ask(
            Message::FurtherSession(Box::new(job)),
            "the session's process",
        )? {
            Message::Session(session) => Ok(session),
            _ => Err("the session's process answered something else than a session".into()),
        }
    }
}

impl Cell<'_> {
    /// This cell failed before it measured anything (its process died, timed out or could not
    /// start), with the reason.
    pub fn failed(&self, reason: String) -> CellResult {
        self.target.failed_cell(self.model, self.threads, reason)
    }
}
