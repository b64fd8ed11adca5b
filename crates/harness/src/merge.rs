//! `chipbench merge`: the shard runs of one fleet plan made into one fleet run, every cell
//! keeping the host that measured it; runs of another plan and cells delivered twice refused,
//! planned cells that no shard delivered listed.

use std::collections::HashMap;

use chipbench_core::result::{CellResult, FleetHost, FleetRecord, RunResult, SCHEMA};

use crate::shard::{FleetPlan, keys, short};

/// Why shard runs cannot be merged.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MergeError(pub String);

/// A shard run and where it was read from (for messages).
pub struct ShardRun {
    pub source: String,
    pub run: RunResult,
}

/// The fleet run, and what the user should know about it.
pub struct Merged {
    pub run: RunResult,
    /// Shards made by other chipbench versions than the first's, and the like.
    pub notes: Vec<String>,
}

/// Merges `runs` (shards of `plan`) into one run of id `run_id`. With `prefer_newest`, a cell
/// two runs delivered is taken from the one that finished last; without, that is an error.
pub fn merge(
    plan: &FleetPlan,
    runs: Vec<ShardRun>,
    prefer_newest: bool,
    run_id: String,
) -> Result<Merged, MergeError> {
    let Some(first) = runs.first() else {
        return Err(MergeError("no runs to merge".into()));
    };
    let mut notes = Vec::new();
    // Each shard's --find-peak searches; their probes are among its cells.
    let peaks: Vec<_> = runs.iter().flat_map(|r| r.run.peaks.clone()).collect();
    for r in &runs {
        let Some(shard) = &r.run.shard else {
            return Err(MergeError(format!(
                "{}: run {} is not a shard of a plan (measured without `bench --plan`)",
                r.source, r.run.run_id
            )));
        };
        if shard.plan_id != plan.id {
            return Err(MergeError(format!(
                "{}: run {} measured plan {}, not plan {} of {}: runs of different plans \
                 cannot be merged",
                r.source,
                r.run.run_id,
                short(&shard.plan_id),
                short(&plan.id),
                first.source
            )));
        }
        if r.run.tool_version != first.run.tool_version {
            notes.push(format!(
                "{} was measured by chipbench {}, {} by {}",
                r.source, r.run.tool_version, first.source, first.run.tool_version
            ));
        }
    }

    let planned = plan.keys();
    let slot_of: HashMap<&str, usize> = planned
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let hosts = hosts(&runs);
    // The same options on every host; the backends are those that delivered cells (below).
    let mut config = first.run.config.clone();
    // For each planned cell: the run that delivered it and the cell.
    let mut slots: Vec<Option<(usize, CellResult)>> = vec![None; planned.len()];
    let mut replaced = Vec::new();
    for (r, shard) in runs.into_iter().enumerate() {
        let run_keys = keys(
            shard
                .run
                .cells
                .iter()
                .map(|c| (&c.model, &c.backend, c.scenario_label())),
            plan.threads_fixed,
        );
        for (key, mut cell) in run_keys.into_iter().zip(shard.run.cells) {
            let Some(&slot) = slot_of.get(key.as_str()) else {
                return Err(MergeError(format!(
                    "{}: cell {key} is not in plan {}",
                    shard.source,
                    short(&plan.id)
                )));
            };
            cell.host = Some(hosts[r].id.clone());
            if let Some((earlier, _)) = &slots[slot] {
                let (earlier_host, this_host) = (&hosts[*earlier], &hosts[r]);
                if !prefer_newest {
                    return Err(MergeError(format!(
                        "cell {} was delivered twice: by run {} ({}) and by run {} ({}); \
                         pass --prefer newest to keep the one that finished last",
                        plan.cells[slot].cell.id,
                        earlier_host.id,
                        earlier_host.label,
                        this_host.id,
                        this_host.label
                    )));
                }
                replaced.push(plan.cells[slot].cell.id.clone());
                if finished(this_host) < finished(earlier_host) {
                    continue;
                }
            }
            slots[slot] = Some((r, cell));
        }
    }
    replaced.sort();
    replaced.dedup();
    let missing: Vec<String> = slots
        .iter()
        .zip(&plan.cells)
        .filter(|(s, _)| s.is_none())
        .map(|(_, c)| c.cell.id.clone())
        .collect();
    let cells: Vec<CellResult> = slots.into_iter().flatten().map(|(_, c)| c).collect();

    config.backends = Vec::new();
    for c in &cells {
        let label = format!("{}:{}", c.backend.name, c.backend.device);
        if !config.backends.contains(&label) {
            config.backends.push(label);
        }
    }
    let started_at = hosts
        .iter()
        .map(|h| h.started_at.clone())
        .min()
        .expect("one run at least");
    let finished_at = hosts.iter().filter_map(|h| h.finished_at.clone()).max();
    Ok(Merged {
        run: RunResult {
            schema: SCHEMA.into(),
            run_id,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            started_at,
            finished_at,
            // Some planned cells were not measured because a shard was stopped.
            interrupted: hosts.iter().any(|h| h.interrupted),
            host: hosts[0].host.clone(),
            config,
            cells,
            // Idle power and speed checks belong to each host: in `hosts`.
            idle_baseline: None,
            projections: None,
            speed_checks: Vec::new(),
            peaks,
            hosts,
            shard: None,
            fleet: Some(FleetRecord {
                plan_id: plan.id.clone(),
                planned_cells: plan.cells.len(),
                missing,
                replaced,
            }),
        },
        notes,
    })
}

/// One host entry per shard run, named by its run id (numbered if the same run comes twice).
fn hosts(runs: &[ShardRun]) -> Vec<FleetHost> {
    let mut hosts: Vec<FleetHost> = Vec::with_capacity(runs.len());
    for r in runs {
        let run = &r.run;
        let mut id = run.run_id.clone();
        let mut n = 1;
        while hosts.iter().any(|h| h.id == id) {
            n += 1;
            id = format!("{}#{n}", run.run_id);
        }
        hosts.push(FleetHost {
            id,
            label: run
                .shard
                .as_ref()
                .and_then(|s| s.host_label.clone())
                .unwrap_or_else(|| run.host.hostname.clone()),
            host: run.host.clone(),
            shard: run.shard.clone(),
            started_at: run.started_at.clone(),
            finished_at: run.finished_at.clone(),
            interrupted: run.interrupted,
            tool_version: run.tool_version.clone(),
            idle_baseline: run.idle_baseline.clone(),
            speed_checks: run.speed_checks.clone(),
        });
    }
    hosts
}

/// When a shard run ended (RFC 3339 in UTC, so the text orders as the time does).
fn finished(host: &FleetHost) -> &str {
    host.finished_at.as_deref().unwrap_or(&host.started_at)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chipbench_core::DeviceKind;
    use chipbench_core::result::{
        BackendRecord, Host, ModelRecord, RunConfig, ShardRecord, Status,
    };

    use super::*;
    use crate::plan::{PlannedCell, cell_id};
    use crate::shard::ShardCounts;

    /// A plan of 12 models on two backends (one thread count each), in `n` shards.
    fn plan(n: usize) -> FleetPlan {
        let mut cells = Vec::new();
        for m in 0..12u64 {
            for backend in ["tract", "ort"] {
                let model = ModelRecord {
                    name: format!("m{m}"),
                    path: format!("m{m}.onnx"),
                    sha256: format!("h{m}"),
                    variant: "fp32".into(),
                    recipe: None,
                    params: None,
                    macs: Some(m * 10_000_000),
                    weight_bytes: None,
                    file_bytes: None,
                    derivation: None,
                };
                let backend = BackendRecord {
                    name: backend.into(),
                    version: "1".into(),
                    device: "cpu".into(),
                    device_name: "CPU".into(),
                    device_kind: DeviceKind::Cpu,
                    threads: None,
                    settings: BTreeMap::new(),
                };
                cells.push(PlannedCell {
                    id: cell_id(&model, &backend, "single-stream"),
                    model,
                    backend,
                    scenario: None,
                    not_run: None,
                });
            }
        }
        let counts = ShardCounts::parse(&[n.to_string()]).unwrap();
        FleetPlan::new(cells, vec![], false, vec![], &counts, "now".into()).unwrap()
    }

    /// Shard `k` as a host of `threads` cores would record it, finished at `finished`.
    fn shard(plan: &FleetPlan, k: usize, threads: usize, finished: &str) -> ShardRun {
        let cells = plan
            .shard_cells(None, k)
            .map(|c| {
                let mut backend = c.cell.backend.clone();
                backend.threads = Some(threads);
                let mut cell = CellResult::not_run(
                    c.cell.model.clone(),
                    backend,
                    "single-stream",
                    Status::Ok,
                    String::new(),
                );
                cell.throughput_per_s = Some(k as f64);
                cell
            })
            .collect();
        ShardRun {
            source: format!("shard{k}/run.json"),
            run: RunResult {
                schema: SCHEMA.into(),
                run_id: format!("run-{k}-{finished}"),
                tool_version: env!("CARGO_PKG_VERSION").into(),
                started_at: "2026-12-05T06:00:00Z".into(),
                finished_at: Some(finished.into()),
                interrupted: false,
                host: Host {
                    hostname: format!("node{k}"),
                    ..Host::default()
                },
                config: RunConfig::default(),
                cells,
                idle_baseline: None,
                projections: None,
                speed_checks: Vec::new(),
                peaks: Vec::new(),
                hosts: Vec::new(),
                shard: Some(ShardRecord {
                    plan_id: plan.id.clone(),
                    index: k,
                    count: plan.shard_count(None),
                    pool: None,
                    host_label: (k == 0).then(|| "h100".to_string()),
                    source: "--shard".into(),
                }),
                fleet: None,
            },
        }
    }

    const T: &str = "2026-12-05T07:00:00Z";

    #[test]
    fn three_shards_merge_into_the_plan_each_cell_naming_its_host() {
        let plan = plan(3);
        let runs = (0..3).map(|k| shard(&plan, k, 2 + k, T)).collect();
        let merged = merge(&plan, runs, false, "fleet".into()).unwrap().run;
        assert_eq!(merged.schema, "chipbench.run/2");
        let ids: Vec<String> = merged
            .cells
            .iter()
            .map(|c| {
                cell_id(
                    &c.model,
                    &BackendRecord {
                        threads: None,
                        ..c.backend.clone()
                    },
                    "single-stream",
                )
            })
            .collect();
        let planned: Vec<&str> = plan.cells.iter().map(|c| c.cell.id.as_str()).collect();
        assert_eq!(ids, planned, "every planned cell once, in plan order");
        let fleet = merged.fleet.as_ref().unwrap();
        assert!(fleet.missing.is_empty() && fleet.replaced.is_empty());
        assert_eq!(merged.hosts.len(), 3);
        assert_eq!(merged.hosts[0].label, "h100");
        assert_eq!(merged.hosts[1].label, "node1", "no label: the hostname");
        for c in &merged.cells {
            let host = merged
                .hosts
                .iter()
                .find(|h| Some(&h.id) == c.host.as_ref())
                .unwrap();
            let k = host.shard.as_ref().unwrap().index;
            assert_eq!(
                c.throughput_per_s,
                Some(k as f64),
                "{} kept its figures",
                c.model.name
            );
            assert_eq!(
                c.backend.threads,
                Some(2 + k),
                "and its host's thread count"
            );
        }
        // The merged run reads back as it was written.
        let text = serde_json::to_string(&merged).unwrap();
        assert_eq!(serde_json::from_str::<RunResult>(&text).unwrap(), merged);
    }

    #[test]
    fn missing_cells_are_listed_by_id() {
        let plan = plan(3);
        // Shard 2 was stopped after its cells; shard 1 never ran.
        let mut stopped = shard(&plan, 2, 2, T);
        stopped.run.interrupted = true;
        let runs = vec![shard(&plan, 0, 2, T), stopped];
        let merged = merge(&plan, runs, false, "fleet".into()).unwrap().run;
        assert!(merged.interrupted && merged.hosts[1].interrupted && !merged.hosts[0].interrupted);
        let missing: Vec<&str> = plan
            .shard_cells(None, 1)
            .map(|c| c.cell.id.as_str())
            .collect();
        assert!(!missing.is_empty());
        assert_eq!(merged.fleet.unwrap().missing, missing);
    }

    #[test]
    fn a_cell_delivered_twice_is_refused_unless_the_newest_is_preferred() {
        let plan = plan(2);
        let runs = || {
            vec![
                shard(&plan, 0, 2, T),
                shard(&plan, 1, 2, T),
                shard(&plan, 1, 8, "2026-12-05T07:30:00Z"),
            ]
        };
        let err = merge(&plan, runs(), false, "fleet".into()).err().unwrap();
        assert!(
            err.0
                .contains("was delivered twice: by run run-1-2026-12-05T07:00:00Z")
                && err.0.contains("--prefer newest"),
            "{err}"
        );
        let merged = merge(&plan, runs(), true, "fleet".into()).unwrap().run;
        let replaced = &merged.fleet.as_ref().unwrap().replaced;
        assert_eq!(replaced.len(), plan.shard_cells(None, 1).count());
        assert!(
            merged
                .cells
                .iter()
                .filter(|c| c.throughput_per_s == Some(1.0))
                .all(|c| c.backend.threads == Some(8)),
            "the later run's cells were kept"
        );
    }

    #[test]
    fn runs_of_another_plan_or_of_no_plan_are_refused() {
        let (two, three) = (plan(2), plan(3));
        let runs = vec![shard(&two, 0, 2, T), shard(&three, 1, 2, T)];
        let err = merge(&two, runs, false, "fleet".into()).err().unwrap();
        assert!(
            err.0
                .contains(&format!("measured plan {}", short(&three.id)))
                && err.0.contains("runs of different plans cannot be merged"),
            "{err}"
        );
        let mut lone = shard(&two, 0, 2, T);
        lone.run.shard = None;
        let err = merge(&two, vec![lone], false, "fleet".into())
            .err()
            .unwrap();
        assert!(err.0.contains("not a shard of a plan"), "{err}");
    }
}
