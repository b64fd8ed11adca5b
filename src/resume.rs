//! `bench --resume DIR`: a run folder's plan and journal, read back so that an interrupted,
//! crashed or killed run measures only the cells it did not finish.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use chipbench_core::result::{CellResult, ModelRecord, StopReason};
use chipbench_runner::journal::CELLS_FILE;

use crate::UsageError;
use crate::bench::BenchArgs;
use crate::remote::{PLAN_FILE, Plan, PlannedCell};

/// Cells of one model variant on one backend device, in the order they were journaled.
type Key = (String, String, String, String);

fn key(model: &ModelRecord, backend: &str, device: &str) -> Key {
    (
        model.name.clone(),
        model.variant.clone(),
        backend.to_string(),
        device.to_string(),
    )
}

pub struct Resumed {
    pub plan: Plan,
    /// Finished cells; the k-th cell of a key is the k-th planned cell of that key (the sweep's
    /// order is fixed: models, thread counts, targets).
    finished: BTreeMap<Key, VecDeque<CellResult>>,
}

impl Resumed {
    /// Reads `plan.json` and the finished cells of `cells.jsonl`; a line cut short by the kill
    /// is dropped from the file, so that the run appends after whole lines.
    pub fn load(dir: &Path) -> anyhow::Result<Resumed> {
        let plan_path = dir.join(PLAN_FILE);
        let text = std::fs::read_to_string(&plan_path).map_err(|e| {
            UsageError(format!(
                "--resume {}: cannot read {PLAN_FILE}: {e}",
                dir.display()
            ))
        })?;
        let plan: Plan = serde_json::from_str(&text).map_err(|e| {
            UsageError(format!(
                "{}: not a chipbench plan: {e}",
                plan_path.display()
            ))
        })?;
        if plan.argv.is_empty() {
            return Err(UsageError(format!(
                "{}: written by an older chipbench, it keeps no command line to resume",
                plan_path.display()
            ))
            .into());
        }
        let journal = dir.join(CELLS_FILE);
        let mut text = std::fs::read_to_string(&journal).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.truncate(text.rfind('\n').map_or(0, |i| i + 1));
            std::fs::write(&journal, &text).map_err(|e| {
                anyhow::anyhow!("{}: cannot drop its cut line: {e}", journal.display())
            })?;
        }
        let mut finished: BTreeMap<Key, VecDeque<CellResult>> = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let cell: CellResult = serde_json::from_str(line).map_err(|e| {
                UsageError(format!("{}:{}: not a cell: {e}", journal.display(), n + 1))
            })?;
            // The cell in flight at Ctrl-C kept what it had; a resume measures it whole.
            if cell.stop_reason == Some(StopReason::Interrupted) {
                continue;
            }
            let k = key(&cell.model, &cell.backend.name, &cell.backend.device);
            finished.entry(k).or_default().push_back(cell);
        }
        Ok(Resumed { plan, finished })
    }

    /// The options of the resumed run: the plan's, writing into `dir`, printing as `now` asks.
    pub fn args(&self, dir: &Path, now: &BenchArgs) -> anyhow::Result<BenchArgs> {
        let words = ["chipbench", "bench"]
            .into_iter()
            .map(String::from)
            .chain(self.plan.argv.iter().cloned());
        let cli = <crate::Cli as clap::Parser>::try_parse_from(words).map_err(|e| {
            UsageError(format!(
                "{}/{PLAN_FILE}: its options no longer parse: {e}",
                dir.display()
            ))
        })?;
        let crate::Command::Bench(args) = cli.command else {
            unreachable!("the words start with `bench`")
        };
        Ok(args.for_resume(dir, now))
    }

    /// Refuses a plan that no longer matches what the options give today: a model changed on
    /// disk, or other cells.
    pub fn check(&self, now: &[PlannedCell]) -> Result<(), UsageError> {
        let refuse = |why: String| {
            Err(UsageError(format!(
                "cannot resume run {}: {why}; start a new run instead",
                self.plan.run_id
            )))
        };
        if self.plan.cells.len() != now.len() {
            return refuse(format!(
                "it planned {} cells, its options now give {}",
                self.plan.cells.len(),
                now.len()
            ));
        }
        for (then, now) in self.plan.cells.iter().zip(now) {
            let (a, b) = (&then.model, &now.model);
            if (&a.name, &a.variant) != (&b.name, &b.variant)
                || (&then.backend.name, &then.backend.device)
                    != (&now.backend.name, &now.backend.device)
            {
                return refuse(format!(
                    "its cells differ from what its options give now ({} {} on {}:{} against {} {} on {}:{})",
                    a.name,
                    a.variant,
                    then.backend.name,
                    then.backend.device,
                    b.name,
                    b.variant,
                    now.backend.name,
                    now.backend.device
                ));
            }
            if a.sha256 != b.sha256 {
                return refuse(format!(
                    "model {} ({}) changed on disk: sha256 {} then, {} now",
                    a.name, a.path, a.sha256, b.sha256
                ));
            }
        }
        Ok(())
    }

    /// The finished cell for the next planned cell of this model on this backend device.
    pub fn take(&mut self, model: &ModelRecord, backend: &str, device: &str) -> Option<CellResult> {
        self.finished
            .get_mut(&key(model, backend, device))?
            .pop_front()
    }
}
