//! Markdown for a pull-request comment: the run table of [`crate::markdown`] for each run, then
//! how every group of figures was obtained in that run.

use std::collections::BTreeSet;

use chipbench_core::result::RunResult;

use super::Exporter;
use crate::error::Result;
use crate::figures::{GROUPS, has_group, provenance};

pub struct MarkdownExporter;

impl Exporter for MarkdownExporter {
    fn serialize(&self, runs: &[RunResult]) -> Result<Vec<u8>> {
        Ok(render(runs, &crate::fleet::FleetContext::default()).into_bytes())
    }
}

/// Every run's table and provenance, a fleet run's fleet table drawn with `fleet`.
pub(crate) fn render(runs: &[RunResult], fleet: &crate::fleet::FleetContext) -> String {
    let mut out = String::new();
    for (i, run) in runs.iter().enumerate() {
        if i > 0 {
            out.push_str("\n---\n\n");
        }
        out.push_str(&crate::markdown::render_with(run, fleet));
        out.push_str(&provenance_section(run));
    }
    out
}

/// "How each figure was obtained": the distinct provenance texts of each group in the run.
pub(crate) fn provenance_section(run: &RunResult) -> String {
    let mut out = String::from("\n**How each figure was obtained**\n\n");
    for group in GROUPS {
        let texts: BTreeSet<String> = run
            .cells
            .iter()
            .filter(|c| c.status == chipbench_core::result::Status::Ok && has_group(c, group))
            .map(|c| provenance(c, group))
            .map(|p| format!("{} — {}", p.origin.label(), p.text))
            .collect();
        for text in texts {
            out.push_str(&format!("- `{group}`: {}\n", text.replace('|', "\\|")));
        }
    }
    out
}
