//! `chipbench.report/1`: the runs' figures without the raw samples, each with its unit, origin
//! (measured / derived / estimated / projected) and full provenance text.

use std::collections::BTreeMap;

use chipbench_core::result::{Host, RunResult};
use serde::Serialize;

use super::{Exporter, cells_with_runs};
use crate::error::Result;
use crate::figures::{Figure, Origin, provenance};

pub const REPORT_SCHEMA: &str = "chipbench.report/1";

pub struct JsonExporter;

#[derive(Serialize)]
struct Report<'a> {
    schema: &'static str,
    runs: Vec<RunHeader<'a>>,
    cells: Vec<CellFigures<'a>>,
}

#[derive(Serialize)]
struct RunHeader<'a> {
    run_id: &'a str,
    tool_version: &'a str,
    started_at: &'a str,
    finished_at: Option<&'a str>,
    host: &'a Host,
}

#[derive(Serialize)]
struct CellFigures<'a> {
    run_id: &'a str,
    model: &'a str,
    variant: &'a str,
    backend: &'a str,
    device: &'a str,
    scenario: &'a str,
    threads: Option<usize>,
    status: String,
    error: Option<&'a str>,
    figures: BTreeMap<&'static str, FigureValue>,
}

#[derive(Serialize)]
struct FigureValue {
    value: f64,
    origin: Origin,
    provenance: String,
}

impl Exporter for JsonExporter {
    fn serialize(&self, runs: &[RunResult]) -> Result<Vec<u8>> {
        let report = Report {
            schema: REPORT_SCHEMA,
            runs: runs
                .iter()
                .map(|r| RunHeader {
                    run_id: &r.run_id,
                    tool_version: &r.tool_version,
                    started_at: &r.started_at,
                    finished_at: r.finished_at.as_deref(),
                    host: &r.host,
                })
                .collect(),
            cells: cells_with_runs(runs)
                .into_iter()
                .map(|(run, _, cell)| CellFigures {
                    run_id: &run.run_id,
                    model: &cell.model.name,
                    variant: &cell.model.variant,
                    backend: &cell.backend.name,
                    device: &cell.backend.device,
                    scenario: &cell.scenario,
                    threads: cell.backend.threads,
                    status: format!("{:?}", cell.status).to_lowercase(),
                    error: cell.error.as_deref(),
                    figures: Figure::ALL
                        .iter()
                        .filter_map(|&f| {
                            let value = f.value(cell)?;
                            let p = provenance(cell, f.group());
                            Some((
                                f.key(),
                                FigureValue {
                                    value,
                                    origin: p.origin,
                                    provenance: p.text,
                                },
                            ))
                        })
                        .collect(),
                })
                .collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&report)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sample_run;

    #[test]
    fn every_figure_carries_its_origin() {
        let run = sample_run();
        let bytes = JsonExporter.serialize(std::slice::from_ref(&run)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["schema"], REPORT_SCHEMA);
        let cell = &v["cells"][0];
        assert_eq!(cell["figures"]["p50_ms"]["origin"], "measured");
        assert_eq!(cell["figures"]["throughput_per_s"]["origin"], "derived");
        assert_eq!(cell["figures"]["params"]["origin"], "derived");
        for (key, fig) in cell["figures"].as_object().unwrap() {
            assert!(
                fig["provenance"].as_str().is_some_and(|p| !p.is_empty()),
                "{key}"
            );
        }
    }
}
