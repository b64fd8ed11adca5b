//! Scenarios (MLPerf LoadGen's): how queries reach the system under test and what the figure of
//! a cell is. Single-stream is the runner's timed loop; offline, server and multi-stream are
//! driven here by a load generator over a pool of workers, on the real clock in a run and on a
//! virtual one in tests.
//!
//! - [`arrivals`]: when queries are scheduled (all at once, Poisson, fixed interval, after the
//!   previous one).
//! - [`driver`]: the generator, the queue and the workers; latency from the scheduled arrival.
//! - [`figures`]: throughput with its CI, latency, wait and lateness distributions.
//! - [`verdict`]: MLPerf's early-stopping verdict on a latency bound.
//! - [`peak`]: the highest VALID query rate, by bracketing and bisection.
//! - [`search`]: `--find-peak` in a run, each probe a cell of its own.
//! - [`pool`]: worker threads, each with a session of its own, on the real clock.
//! - [`cell`]: a cell measured through a scenario with real sessions, one per worker.
//! - [`generate`]: a decoder's requests one after another; [`generate_served`]: arriving as a
//!   Poisson process over a pool of sessions, with verdicts on TTFT and TPOT bounds.
//! - [`settings`]: a scenario cell's settings, checked before any cell runs.

pub mod arrivals;
pub mod cell;
pub mod clock;
pub mod driver;
pub mod figures;
pub mod generate;
pub mod generate_served;
pub mod peak;
pub mod pool;
pub mod search;
pub mod settings;
pub mod verdict;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use chipbench_core::result::ScenarioRun;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use chipbench_energy::{Closed, EnergyPlan, GpuWork, OpenEnergy, Work};
use chipbench_runner::resources::process_cpu_time;
use driver::QueryRecord;
use figures::{Workers, scenario_run};
use pool::{MakeServer, with_pool};
use settings::ScenarioSettings;

/// How queries reach the system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// One sample at a time, the next when the previous ends; the figure is latency.
    SingleStream,
    /// Every sample available at once; the figure is throughput.
    Offline,
    /// Queries arriving as a Poisson process; the figure is the rate served within a latency
    /// bound.
    Server,
    /// Queries of several samples, one after another or at a fixed interval; the figure is the
    /// p99 of query latency.
    MultiStream,
    /// A decoder's requests: a prefill, then greedy decode steps with the KV cache fed back; the
    /// figures are time to first token, time per output token and tokens per second.
    Generate,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::SingleStream,
        Scenario::Offline,
        Scenario::Server,
        Scenario::MultiStream,
        Scenario::Generate,
    ];

    /// The name on the command line, in cell ids and in `run.json`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::SingleStream => "single-stream",
            Scenario::Offline => "offline",
            Scenario::Server => "server",
            Scenario::MultiStream => "multi-stream",
            Scenario::Generate => "generate",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|c| c.name()).collect();
                format!("unknown scenario '{s}' (one of: {})", names.join(", "))
            })
    }
}

/// A scenario's run on the real clock.
pub struct Measured {
    pub run: ScenarioRun,
    /// Each query's latency from its scheduled arrival, ms, in the order issued.
    pub latencies_ms: Vec<f64>,
    /// CPU time of the whole process while the generator ran (every worker), where readable.
    pub cpu_time: Option<Duration>,
    /// Energy over the generator's run, per sample served; the error when a meter failed;
    /// `None` without an energy plan.
    pub energy: Option<Result<Closed, String>>,
}

/// What an energy window over a scenario's run needs to know of the cell.
#[derive(Clone, Copy)]
pub struct EnergyOf<'a> {
    pub plan: &'a EnergyPlan,
    /// The GPU the cell runs on (its name), if it runs on one.
    pub gpu: Option<&'a str>,
}

/// Drives a cell's scenario on the real clock: `workers.concurrency` threads, each serving with
/// the server `make` gives it (a model bound to `batch` samples per inference), under `settings`
/// (already checked), with an energy window over the run where `energy` has a plan. The error is
/// the first server that could not be made or the first inference that failed.
pub fn measure(
    settings: &ScenarioSettings,
    batch: usize,
    make: &MakeServer<'_>,
    workers: &Workers,
    energy: Option<EnergyOf<'_>>,
) -> Result<Measured, String> {
    let load = settings.load(batch);
    let (records, cpu_time, energy) = with_pool(workers.concurrency, make, |pool| {
        // The clock starts once every server is ready: loading and warm-up are not the run's.
        let clock = pool.restart_clock();
        let cpu_before = process_cpu_time();
        let window = energy.map(|e| e.plan.open().map_err(|e| e.to_string()));
        let records = driver::drive(&load, pool, &clock)?;
        let cpu_time = cpu_before
            .zip(process_cpu_time())
            .map(|(b, a)| a.saturating_sub(b));
        let closed = window
            .zip(energy)
            .map(|(window, of)| window.and_then(|open| close_energy(open, &records, cpu_time, of)));
        Ok::<_, String>((records, cpu_time, closed))
    })??;
    let run = scenario_run(&records, &load, workers, settings.latency_bound.as_ref())
        .ok_or_else(|| "no query completed".to_string())?;
    Ok(Measured {
        run,
        latencies_ms: records
            .iter()
            .map(|r| r.latency().as_secs_f64() * 1e3)
            .collect(),
        cpu_time,
        energy,
    })
}

/// Closes the window over a run: the energy of every sample served (each counts as one of the
/// record's `inferences`), from the meters and, for what they do not cover, the estimate from
/// the process's CPU time over the run (every worker) and the GPU's busy time.
fn close_energy(
    open: OpenEnergy<'_>,
    records: &[QueryRecord],
    cpu_time: Option<Duration>,
    of: EnergyOf<'_>,
) -> Result<Closed, String> {
    let window = open.elapsed();
    let gpu = of.gpu.map(|device| GpuWork {
        device: device.to_string(),
        busy: records
            .iter()
            .map(|r| r.finished.saturating_sub(r.started))
            .sum::<Duration>()
            .min(window),
        basis: "the workers' host time per query (its first inference's start to its last's \
                end), an upper bound on GPU busy time, at most the window"
            .into(),
    });
    let work = Work {
        inferences: records.iter().map(|r| r.samples as u64).sum(),
        cpu_time,
        gpu,
    };
    let mut closed = open.close(&work).map_err(|e| e.to_string())?;
    closed.provenance.push_str(
        "; the window spans the load generator's run (every worker, from the first issue to the \
         last end), and joules_per_inference and inferences count samples served: energy per \
         sample",
    );
    let min_window = of.plan.min_window();
    if window < min_window {
        closed.provenance.push_str(&format!(
            "; the run lasted {} ms, shorter than the {} ms the slowest sensor needs: its figures \
             are coarse (--min-query-duration lengthens the run)",
            window.as_millis(),
            min_window.as_millis()
        ));
    }
    Ok(closed)
}
