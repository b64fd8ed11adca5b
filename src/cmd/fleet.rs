//! The fleet side of `bench` and `plan`: the options (`--plan`, `--shard`, `--shards`, `--on`,
//! `--host-label`, `--models-dir`), the writing of a fleet plan, and one host's part of a plan
//! (`bench --plan`).

use std::path::{Path, PathBuf};

use chipbench_core::result::Status;
use chipbench_harness::Unavailable;
use chipbench_harness::plan::{PlannedCell, Work};
use chipbench_harness::shard::{self, FleetPlan, Route, ShardChoice, ShardCounts, short};
use clap::Args;

use crate::{Outcome, UsageError};

/// The fleet options of `bench` (and `plan`).
#[derive(Args, Debug, Default)]
pub struct FleetArgs {
    /// Measure one shard of a plan made by `chipbench plan`: the plan's options are used, this
    /// command line adds only where results go (--out, --json, --quiet, the history) and this
    /// host's engines, suite and models folder.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// The shard to measure, K/N with K from 0 (default: from SLURM_ARRAY_TASK_ID and
    /// SLURM_ARRAY_TASK_COUNT, else from JOB_COMPLETION_INDEX with --shards).
    #[arg(long, value_name = "K/N", requires = "plan")]
    pub shard: Option<String>,
    /// plan: the number of shards, N for every pool of cells or LABEL=N for those routed to a
    /// label (repeatable); bench --plan: the number of shards of a Kubernetes Indexed Job
    /// (default: $CHIPBENCH_SHARDS).
    #[arg(long, value_name = "N|LABEL=N")]
    pub shards: Vec<String>,
    /// plan: send the cells of a backend (and device) to the hosts labelled LABEL (repeatable),
    /// e.g. --on h100=ort:cuda --on pi=tract.
    #[arg(long = "on", value_name = "LABEL=BACKEND[:DEVICE]")]
    pub on: Vec<String>,
    /// This host's label: with --plan it measures the cells routed to its label, or else the
    /// unrouted ones (default: $CHIPBENCH_HOST_LABEL).
    #[arg(long, value_name = "LABEL")]
    pub host_label: Option<String>,
    /// With --plan: the folder holding the plan's own model files (by file name) when they are
    /// not at the planning host's paths; each is checked by its SHA-256.
    #[arg(long, value_name = "DIR", requires = "plan")]
    pub models_dir: Option<PathBuf>,
}

impl FleetArgs {
    fn shards_given(&self) -> Vec<String> {
        if self.shards.is_empty() {
            std::env::var("CHIPBENCH_SHARDS").into_iter().collect()
        } else {
            self.shards.clone()
        }
    }

    fn host_label(&self) -> Option<String> {
        self.host_label
            .clone()
            .or_else(|| std::env::var("CHIPBENCH_HOST_LABEL").ok())
            .filter(|l| !l.is_empty())
    }

    /// A `--model` of the plan as this host finds it: a path that is not here, looked for by
    /// file name under --models-dir.
    pub fn relocate(&self, model: String) -> String {
        let Some(dir) = &self.models_dir else {
            return model;
        };
        let path = Path::new(&model);
        let is_path = model.contains('/') || model.ends_with(".onnx");
        match path.file_name() {
            Some(name) if is_path && !path.exists() => dir.join(name).display().to_string(),
            _ => model,
        }
    }
}

/// Writes the plan of `cells` (what `bench` would run with these options) to `output`.
pub fn write(
    cells: Vec<PlannedCell>,
    argv: Vec<String>,
    fleet: &FleetArgs,
    threads_fixed: bool,
    output: &Path,
    talk: bool,
) -> anyhow::Result<Outcome> {
    let routes = fleet
        .on
        .iter()
        .map(|r| Route::parse(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(UsageError)?;
    let counts = ShardCounts::parse(&fleet.shards_given()).map_err(UsageError)?;
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let plan = FleetPlan::new(cells, argv, threads_fixed, routes, &counts, created)
        .map_err(|e| UsageError(e.to_string()))?;
    plan.write(output)
        .map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
    if talk {
        println!(
            "plan {}: {} cells of {} models -> {}",
            short(&plan.id),
            plan.cells.len(),
            plan.models.len(),
            output.display()
        );
        for (pool, &n) in &plan.shards {
            let who = if pool == shard::UNROUTED {
                "unrouted cells (any host)".to_string()
            } else {
                format!("hosts labelled '{pool}'")
            };
            let pool = (pool != shard::UNROUTED).then_some(pool.as_str());
            let sizes: Vec<String> = (0..n)
                .map(|k| plan.shard_cells(pool, k).count().to_string())
                .collect();
            println!("  {who}: {n} shards of {} cells", sizes.join(", "));
        }
    }
    Ok(Outcome::Success)
}

/// One host's part of a plan: `bench --plan`.
pub struct Node {
    pub plan: FleetPlan,
    pub choice: ShardChoice,
    pub pool: Option<String>,
    pub label: Option<String>,
}

impl Node {
    /// Reads the plan and picks this host's pool (by its label) and shard.
    pub fn prepare(path: &Path, fleet: &FleetArgs) -> Result<Node, UsageError> {
        let plan = FleetPlan::load(path).map_err(|e| UsageError(e.to_string()))?;
        if !fleet.on.is_empty() {
            return Err(UsageError(
                "--on routes the cells of a plan: give it to `chipbench plan`".into(),
            ));
        }
        let label = fleet.host_label();
        let pool = plan.pool_for(label.as_deref());
        let planned = plan.shard_count(pool.as_deref());
        let shards = match fleet.shards_given().as_slice() {
            [] => None,
            [n] => Some(n.parse::<usize>().map_err(|_| {
                UsageError(format!(
                    "--shards '{n}' (or CHIPBENCH_SHARDS): expected the number of shards"
                ))
            })?),
            _ => {
                return Err(UsageError(
                    "--shards is given once to `bench --plan` (the Job's completions)".into(),
                ));
            }
        };
        if planned == 0 {
            return Err(UsageError(format!(
                "{}: the plan has no cells for this host ({})",
                path.display(),
                match &label {
                    Some(l) => format!("label '{l}', and no unrouted cells"),
                    None => "no --host-label, and no unrouted cells".into(),
                }
            )));
        }
        let choice = shard::choose(fleet.shard.as_deref(), shards, planned, |name| {
            std::env::var(name).ok()
        })
        .map_err(|e| UsageError(e.to_string()))?;
        Ok(Node {
            plan,
            choice,
            pool,
            label,
        })
    }

    /// This host's work: its shard's cells, those it cannot run here recorded as skipped with
    /// the reason (and the route that sent them here).
    pub fn select<'a>(&self, here: Vec<Work<'a>>, unavailable: &[Unavailable]) -> Vec<Work<'a>> {
        let host = match &self.label {
            Some(l) => format!("this host (label '{l}')"),
            None => "this host".to_string(),
        };
        let unavailable_here = |cell: &PlannedCell| {
            let (name, device) = (&cell.backend.name, &cell.backend.device);
            let reason = unavailable
                .iter()
                .find(|u| u.label == format!("{name}:{device}") || u.label == *name)
                .map_or_else(String::new, |u| format!(": {}", u.reason));
            format!("{name}:{device} is not available on {host}{reason}")
        };
        let mut work = self.plan.select(
            here,
            self.pool.as_deref(),
            self.choice.index,
            unavailable_here,
        );
        if let Some(route) = &self.pool {
            for w in work.iter_mut().filter(|w| w.measure.is_none()) {
                let here = unavailable_here(&w.cell);
                if let Some(n) = w
                    .cell
                    .not_run
                    .as_mut()
                    .filter(|n| n.status == Status::Skipped)
                {
                    let reason = if n.reason.contains(&host) {
                        &n.reason
                    } else {
                        &here
                    };
                    n.reason = format!("routed to '{route}', but {reason}");
                }
            }
        }
        work
    }

    /// `shard 1/4 of plan 3fa9...: 12 cells (from SLURM_ARRAY_TASK_ID)`.
    pub fn describe(&self, cells: usize) -> String {
        let pool = self
            .pool
            .as_ref()
            .map_or_else(String::new, |p| format!(" ('{p}' cells)"));
        format!(
            "shard {}/{}{pool} of plan {}: {cells} cells (from {})",
            self.choice.index,
            self.choice.count,
            short(&self.plan.id),
            self.choice.source
        )
    }
}
