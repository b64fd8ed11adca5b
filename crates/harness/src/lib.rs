//! Runs a plan: every cell of a run, through an [`Executor`] (in this process, a fresh process
//! per cell, or a constrained one), journaled as each finishes, then the further sessions in
//! rounds over every cell, with host speed checks between cells. Resumes a stopped run from its
//! plan and journal. Knows backends only as `dyn Backend` (the CLI builds the registry).
//!
//! In the spirit of MLPerf LoadGen's `StartTest(sut, qsl, settings)`: the CLI hands [`run`] the
//! plan's work, the settings and an executor, and renders what comes back.

pub mod child;
pub mod constrained;
pub mod executor;
pub mod journal;
pub mod memory;
pub mod merge;
pub mod paired;
pub mod plan;
pub mod protocol;
pub mod remote;
pub mod scenario;
pub mod shard;
pub mod ssh;
pub mod targets;
pub mod worker;

use std::sync::atomic::Ordering;

use chipbench_core::result::{CellResult, PeakQps, SpeedCheck, Status};
use chipbench_probe::speed::SpeedProbe;
use chipbench_runner::MeasureSettings;
use chipbench_runner::measure::INTERRUPTED;

pub use constrained::Constrained;
pub use executor::{Executor, FreshProcess, InProcess};
pub use journal::{Journal, JournalError};
pub use plan::{Cell, Plan, PlannedCell, Prepared, Resumed, Unavailable, Work};

/// What the run hears about its progress. Every method does nothing by default.
pub trait Observer {
    fn cell_started(&mut self, _cell: &PlannedCell) {}
    /// A measured cell, before it is journaled (the CLI adds the host's roofline bound).
    fn cell_measured(&mut self, _cell: &mut CellResult) {}
    fn cell_done(&mut self) {}
    /// Further sessions follow: `sessions` of them, in `rounds` rounds.
    fn rounds_started(&mut self, _sessions: usize, _rounds: usize) {}
    fn round_started(&mut self, _round: usize, _rounds: usize) {}
    fn session_done(&mut self) {}
}

/// The cells of a run, in plan order, and the host speed checks made between them.
pub struct Measured {
    pub cells: Vec<CellResult>,
    pub speed_checks: Vec<SpeedCheck>,
    /// What each `--find-peak` search found.
    pub peaks: Vec<PeakQps>,
}

/// Records every planned cell (a resumed run's finished ones from its journal), then measures
/// the further sessions in rounds over every cell, so that a cell's sessions span the run
/// rather than one moment of it (a slow phase of the host then shows as spread, not as the
/// cell's speed). A Ctrl-C (`INTERRUPTED`) ends it after the cell in flight. Only a journal
/// that cannot be written is an error.
pub fn run(
    work: &[Work],
    settings: &MeasureSettings,
    executor: &mut dyn Executor,
    journal: &mut Journal,
    mut resumed: Option<&mut Resumed>,
    observer: &mut dyn Observer,
) -> Result<Measured, JournalError> {
    let is_resumed = resumed.is_some();
    let mut speed = SpeedProbe::new();
    let mut speed_checks = vec![speed.check(0)];
    let mut cells: Vec<CellResult> = Vec::with_capacity(work.len());
    // Cells whose further sessions the rounds measure: (index in `cells`, the cell).
    let mut in_rounds = Vec::new();
    let mut peaks = Vec::new();
    let rounds_how = executor.rounds();
    for w in work {
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
        observer.cell_started(&w.cell);
        if let Some(cell) = w.measure.as_ref().filter(|c| c.is_search()) {
            // Its probes are cells the plan could not list: recorded as they are decided.
            let mut record = |probe: &Cell| -> Result<scenario::search::Recorded, JournalError> {
                if INTERRUPTED.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let id = scenario::search::next_id(probe, &cells);
                let result = match resumed.as_deref_mut().and_then(|r| r.take(&id)) {
                    Some(done) => done,
                    None => {
                        let mut result = executor.measure(probe, settings);
                        observer.cell_measured(&mut result);
                        result.resumed = is_resumed;
                        journal.append(&result)?;
                        speed_checks.push(speed.check(cells.len() + 1));
                        result
                    }
                };
                cells.push(result.clone());
                Ok(Some((id, result)))
            };
            peaks.extend(scenario::search::searches(cell, &mut record)?);
            observer.cell_done();
            continue;
        }
        if let Some(done) = resumed.as_deref_mut().and_then(|r| r.take(&w.cell.id)) {
            // Its further sessions were not journaled: they run again in the rounds.
            if let (Some(cell), Status::Ok, Some(_)) = (&w.measure, done.status, rounds_how)
                && cell.scenario.is_none()
            {
                in_rounds.push((cells.len(), *cell));
            }
            cells.push(done);
            observer.cell_done();
            continue;
        }
        let cell = match (&w.measure, w.cell.not_run_cell()) {
            (Some(cell), _) => {
                let mut result = executor.measure(cell, settings);
                observer.cell_measured(&mut result);
                // Further sessions time single-stream medians; a load-generator cell's spread
                // comes from its throughput windows instead.
                if rounds_how.is_some() && cell.scenario.is_none() {
                    in_rounds.push((cells.len(), *cell));
                }
                result
            }
            (None, Some(result)) => result,
            (None, None) => unreachable!("a planned cell is measured or recorded as not run"),
        };
        let checked = cell.status != Status::Skipped;
        let mut cell = cell;
        cell.resumed = is_resumed;
        journal.append(&cell)?;
        cells.push(cell);
        if checked {
            speed_checks.push(speed.check(cells.len()));
        }
        observer.cell_done();
    }
    if let Some(how) = rounds_how {
        further_sessions(&mut cells, &in_rounds, settings, executor, how, observer);
    }
    Ok(Measured {
        cells,
        speed_checks,
        peaks,
    })
}

fn further_sessions(
    cells: &mut [CellResult],
    in_rounds: &[(usize, Cell)],
    settings: &MeasureSettings,
    executor: &mut dyn Executor,
    how: &str,
    observer: &mut dyn Observer,
) {
    let rounds = settings.sessions.saturating_sub(1);
    let mut stopped = vec![false; cells.len()];
    observer.rounds_started(in_rounds.len() * rounds, rounds);
    for round in 1..=rounds {
        observer.round_started(round, rounds);
        for (index, cell) in in_rounds {
            if INTERRUPTED.load(Ordering::Relaxed) {
                executor.round_ended();
                return;
            }
            observer.session_done();
            if stopped[*index] || cells[*index].status != Status::Ok {
                continue;
            }
            let session = executor.further_session(cell, settings);
            stopped[*index] =
                !chipbench_runner::record_session(settings, &mut cells[*index], session, how);
        }
        executor.round_ended();
    }
}
