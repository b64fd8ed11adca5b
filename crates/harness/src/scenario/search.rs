//! `--find-peak` in a run. The plan holds one cell per searched sweep point; its searches run
//! here, each probe a cell of its own run through the run's executor (so in its own process,
//! under `--cell-timeout`) and journaled as it finishes. The plan cannot list the probes, since
//! each rate depends on the verdicts before it; but the search is deterministic given those
//! verdicts, so `--resume` replays the journal's probes into it and measures only what is missing.
//!
//! The first rate is `--target-qps` where given. Otherwise an offline run at the same batch and
//! concurrency (a cell of its own, `-peakN-start`) measures the capacity, concurrency / service
//! time, and the search starts there: a server at its capacity queues without bound, so the
//! first probe is usually INVALID and halving finds the bracket at once. A generate search's
//! capacity comes from its requests run one after another on one session (concurrency / mean
//! end-to-end time), and its probes are VALID when every TTFT and TPOT bound holds.

use std::sync::atomic::Ordering;

use chipbench_core::result::{CellResult, PeakQps, Status};
use chipbench_runner::measure::INTERRUPTED;

use super::Scenario;
use super::peak::{MAX_PROBES, PeakSearch, ProbeOf, find_peak, significant};
use super::settings::{DEFAULT_MIN_QUERIES, ScenarioSettings, TokenMetric, format_token_bounds};
use crate::plan::{Cell, cell_id, scenario_label};

/// What recording one cell of a search gave: its id and result, or `None` when the run was
/// stopped before it.
pub type Recorded = Option<(String, CellResult)>;

/// Runs the searches of `cell` (whose scenario holds `find_peak`), recording each of their cells
/// with `record`, and returns what each search found. Only `record`'s error ends them early.
pub fn searches<E>(
    cell: &Cell,
    record: &mut dyn FnMut(&Cell) -> Result<Recorded, E>,
) -> Result<Vec<PeakQps>, E> {
    let base = cell.scenario.expect("a search cell has a scenario");
    let peak = base.find_peak.expect("a search cell has its settings");
    let bound = base
        .latency_bound
        .or(base.token_bounds.first().map(|b| b.bound))
        .expect("--find-peak's settings were checked to have a bound");
    let bound_ms = bound.bound.as_secs_f64() * 1e3;
    let bounds = (!base.token_bounds.is_empty()).then(|| format_token_bounds(&base.token_bounds));
    let backend = cell.target.record(cell.threads);
    let mut found = Vec::new();
    for search in 1..=peak.repeats {
        // Each search a sample of its own: arrivals seeded anew.
        let seed = base.seed.wrapping_add(search as u64 - 1);
        let mut ids = Vec::new();
        let mut stopped = None;
        let start = match base.target_qps {
            Some(qps) => Ok((qps, "--target-qps".to_string())),
            None => {
                let offline = match base.scenario {
                    // A decoder's capacity: its requests one after another on one session.
                    Scenario::Generate => ScenarioSettings {
                        target_qps: None,
                        concurrency: 1,
                        token_bounds: Vec::new(),
                        find_peak: None,
                        probe: Some(ProbeOf { search, probe: 0 }),
                        seed,
                        ..base.clone()
                    },
                    _ => ScenarioSettings {
                        scenario: Scenario::Offline,
                        target_qps: None,
                        latency_bound: None,
                        min_queries: DEFAULT_MIN_QUERIES,
                        find_peak: None,
                        probe: Some(ProbeOf { search, probe: 0 }),
                        seed,
                        ..base.clone()
                    },
                };
                match record(&Cell {
                    scenario: Some(&offline),
                    ..*cell
                })? {
                    None => Err("the run was stopped".to_string()),
                    Some((id, result)) => {
                        let rate = match base.scenario {
                            Scenario::Generate => generate_capacity(&result, base).map(|qps| {
                                let how = "requests one after another";
                                (qps, format!("capacity of cell {id} ({how})"))
                            }),
                            _ => capacity(&result, bound_ms)
                                .map(|qps| (qps, format!("offline capacity of cell {id}"))),
                        };
                        ids.push(id);
                        rate
                    }
                }
            }
        };
        let mut failure = None;
        let mut probes = 0;
        let (start_qps, start, outcome) = match start {
            Ok((start_qps, start)) => {
                let search_how = PeakSearch {
                    start_qps,
                    tolerance: peak.tolerance,
                    max_probes: MAX_PROBES,
                };
                let outcome = find_peak(&search_how, |qps| {
                    probes += 1;
                    let settings = ScenarioSettings {
                        target_qps: Some(qps),
                        find_peak: None,
                        probe: Some(ProbeOf {
                            search,
                            probe: probes,
                        }),
                        seed,
                        ..base.clone()
                    };
                    let probe = Cell {
                        scenario: Some(&settings),
                        ..*cell
                    };
                    match record(&probe) {
                        Err(e) => {
                            failure = Some(e);
                            None
                        }
                        Ok(None) => {
                            stopped = Some("the run was stopped".to_string());
                            None
                        }
                        Ok(Some((id, result))) => {
                            ids.push(id);
                            verdict(&result, qps).map_err(|e| stopped = Some(e)).ok()
                        }
                    }
                });
                (Some(significant(start_qps)), start, Some(outcome))
            }
            Err(why) => {
                stopped = Some(why);
                (None, "the offline run".to_string(), None)
            }
        };
        if let Some(e) = failure {
            return Err(e);
        }
        let (valid_qps, invalid_qps, converged) =
            outcome.as_ref().map_or((None, None, false), |o| {
                (o.valid_qps, o.invalid_qps, o.converged)
            });
        if !converged && stopped.is_none() {
            let bracket = match (valid_qps, invalid_qps) {
                (None, _) => "found no VALID rate",
                (_, None) => "found no INVALID rate",
                _ => "left the bracket wider than the tolerance",
            };
            stopped = Some(format!(
                "{MAX_PROBES} probes, the most a search runs, {bracket}"
            ));
        }
        found.push(PeakQps {
            model: cell.model.record.name.clone(),
            variant: cell.model.record.variant.clone(),
            backend: backend.name.clone(),
            device: backend.device.clone(),
            threads: cell.threads,
            point: base.sweep_point(),
            search,
            percentile: bound.percentile,
            bound_ms,
            bounds: bounds.clone(),
            tolerance: peak.tolerance,
            start_qps,
            start,
            valid_qps,
            invalid_qps,
            converged,
            cells: ids,
            stopped,
        });
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
    }
    Ok(found)
}

/// The id a cell of a search is recorded under, given the cells recorded before it: as
/// [`crate::plan::ids_of`] numbers them, so that a resume finds it again.
pub fn next_id(cell: &Cell, before: &[CellResult]) -> String {
    let id = cell_id(
        &cell.model.record,
        &cell.target.record(cell.threads),
        &scenario_label(cell.scenario),
    );
    let seen = before
        .iter()
        .filter(|c| cell_id(&c.model, &c.backend, &c.scenario_label()) == id)
        .count();
    match seen {
        0 => id,
        n => format!("{id}#{}", n + 1),
    }
}

/// The queries per second the offline run served (samples per second / samples per query), or
/// why no search can start from it.
fn capacity(offline: &CellResult, bound_ms: f64) -> Result<f64, String> {
    let Some(run) = offline
        .scenario_run
        .as_ref()
        .filter(|_| offline.status == Status::Ok)
    else {
        return Err(format!(
            "the offline run that sets the first rate failed: {}",
            offline.error.as_deref().unwrap_or("no scenario record")
        ));
    };
    let qps = run.throughput.samples_per_s / run.samples_per_query as f64;
    // Each worker spends concurrency / capacity on a query: more than the bound, and no rate
    // can be VALID, however low.
    let service_ms = run.concurrency as f64 / qps * 1e3;
    if !(qps.is_finite() && qps > 0.0) {
        return Err(format!("the offline run served {qps} queries per second"));
    }
    if service_ms > bound_ms {
        return Err(format!(
            "no rate can be VALID: a worker spent {service_ms:.3} ms per query in the offline run, \
             over the {bound_ms} ms bound"
        ));
    }
    Ok(qps)
}

/// The requests per second `base.concurrency` sessions serve, from a generate cell run one
/// request after another (concurrency / mean end-to-end time), or why no search can start from
/// it: a mean TTFT or TPOT over its bound, which no rate, however low, can then meet.
fn generate_capacity(sequential: &CellResult, base: &ScenarioSettings) -> Result<f64, String> {
    let Some(g) = sequential
        .generation
        .as_ref()
        .filter(|_| sequential.status == Status::Ok)
    else {
        return Err(format!(
            "the generate run that sets the first rate failed: {}",
            sequential
                .error
                .as_deref()
                .unwrap_or("no generation record")
        ));
    };
    for b in &base.token_bounds {
        let (name, mean) = match b.metric {
            TokenMetric::Ttft => ("TTFT", g.ttft_ms.mean),
            TokenMetric::Tpot => ("TPOT", g.tpot_ms.mean),
        };
        let bound_ms = b.bound.bound.as_secs_f64() * 1e3;
        if mean > bound_ms {
            return Err(format!(
                "no rate can be VALID: the mean {name} was {mean:.3} ms with requests one after \
                 another, over the {bound_ms} ms bound"
            ));
        }
    }
    let qps = base.concurrency as f64 / (g.end_to_end_ms.mean / 1e3);
    if !(qps.is_finite() && qps > 0.0) {
        return Err(format!("the generate run served {qps} requests per second"));
    }
    Ok(qps)
}

/// A probe's verdict (a served generate probe's: every bound's), or why it has none.
fn verdict(probe: &CellResult, qps: f64) -> Result<bool, String> {
    if probe.status != Status::Ok {
        return Err(format!(
            "the probe at {qps} QPS failed: {}",
            probe.error.as_deref().unwrap_or("no reason recorded")
        ));
    }
    if let Some(serving) = probe.generation.as_ref().and_then(|g| g.serving.as_ref()) {
        return Ok(serving.valid());
    }
    probe
        .scenario_run
        .as_ref()
        .and_then(|r| r.verdict.as_ref())
        .map(|v| v.valid)
        .ok_or_else(|| format!("the probe at {qps} QPS recorded no verdict"))
}
