//! The plan of a run: every cell it sets out to record, in a deterministic order with stable
//! ids, written as `plan.json` before the first cell; and a stopped run's plan and journal read
//! back for `bench --resume`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chipbench_core::DeviceKind;
use chipbench_core::result::{
    BackendRecord, CellResult, Host, ModelRecord, RunConfig, Status, StopReason,
};
use chipbench_runner::{ModelUnderTest, SINGLE_STREAM, Target};
use serde::{Deserialize, Serialize};

use crate::journal::{CELLS_FILE, JournalError, write_atomically};
use crate::scenario::settings::ScenarioSettings;

/// The file of a run folder that lists the planned cells.
pub const PLAN_FILE: &str = "plan.json";

/// What a run sets out to measure, written before its first cell.
#[derive(Clone, Serialize, Deserialize)]
pub struct Plan {
    pub run_id: String,
    pub tool_version: String,
    pub started_at: String,
    pub host: Host,
    pub config: RunConfig,
    /// In the order they run, then the cells recorded without running (backends asked for by
    /// name that cannot run here) after each model's.
    pub cells: Vec<PlannedCell>,
    /// The `bench` options that made the plan, which `bench --resume` runs again.
    #[serde(default)]
    pub argv: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedCell {
    /// Stable across runs of the same options: `model.variant@backend:device/scenario/tN` (the
    /// scenario with its point, `offline/b4-c2`, for a load-generator scenario), with `#2`, `#3`
    /// after a repeat (the same model given twice).
    #[serde(default)]
    pub id: String,
    pub model: ModelRecord,
    pub backend: BackendRecord,
    /// How the load generator drives the cell; `None` for single-stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<ScenarioSettings>,
    /// Known before the run: a cell recorded as skipped or failed without running, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_run: Option<NotRun>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotRun {
    pub status: Status,
    pub reason: String,
}

/// A model ready to measure, or one that cannot be (its cells fail with the reason).
// A run holds one per model, a handful: boxing the larger variant would save nothing that counts.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Prepared {
    Ready(ModelUnderTest),
    Broken { record: ModelRecord, error: String },
}

impl Prepared {
    pub fn record(&self) -> &ModelRecord {
        match self {
            Prepared::Ready(m) => &m.record,
            Prepared::Broken { record, .. } => record,
        }
    }

    pub fn name(&self) -> &str {
        &self.record().name
    }
}

/// A backend or device asked for that cannot run here; its cells are recorded as skipped.
#[derive(Clone, Debug)]
pub struct Unavailable {
    /// `backend` or `backend:device`.
    pub label: String,
    pub reason: String,
}

impl Unavailable {
    /// The backend's name, without the device.
    pub fn backend(&self) -> &str {
        self.label.split(':').next().unwrap_or_default()
    }
}

/// One planned cell and what recording it takes.
pub struct Work<'a> {
    pub cell: PlannedCell,
    /// `None`: recorded from `cell.not_run` without running.
    pub measure: Option<Cell<'a>>,
}

/// A cell to measure: a model on a target with a thread count, in a scenario.
#[derive(Clone, Copy)]
pub struct Cell<'a> {
    pub model: &'a ModelUnderTest,
    pub target: &'a Target<'a>,
    pub threads: Option<usize>,
    /// `None`: single-stream, the runner's timed loop.
    pub scenario: Option<&'a ScenarioSettings>,
}

/// The part of a cell id that names its scenario (see [`CellResult::scenario_label`]).
pub fn scenario_label(scenario: Option<&ScenarioSettings>) -> String {
    match scenario {
        Some(s) => format!("{}/{}", s.scenario, s.point()),
        None => SINGLE_STREAM.into(),
    }
}

/// The id of a cell (without the repeat suffix); `scenario` as [`scenario_label`] writes it.
pub fn cell_id(model: &ModelRecord, backend: &BackendRecord, scenario: &str) -> String {
    let threads = backend
        .threads
        .map_or_else(|| "default".to_string(), |t| t.to_string());
    format!(
        "{}.{}@{}:{}/{scenario}/t{threads}",
        model.name, model.variant, backend.name, backend.device
    )
}

/// The ids of recorded cells: the k-th cell of an id is the k-th planned cell of that id.
pub fn ids_of(cells: &[CellResult]) -> Vec<String> {
    let mut ids: Vec<String> = cells
        .iter()
        .map(|c| cell_id(&c.model, &c.backend, &c.scenario_label()))
        .collect();
    number_repeats(ids.iter_mut());
    ids
}

/// Gives repeated ids their `#n` suffix, in order.
pub(crate) fn number_repeats<'c>(ids: impl Iterator<Item = &'c mut String>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in ids {
        let n = seen.entry(id.clone()).or_default();
        *n += 1;
        if *n > 1 {
            *id = format!("{id}#{n}");
        }
    }
}

/// The cells of a run in the order they run: models, then thread counts, then targets, then
/// scenarios (`None`: single-stream), then the unavailable backends asked for by name (a
/// skipped cell each, so that the gap shows). A variant derived for some backends only (one
/// representation of several) is crossed with those alone.
pub fn plan<'a>(
    models: &'a [Prepared],
    threads: &[Option<usize>],
    targets: &'a [Target<'a>],
    unavailable: &[Unavailable],
    scenarios: &'a [Option<ScenarioSettings>],
) -> Vec<Work<'a>> {
    let mut work = Vec::new();
    for model in models {
        let is_for = |backend: &str| {
            let derivation = model.record().derivation.as_ref();
            derivation.is_none_or(|d| d.is_for(backend))
        };
        for &threads in threads {
            for (target, scenario) in targets
                .iter()
                .filter(|t| is_for(t.backend.name()))
                .flat_map(|t| scenarios.iter().map(move |s| (t, s.as_ref())))
            {
                let backend = target.record(threads);
                let (measure, not_run) = match model {
                    Prepared::Ready(m) => (
                        Some(Cell {
                            model: m,
                            target,
                            threads,
                            scenario,
                        }),
                        None,
                    ),
                    Prepared::Broken { error, .. } => (
                        None,
                        Some(NotRun {
                            status: Status::Failed,
                            reason: error.clone(),
                        }),
                    ),
                };
                work.push(Work {
                    cell: planned(model.record(), backend, scenario, not_run),
                    measure,
                });
            }
            for (u, scenario) in unavailable
                .iter()
                .filter(|u| is_for(u.backend()))
                .flat_map(|u| scenarios.iter().map(move |s| (u, s.as_ref())))
            {
                let (name, device) = u.label.split_once(':').unwrap_or((&u.label, "-"));
                let backend = BackendRecord {
                    name: name.into(),
                    version: String::new(),
                    device: device.into(),
                    device_name: String::new(),
                    device_kind: DeviceKind::Cpu,
                    threads,
                    settings: BTreeMap::new(),
                };
                let not_run = NotRun {
                    status: Status::Skipped,
                    reason: u.reason.clone(),
                };
                work.push(Work {
                    cell: planned(model.record(), backend, scenario, Some(not_run)),
                    measure: None,
                });
            }
        }
    }
    number_repeats(work.iter_mut().map(|w| &mut w.cell.id));
    work
}

fn planned(
    model: &ModelRecord,
    backend: BackendRecord,
    scenario: Option<&ScenarioSettings>,
    not_run: Option<NotRun>,
) -> PlannedCell {
    PlannedCell {
        id: cell_id(model, &backend, &scenario_label(scenario)),
        model: model.clone(),
        backend,
        scenario: scenario.cloned(),
        not_run,
    }
}

impl PlannedCell {
    /// The cell recorded without running it.
    pub fn not_run_cell(&self) -> Option<CellResult> {
        let n = self.not_run.as_ref()?;
        let mut cell = CellResult::not_run(
            self.model.clone(),
            self.backend.clone(),
            self.scenario
                .as_ref()
                .map_or(SINGLE_STREAM, |s| s.scenario.name()),
            n.status,
            n.reason.clone(),
        );
        cell.scenario_point = self.scenario.as_ref().map(ScenarioSettings::point);
        Some(cell)
    }
}

impl Plan {
    /// Writes `plan.json` into the run folder `dir`, as one line.
    pub fn write(&self, dir: &Path) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(self).expect("a plan serialises");
        write_atomically(&dir.join(PLAN_FILE), &bytes)
    }
}

/// Why a run folder cannot be resumed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResumeError(pub String);

/// A stopped run read back: its plan and the cells it finished, by cell id.
pub struct Resumed {
    pub plan: Plan,
    finished: HashMap<String, CellResult>,
}

impl Resumed {
    /// Reads `plan.json` and the finished cells of `cells.jsonl`; a line cut short by the kill
    /// is dropped from the file, so that the run appends after whole lines.
    pub fn load(dir: &Path) -> Result<Resumed, ResumeError> {
        let plan_path = dir.join(PLAN_FILE);
        let text = std::fs::read_to_string(&plan_path).map_err(|e| {
            ResumeError(format!(
                "--resume {}: cannot read {PLAN_FILE}: {e}",
                dir.display()
            ))
        })?;
        let plan: Plan = serde_json::from_str(&text).map_err(|e| {
            ResumeError(format!(
                "{}: not a chipbench plan: {e}",
                plan_path.display()
            ))
        })?;
        if plan.argv.is_empty() {
            return Err(ResumeError(format!(
                "{}: written by an older chipbench, it keeps no command line to resume",
                plan_path.display()
            )));
        }
        if plan.cells.iter().any(|c| c.id.is_empty()) {
            return Err(ResumeError(format!(
                "{}: written by an older chipbench, its cells have no ids to resume by",
                plan_path.display()
            )));
        }
        let journal = dir.join(CELLS_FILE);
        let mut text = std::fs::read_to_string(&journal).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.truncate(text.rfind('\n').map_or(0, |i| i + 1));
            std::fs::write(&journal, &text).map_err(|e| {
                ResumeError(format!(
                    "{}: cannot drop its cut line: {e}",
                    journal.display()
                ))
            })?;
        }
        let mut cells = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let cell: CellResult = serde_json::from_str(line).map_err(|e| {
                ResumeError(format!("{}:{}: not a cell: {e}", journal.display(), n + 1))
            })?;
            cells.push(cell);
        }
        let finished = ids_of(&cells)
            .into_iter()
            .zip(cells)
            // The cell in flight at Ctrl-C kept what it had; a resume measures it whole.
            .filter(|(_, c)| c.stop_reason != Some(StopReason::Interrupted))
            .collect();
        Ok(Resumed { plan, finished })
    }

    /// Refuses a plan that no longer matches what the options give today: a model changed on
    /// disk, or other cells.
    pub fn check(&self, now: &[Work]) -> Result<(), ResumeError> {
        let refuse = |why: String| {
            Err(ResumeError(format!(
                "cannot resume run {}: {why}; start a new run instead",
                self.plan.run_id
            )))
        };
        let then = &self.plan.cells;
        let now: Vec<&PlannedCell> = now.iter().map(|w| &w.cell).collect();
        if then.len() != now.len() {
            return refuse(format!(
                "it planned {} cells, its options now give {}",
                then.len(),
                now.len()
            ));
        }
        for (a, b) in then.iter().zip(now) {
            if a.id != b.id {
                return refuse(format!(
                    "its cells differ from what its options give now ({} against {})",
                    a.id, b.id
                ));
            }
            if a.model.sha256 != b.model.sha256 {
                return refuse(format!(
                    "model {} ({}) changed on disk: sha256 {} then, {} now",
                    a.model.name, a.model.path, a.model.sha256, b.model.sha256
                ));
            }
        }
        Ok(())
    }

    /// The finished cell of this id, if the stopped run journaled it.
    pub fn take(&mut self, id: &str) -> Option<CellResult> {
        self.finished.remove(id)
    }

    /// Finished cells not yet taken (none, when the plan still matches).
    pub fn left(&self) -> usize {
        self.finished.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, variant: &str, threads: Option<usize>) -> (ModelRecord, BackendRecord) {
        let model = ModelRecord {
            name: name.into(),
            path: format!("{name}.onnx"),
            sha256: "00".into(),
            variant: variant.into(),
            recipe: None,
            params: None,
            macs: None,
            weight_bytes: None,
            file_bytes: None,
            derivation: None,
        };
        let backend = BackendRecord {
            name: "tract".into(),
            version: "0.23".into(),
            device: "cpu".into(),
            device_name: "cpu".into(),
            device_kind: DeviceKind::Cpu,
            threads,
            settings: BTreeMap::new(),
        };
        (model, backend)
    }

    /// A variant derived in two representations, a file for each backend: each file's cells
    /// are its backends' alone, the unavailable ones' skipped cells included, and no id repeats.
    #[test]
    fn a_file_derived_for_some_backends_is_crossed_with_those_alone() {
        let form = |backend: &str| {
            let (mut model, _) = record("gpt", "int4-weight", None);
            model.derivation = Some(chipbench_core::result::Derivation {
                backends: vec![backend.into()],
                ..Default::default()
            });
            Prepared::Broken {
                record: model,
                error: "not derived".into(),
            }
        };
        let models = [form("ort"), form("tract")];
        let unavailable = ["ort:cpu", "tract", "wgpu"].map(|label| Unavailable {
            label: label.into(),
            reason: "not here".into(),
        });
        let work = plan(&models, &[None], &[], &unavailable, &[None]);
        let ids: Vec<&str> = work.iter().map(|w| w.cell.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "gpt.int4-weight@ort:cpu/single-stream/tdefault",
                "gpt.int4-weight@tract:-/single-stream/tdefault"
            ]
        );
    }

    #[test]
    fn cell_ids_name_the_cell_and_number_repeats() {
        let (m, b) = record("mlp", "fp32", Some(2));
        assert_eq!(
            cell_id(&m, &b, SINGLE_STREAM),
            "mlp.fp32@tract:cpu/single-stream/t2"
        );
        let mut ids = vec!["a".to_string(), "b".into(), "a".into(), "a".into()];
        number_repeats(ids.iter_mut());
        assert_eq!(ids, ["a", "b", "a#2", "a#3"]);
    }

    #[test]
    fn the_plan_is_the_same_for_the_same_options_and_lists_unavailable_backends() {
        let models: Vec<Prepared> = ["mlp", "bert-tiny", "mlp"]
            .iter()
            .map(|n| {
                let (record, _) = record(n, "fp32", None);
                Prepared::Broken {
                    record,
                    error: "broken".into(),
                }
            })
            .collect();
        let unavailable = [Unavailable {
            label: "ort:cuda".into(),
            reason: "no CUDA".into(),
        }];
        let ids =
            |work: Vec<Work>| -> Vec<String> { work.into_iter().map(|w| w.cell.id).collect() };
        let first = ids(plan(
            &models,
            &[Some(1), Some(2)],
            &[],
            &unavailable,
            &[None],
        ));
        let second = ids(plan(
            &models,
            &[Some(1), Some(2)],
            &[],
            &unavailable,
            &[None],
        ));
        assert_eq!(first, second);
        assert_eq!(
            first,
            [
                "mlp.fp32@ort:cuda/single-stream/t1",
                "mlp.fp32@ort:cuda/single-stream/t2",
                "bert-tiny.fp32@ort:cuda/single-stream/t1",
                "bert-tiny.fp32@ort:cuda/single-stream/t2",
                "mlp.fp32@ort:cuda/single-stream/t1#2",
                "mlp.fp32@ort:cuda/single-stream/t2#2",
            ]
        );
    }

    /// Each scenario point is a cell of its own, and a recorded cell (even one that failed
    /// without a scenario record) gives back the id it was planned under, for --resume.
    #[test]
    fn scenario_points_are_cells_whose_records_give_back_their_ids() {
        use crate::scenario::Scenario;
        use crate::scenario::settings::{DEFAULT_MIN_DURATION, DEFAULT_SAMPLES_PER_QUERY};
        let (record, _) = record("mlp", "fp32", None);
        let models = [Prepared::Broken {
            record,
            error: "broken".into(),
        }];
        let offline = |batch| ScenarioSettings {
            scenario: Scenario::Offline,
            batch: Some(batch),
            concurrency: 2,
            target_qps: None,
            samples_per_query: DEFAULT_SAMPLES_PER_QUERY,
            query_interval: None,
            latency_bound: None,
            min_queries: 100,
            min_duration: DEFAULT_MIN_DURATION,
            seed: 0,
            find_peak: None,
            probe: None,
            generation: None,
            token_bounds: Vec::new(),
        };
        let unavailable = [Unavailable {
            label: "ort:cuda".into(),
            reason: "no CUDA".into(),
        }];
        let scenarios = [None, Some(offline(1)), Some(offline(4))];
        let work = plan(&models, &[Some(1)], &[], &unavailable, &scenarios);
        let planned: Vec<String> = work.iter().map(|w| w.cell.id.clone()).collect();
        assert_eq!(
            planned,
            [
                "mlp.fp32@ort:cuda/single-stream/t1",
                "mlp.fp32@ort:cuda/offline/b1-c2/t1",
                "mlp.fp32@ort:cuda/offline/b4-c2/t1",
            ]
        );
        let recorded: Vec<CellResult> = work
            .iter()
            .map(|w| w.cell.not_run_cell().unwrap())
            .collect();
        assert_eq!(recorded[2].scenario, "offline");
        assert_eq!(ids_of(&recorded), planned);
    }
}
