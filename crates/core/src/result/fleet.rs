//! A fleet run's records (`bench --plan`, `chipbench merge`): which shard of which plan a run
//! measured, the hosts of a merged run, and how it was merged.

use serde::{Deserialize, Serialize};

use super::{Host, IdleBaseline, SpeedCheck};

/// Which shard of which plan a run measured, and where that choice came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// The plan's id (the SHA-256 of its cells, split and routes).
    pub plan_id: String,
    /// Counted from 0.
    pub index: usize,
    pub count: usize,
    /// The routing label whose cells this shard measured; `None`: the unrouted cells.
    pub pool: Option<String>,
    /// This host's label (`--host-label`, `CHIPBENCH_HOST_LABEL`).
    pub host_label: Option<String>,
    /// `--shard`, `SLURM_ARRAY_TASK_ID`, `JOB_COMPLETION_INDEX` or `plan` (a plan of one shard).
    pub source: String,
}

/// One host of a fleet run: a shard run merged into it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetHost {
    /// What the cells' `host` names: the shard run's id.
    pub id: String,
    /// The host label the shard ran with, or else its hostname.
    pub label: String,
    pub host: Host,
    pub shard: Option<ShardRecord>,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The shard run was stopped before all its cells were measured.
    pub interrupted: bool,
    pub tool_version: String,
    /// The shard run's own idle power and speed checks, which belong to its host.
    pub idle_baseline: Option<IdleBaseline>,
    pub speed_checks: Vec<SpeedCheck>,
}

/// How a fleet run was put together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetRecord {
    pub plan_id: String,
    pub planned_cells: usize,
    /// Planned cells that no shard delivered, by cell id.
    pub missing: Vec<String>,
    /// Cells two shards delivered, kept from the newest run (`merge --prefer newest`).
    pub replaced: Vec<String>,
}
