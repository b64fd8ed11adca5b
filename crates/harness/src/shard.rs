//! A fleet plan (`chipbench plan`): the cells of one `bench` command line, routed to host labels
//! and split into shards once, so that every machine of a fleet reads its part from the same file
//! and none computes a split of its own; and the choice of a machine's shard, from `--shard` or
//! the scheduler's environment (Slurm job arrays, Kubernetes Indexed Jobs).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chipbench_core::result::{BackendRecord, ModelRecord, ShardRecord, Status};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plan::{NotRun, PlannedCell, Work, cell_id, number_repeats, scenario_label};

/// The `schema` of a fleet plan file.
pub const FLEET_PLAN_SCHEMA: &str = "chipbench.plan/1";

/// The copy of the fleet plan a shard's run folder keeps, which `merge` reads.
pub const FLEET_PLAN_FILE: &str = "fleet-plan.json";

/// What a cell costs the shard that measures it, in MACs: its model's MACs per inference, plus
/// this much for what every cell spends whatever its model (loading the session, the warm-up,
/// the minimum duration of the timed loop), so that cells of tiny or unknown models still count.
const CELL_OVERHEAD_MACS: u64 = 100_000_000;

/// Cells of one backend (and device) sent to the hosts of one label: `--on LABEL=BACKEND[:DEVICE]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub label: String,
    pub backend: String,
    /// `None`: every device of the backend.
    pub device: Option<String>,
}

impl Route {
    pub fn parse(text: &str) -> Result<Route, String> {
        let bad = |why: &str| format!("--on '{text}': {why}, e.g. --on h100=ort:cuda");
        let (label, target) = text
            .split_once('=')
            .ok_or_else(|| bad("expected LABEL=BACKEND[:DEVICE]"))?;
        let (backend, device) = match target.split_once(':') {
            Some((b, d)) => (b, Some(d.to_string())),
            None => (target, None),
        };
        if label.is_empty() || backend.is_empty() || device.as_deref() == Some("") {
            return Err(bad("the label, backend and device cannot be empty"));
        }
        Ok(Route {
            label: label.into(),
            backend: backend.into(),
            device,
        })
    }

    fn matches(&self, backend: &BackendRecord) -> bool {
        self.backend == backend.name && self.device.as_ref().is_none_or(|d| *d == backend.device)
    }
}

/// A source model of the plan: every node must find a file of this hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedModel {
    pub name: String,
    /// Where the planning host found it.
    pub path: String,
    pub sha256: String,
}

/// A planned cell, the label it is routed to, and its shard among that label's shards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetCell {
    #[serde(flatten)]
    pub cell: PlannedCell,
    /// `None`: any host may measure it (the shards of the unrouted cells).
    pub route: Option<String>,
    pub shard: usize,
}

/// `plan.json` of `chipbench plan`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FleetPlan {
    pub schema: String,
    /// The SHA-256 of everything below but the time: two plans of one id measure the same cells
    /// split the same way.
    pub id: String,
    pub tool_version: String,
    pub created_at: String,
    /// The `bench` options every node runs the cells with.
    pub argv: Vec<String>,
    /// Whether `--threads` fixed the thread counts; if not, each host uses its own default and
    /// cells are matched to the plan without their thread count (ids end in `/tdefault`).
    pub threads_fixed: bool,
    pub routes: Vec<Route>,
    /// Shards per label (`None`: the unrouted cells).
    pub shards: BTreeMap<String, usize>,
    pub models: Vec<PlannedModel>,
    pub cells: Vec<FleetCell>,
}

/// The key of [`FleetPlan::shards`] for the unrouted cells.
pub const UNROUTED: &str = "";

/// How many shards each pool of cells is split into: `--shards N` for all, `--shards LABEL=N`
/// for one label's.
#[derive(Clone, Debug, Default)]
pub struct ShardCounts {
    pub default: Option<usize>,
    pub per_label: BTreeMap<String, usize>,
}

impl ShardCounts {
    pub fn parse(values: &[String]) -> Result<ShardCounts, String> {
        let mut counts = ShardCounts::default();
        for value in values {
            let (label, n) = match value.split_once('=') {
                Some((label, n)) => (Some(label), n),
                None => (None, value.as_str()),
            };
            let n: usize = n.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                format!("--shards '{value}': expected N or LABEL=N, N at least 1")
            })?;
            match label {
                Some(label) => {
                    counts.per_label.insert(label.to_string(), n);
                }
                None => counts.default = Some(n),
            }
        }
        Ok(counts)
    }

    fn of(&self, label: &str) -> usize {
        self.per_label
            .get(label)
            .copied()
            .or(self.default)
            .unwrap_or(1)
    }
}

/// Why a fleet plan cannot be made, read or run here.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FleetError(pub String);

impl FleetPlan {
    /// Routes every cell, splits each label's cells into its shards, and names the result.
    pub fn new(
        cells: Vec<PlannedCell>,
        argv: Vec<String>,
        threads_fixed: bool,
        routes: Vec<Route>,
        counts: &ShardCounts,
        created_at: String,
    ) -> Result<FleetPlan, FleetError> {
        if let Some(label) = counts
            .per_label
            .keys()
            .find(|l| !routes.iter().any(|r| r.label == **l))
        {
            return Err(FleetError(format!(
                "--shards {label}=N: no --on routes cells to the label '{label}'"
            )));
        }
        let route_of: Vec<Option<String>> = cells
            .iter()
            .map(|c| {
                routes
                    .iter()
                    .find(|r| r.matches(&c.backend))
                    .map(|r| r.label.clone())
            })
            .collect();
        let mut shards = BTreeMap::new();
        for label in route_of.iter().map(|r| r.as_deref().unwrap_or(UNROUTED)) {
            shards.insert(label.to_string(), counts.of(label));
        }
        let assignment = split(&cells, &route_of, &shards);
        let mut models: Vec<PlannedModel> = Vec::new();
        for c in cells.iter().filter(|c| c.model.recipe.is_none()) {
            if !models
                .iter()
                .any(|m| m.name == c.model.name && m.sha256 == c.model.sha256)
            {
                models.push(PlannedModel {
                    name: c.model.name.clone(),
                    path: c.model.path.clone(),
                    sha256: c.model.sha256.clone(),
                });
            }
        }
        let cells = cells
            .into_iter()
            .zip(route_of)
            .zip(assignment)
            .map(|((cell, route), shard)| FleetCell { cell, route, shard })
            .collect();
        let mut plan = FleetPlan {
            schema: FLEET_PLAN_SCHEMA.into(),
            id: String::new(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            created_at,
            argv,
            threads_fixed,
            routes,
            shards,
            models,
            cells,
        };
        plan.id = plan.digest();
        Ok(plan)
    }

    fn digest(&self) -> String {
        let named = serde_json::to_vec(&(
            &self.argv,
            self.threads_fixed,
            &self.routes,
            &self.shards,
            &self.models,
            &self.cells,
        ))
        .expect("a plan serialises");
        let hash = Sha256::digest(&named);
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn write(&self, path: &Path) -> Result<(), FleetError> {
        let bytes = serde_json::to_vec_pretty(self).expect("a plan serialises");
        crate::journal::write_atomically(path, &bytes)
            .map_err(|e| FleetError(format!("cannot write the plan: {e}")))
    }

    /// Reads a plan, refusing another kind of file and a plan edited since it was made.
    pub fn load(path: &Path) -> Result<FleetPlan, FleetError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| FleetError(format!("{}: cannot read the plan: {e}", path.display())))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| FleetError(format!("{}: not a chipbench plan: {e}", path.display())))?;
        let schema = value
            .get("schema")
            .and_then(|s| s.as_str())
            .unwrap_or("none");
        if schema != FLEET_PLAN_SCHEMA {
            return Err(FleetError(format!(
                "{}: not a chipbench plan: schema '{schema}', expected '{FLEET_PLAN_SCHEMA}' \
                 (written by `chipbench plan`)",
                path.display()
            )));
        }
        let plan: FleetPlan = serde_json::from_value(value)
            .map_err(|e| FleetError(format!("{}: not a chipbench plan: {e}", path.display())))?;
        if plan.digest() != plan.id {
            return Err(FleetError(format!(
                "{}: its cells no longer match its id {} (edited by hand?); make it again with \
                 `chipbench plan`",
                path.display(),
                plan.id
            )));
        }
        Ok(plan)
    }

    /// The pool a host measures: its label's cells when the plan routes cells to it, else the
    /// unrouted ones.
    pub fn pool_for(&self, host_label: Option<&str>) -> Option<String> {
        host_label
            .filter(|l| self.routes.iter().any(|r| r.label == *l))
            .map(str::to_string)
    }

    /// The number of shards of a pool (0 when the plan has no cells for it).
    pub fn shard_count(&self, pool: Option<&str>) -> usize {
        self.shards
            .get(pool.unwrap_or(UNROUTED))
            .copied()
            .unwrap_or(0)
    }

    /// The plan's cells of one shard, in plan order.
    pub fn shard_cells<'p>(
        &'p self,
        pool: Option<&'p str>,
        index: usize,
    ) -> impl Iterator<Item = &'p FleetCell> + 'p {
        self.cells
            .iter()
            .filter(move |c| c.route.as_deref() == pool && c.shard == index)
    }

    /// The keys by which this plan matches the cells a host plans or records (see [`keys`]).
    pub fn keys(&self) -> Vec<String> {
        keys(
            self.cells
                .iter()
                .map(|c| (&c.cell.model, &c.cell.backend, scenario_of(&c.cell))),
            self.threads_fixed,
        )
    }

    /// Refuses models whose files here differ from the plan's: a source model of the same name
    /// with another hash, naming the file.
    pub fn check_models<'m>(
        &self,
        here: impl Iterator<Item = &'m ModelRecord>,
    ) -> Result<(), FleetError> {
        for model in here.filter(|m| m.recipe.is_none()) {
            let planned: Vec<&PlannedModel> = self
                .models
                .iter()
                .filter(|p| p.name == model.name)
                .collect();
            if !planned.is_empty() && !planned.iter().any(|p| p.sha256 == model.sha256) {
                return Err(FleetError(format!(
                    "model {}: {} has sha256 {}, but plan {} was made with {} (sha256 {}); \
                     give this host the same file (at the same path or under --models-dir)",
                    model.name,
                    model.path,
                    model.sha256,
                    short(&self.id),
                    planned[0].path,
                    planned[0].sha256
                )));
            }
        }
        Ok(())
    }

    /// This host's work for one shard: for each of the shard's cells, the cell as this host
    /// planned it (from the same options), or, where this host has no such cell (its backend or
    /// device is missing here), the plan's cell recorded as skipped with `why`'s reason.
    pub fn select<'a>(
        &self,
        here: Vec<Work<'a>>,
        pool: Option<&str>,
        index: usize,
        why: impl Fn(&PlannedCell) -> String,
    ) -> Vec<Work<'a>> {
        let here_keys = keys(
            here.iter()
                .map(|w| (&w.cell.model, &w.cell.backend, scenario_of(&w.cell))),
            self.threads_fixed,
        );
        let mut by_key: HashMap<String, Work<'a>> = here_keys.into_iter().zip(here).collect();
        self.keys()
            .into_iter()
            .zip(&self.cells)
            .filter(|(_, c)| c.route.as_deref() == pool && c.shard == index)
            .map(|(key, c)| {
                by_key.remove(&key).unwrap_or_else(|| {
                    let mut cell = c.cell.clone();
                    cell.not_run = Some(NotRun {
                        status: Status::Skipped,
                        reason: why(&cell),
                    });
                    Work {
                        cell,
                        measure: None,
                    }
                })
            })
            .collect()
    }
}

/// The first 12 hex digits of a plan id, as messages show it.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn scenario_of(cell: &PlannedCell) -> String {
    scenario_label(cell.scenario.as_ref())
}

/// The keys that match a host's cells to a plan's: their ids, without the thread count when the
/// plan left it to each host (`tdefault`), numbered in order where they repeat.
pub fn keys<'c>(
    cells: impl Iterator<Item = (&'c ModelRecord, &'c BackendRecord, String)>,
    threads_fixed: bool,
) -> Vec<String> {
    let mut keys: Vec<String> = cells
        .map(|(model, backend, scenario)| {
            if threads_fixed {
                cell_id(model, backend, &scenario)
            } else {
                let any_threads = BackendRecord {
                    threads: None,
                    ..backend.clone()
                };
                cell_id(model, &any_threads, &scenario)
            }
        })
        .collect();
    number_repeats(keys.iter_mut());
    keys
}

/// The shard of each cell within its pool: the cells of one model and backend stay together (a
/// model loads once per shard), and the groups go, heaviest first, to the least loaded shard
/// (ties to the lowest index). Only the cells and their order decide it: no hash seed, clock or
/// file order, so every machine that reads the plan agrees.
fn split(
    cells: &[PlannedCell],
    route_of: &[Option<String>],
    shards: &BTreeMap<String, usize>,
) -> Vec<usize> {
    // Groups by pool, in order of first appearance: (pool, group key) -> (cost, cell indices).
    let mut groups: Vec<(String, u128, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<(String, String), usize> = HashMap::new();
    for (i, (cell, route)) in cells.iter().zip(route_of).enumerate() {
        let pool = route.as_deref().unwrap_or(UNROUTED).to_string();
        let key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
            cell.model.name,
            cell.model.variant,
            cell.model.sha256,
            cell.backend.name,
            cell.backend.device
        );
        let g = *group_of.entry((pool.clone(), key)).or_insert_with(|| {
            groups.push((pool, 0, Vec::new()));
            groups.len() - 1
        });
        groups[g].1 += u128::from(CELL_OVERHEAD_MACS + cell.model.macs.unwrap_or(0));
        groups[g].2.push(i);
    }
    let mut order: Vec<usize> = (0..groups.len()).collect();
    // Heaviest first; equal costs keep plan order (the sort is stable).
    order.sort_by(|&a, &b| groups[b].1.cmp(&groups[a].1));
    let mut load: BTreeMap<&str, Vec<u128>> = shards
        .iter()
        .map(|(pool, &n)| (pool.as_str(), vec![0; n.max(1)]))
        .collect();
    let mut assignment = vec![0; cells.len()];
    for g in order {
        let (pool, cost, members) = &groups[g];
        let loads = load.get_mut(pool.as_str()).expect("every pool has a count");
        let lightest = (0..loads.len())
            .min_by_key(|&s| (loads[s], s))
            .expect("a pool has a shard");
        loads[lightest] += cost;
        for &i in members {
            assignment[i] = lightest;
        }
    }
    assignment
}

/// A host's shard and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardChoice {
    pub index: usize,
    pub count: usize,
    /// `--shard`, `SLURM_ARRAY_TASK_ID`, `JOB_COMPLETION_INDEX` or `plan`.
    pub source: &'static str,
}

impl ShardChoice {
    pub fn record(&self, plan: &FleetPlan, pool: Option<&str>, label: Option<&str>) -> ShardRecord {
        ShardRecord {
            plan_id: plan.id.clone(),
            index: self.index,
            count: self.count,
            pool: pool.map(str::to_string),
            host_label: label.map(str::to_string),
            source: self.source.into(),
        }
    }
}

/// The shard to measure: `--shard K/N`; else a Slurm array task (`SLURM_ARRAY_TASK_ID` less
/// `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`); else a Kubernetes Indexed Job's
/// `JOB_COMPLETION_INDEX` of `shards` (`--shards`/`CHIPBENCH_SHARDS`); else the only shard of a
/// pool of one. `env` reads the environment (a map in tests). The count must be the plan's.
pub fn choose(
    explicit: Option<&str>,
    shards: Option<usize>,
    planned: usize,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ShardChoice, FleetError> {
    let number = |name: &str, text: &str| -> Result<usize, FleetError> {
        text.trim()
            .parse()
            .map_err(|_| FleetError(format!("{name}='{text}': not a whole number")))
    };
    let choice = if let Some(text) = explicit {
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| FleetError(format!("--shard '{text}': expected K/N, e.g. 0/4")))?;
        ShardChoice {
            index: number("--shard K", k)?,
            count: number("--shard N", n)?,
            source: "--shard",
        }
    } else if let Some(id) = env("SLURM_ARRAY_TASK_ID") {
        let id = number("SLURM_ARRAY_TASK_ID", &id)?;
        let min = env("SLURM_ARRAY_TASK_MIN")
            .map(|m| number("SLURM_ARRAY_TASK_MIN", &m))
            .transpose()?
            .unwrap_or(0);
        let count = env("SLURM_ARRAY_TASK_COUNT").ok_or_else(|| {
            FleetError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into())
        })?;
        ShardChoice {
            index: id.checked_sub(min).ok_or_else(|| {
                FleetError(format!(
                    "SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                ))
            })?,
            count: number("SLURM_ARRAY_TASK_COUNT", &count)?,
            source: "SLURM_ARRAY_TASK_ID",
        }
    } else if let Some(index) = env("JOB_COMPLETION_INDEX") {
        let count = shards.ok_or_else(|| {
            FleetError(
                "JOB_COMPLETION_INDEX is set: give the number of shards with --shards N or \
                 CHIPBENCH_SHARDS (the Job's completions)"
                    .into(),
            )
        })?;
        ShardChoice {
            index: number("JOB_COMPLETION_INDEX", &index)?,
            count,
            source: "JOB_COMPLETION_INDEX",
        }
    } else if planned == 1 {
        ShardChoice {
            index: 0,
            count: 1,
            source: "plan",
        }
    } else {
        return Err(FleetError(format!(
            "the plan splits this host's cells into {planned} shards: say which with --shard K/{planned}, \
             or run under a Slurm job array or a Kubernetes Indexed Job"
        )));
    };
    if choice.count != planned {
        return Err(FleetError(format!(
            "shard {}/{} (from {}): the plan splits this host's cells into {planned} shards",
            choice.index, choice.count, choice.source
        )));
    }
    if choice.index >= choice.count {
        return Err(FleetError(format!(
            "shard {}/{} (from {}): K counts from 0 and must be below N",
            choice.index, choice.count, choice.source
        )));
    }
    Ok(choice)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chipbench_core::DeviceKind;

    use super::*;

    fn cell(model: &str, macs: u64, backend: &str, device: &str, threads: usize) -> PlannedCell {
        let model = ModelRecord {
            name: model.into(),
            path: format!("{model}.onnx"),
            sha256: format!("{model}-hash"),
            variant: "fp32".into(),
            recipe: None,
            params: None,
            macs: Some(macs),
            weight_bytes: None,
            file_bytes: None,
            derivation: None,
        };
        let backend = BackendRecord {
            name: backend.into(),
            version: "1".into(),
            device: device.into(),
            device_name: device.into(),
            device_kind: DeviceKind::Cpu,
            threads: Some(threads),
            settings: BTreeMap::new(),
        };
        PlannedCell {
            id: cell_id(&model, &backend, "single-stream"),
            model,
            backend,
            scenario: None,
            not_run: None,
        }
    }

    /// 40 models of varied MACs on three backends at two thread counts: 240 cells.
    fn cells() -> Vec<PlannedCell> {
        let mut cells = Vec::new();
        for m in 0..40u64 {
            for (b, d) in [("tract", "cpu"), ("ort", "cpu"), ("wgpu", "gpu0")] {
                for t in [1, 4] {
                    cells.push(cell(
                        &format!("m{m}"),
                        (m * 7919 % 13) * 50_000_000,
                        b,
                        d,
                        t,
                    ));
                }
            }
        }
        cells
    }

    fn plan(n: usize, routes: Vec<Route>) -> FleetPlan {
        let counts = ShardCounts {
            default: Some(n),
            per_label: BTreeMap::new(),
        };
        FleetPlan::new(cells(), vec![], true, routes, &counts, "now".into()).unwrap()
    }

    #[test]
    fn shards_are_disjoint_cover_the_plan_keep_groups_together_and_never_change() {
        let all: BTreeSet<String> = cells().into_iter().map(|c| c.id).collect();
        for n in 1..=8 {
            let plan = plan(n, vec![]);
            let mut seen = BTreeSet::new();
            let mut loads = Vec::new();
            for k in 0..n {
                let shard: Vec<&FleetCell> = plan.shard_cells(None, k).collect();
                loads.push(shard.len());
                for c in &shard {
                    assert!(
                        seen.insert(c.cell.id.clone()),
                        "{} in two shards",
                        c.cell.id
                    );
                }
            }
            assert_eq!(seen, all, "N = {n}: the shards' union is the plan");
            // One model on one backend is in one shard, whatever its thread counts.
            let mut shard_of: HashMap<(String, String), usize> = HashMap::new();
            for c in &plan.cells {
                let key = (c.cell.model.name.clone(), c.cell.backend.name.clone());
                assert_eq!(*shard_of.entry(key).or_insert(c.shard), c.shard);
            }
            // Balanced: 120 groups of similar cost leave no shard with twice another's cells.
            let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
            assert!(*max <= 2 * *min, "N = {n}: shard sizes {loads:?}");
            // Deterministic: the same cells give the same split and id, made again.
            let again = super::tests::plan(n, vec![]);
            assert_eq!(again.cells, plan.cells);
            assert_eq!(again.id, plan.id);
        }
    }

    #[test]
    fn routed_cells_are_split_among_their_labels_shards_only() {
        let routes = vec![Route::parse("gpu=wgpu").unwrap()];
        let counts = ShardCounts::parse(&["2".into(), "gpu=3".into()]).unwrap();
        let plan = FleetPlan::new(cells(), vec![], true, routes, &counts, "now".into()).unwrap();
        assert_eq!(plan.shard_count(None), 2);
        assert_eq!(plan.shard_count(Some("gpu")), 3);
        assert_eq!(plan.pool_for(Some("gpu")).as_deref(), Some("gpu"));
        assert_eq!(
            plan.pool_for(Some("laptop")),
            None,
            "an unrouted label takes unrouted cells"
        );
        let gpu: usize = (0..3)
            .map(|k| plan.shard_cells(Some("gpu"), k).count())
            .sum();
        let rest: usize = (0..2).map(|k| plan.shard_cells(None, k).count()).sum();
        assert_eq!((gpu, rest), (80, 160));
        assert!((0..3).all(|k| {
            plan.shard_cells(Some("gpu"), k)
                .all(|c| c.cell.backend.name == "wgpu")
        }));
        let err = FleetPlan::new(
            cells(),
            vec![],
            true,
            vec![],
            &ShardCounts::parse(&["tpu=2".into()]).unwrap(),
            "now".into(),
        )
        .err()
        .unwrap();
        assert!(
            err.0.contains("no --on routes cells to the label 'tpu'"),
            "{err}"
        );
    }

    #[test]
    fn the_shard_comes_from_the_option_slurm_or_kubernetes_and_must_fit_the_plan() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let none = env(&[]);
        let chosen = choose(Some("1/3"), None, 3, none).unwrap();
        assert_eq!(
            (chosen.index, chosen.count, chosen.source),
            (1, 3, "--shard")
        );
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ]);
        let chosen = choose(None, None, 2, slurm).unwrap();
        assert_eq!((chosen.index, chosen.source), (1, "SLURM_ARRAY_TASK_ID"));
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2")]);
        let chosen = choose(None, Some(4), 4, k8s).unwrap();
        assert_eq!((chosen.index, chosen.source), (2, "JOB_COMPLETION_INDEX"));
        assert!(
            choose(None, None, 4, k8s)
                .unwrap_err()
                .0
                .contains("--shards N")
        );
        assert_eq!(choose(None, None, 1, none).unwrap().source, "plan");
        assert!(
            choose(None, None, 2, none)
                .unwrap_err()
                .0
                .contains("--shard K/2")
        );
        assert!(
            choose(Some("0/3"), None, 2, none)
                .unwrap_err()
                .0
                .contains("into 2 shards")
        );
        assert!(
            choose(Some("2/2"), None, 2, none)
                .unwrap_err()
                .0
                .contains("below N")
        );
        assert!(
            choose(Some("x"), None, 2, none)
                .unwrap_err()
                .0
                .contains("expected K/N")
        );
    }

    #[test]
    fn a_plan_edited_by_hand_or_of_another_kind_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let plan = plan(2, vec![]);
        plan.write(&path).unwrap();
        assert_eq!(FleetPlan::load(&path).unwrap().id, plan.id);
        let edited =
            std::fs::read_to_string(&path)
                .unwrap()
                .replacen("\"shard\": 1", "\"shard\": 0", 1);
        std::fs::write(&path, edited).unwrap();
        let err = FleetPlan::load(&path).unwrap_err();
        assert!(err.0.contains("no longer match its id"), "{err}");
        std::fs::write(&path, r#"{"schema": "chipbench.run/2"}"#).unwrap();
        let err = FleetPlan::load(&path).unwrap_err();
        assert!(err.0.contains("expected 'chipbench.plan/1'"), "{err}");
    }

    #[test]
    fn a_model_file_of_another_hash_is_refused_naming_it() {
        let plan = plan(1, vec![]);
        let mut here = plan.cells[0].cell.model.clone();
        assert!(plan.check_models(std::iter::once(&here)).is_ok());
        here.sha256 = "other".into();
        here.path = "/data/m0.onnx".into();
        let err = plan.check_models(std::iter::once(&here)).unwrap_err();
        assert!(
            err.0.contains("/data/m0.onnx has sha256 other") && err.0.contains("m0-hash"),
            "{err}"
        );
    }
}
