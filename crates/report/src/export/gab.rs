//! github-action-benchmark `customSmallerIsBetter`: `[{name, unit, value, range, extra}]`.
//!
//! Only smaller-is-better figures: the median and p99 latency of each cell. `range` is the
//! median's 95 % CI; `extra` says how the figure was obtained.

use chipbench_core::result::{RunResult, Status};
use serde::Serialize;

use super::{Exporter, benchmark_name, cells_with_runs};
use crate::error::Result;
use crate::figures::provenance;

pub struct GabExporter;

#[derive(Serialize)]
struct Entry {
    name: String,
    unit: &'static str,
    value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    range: Option<String>,
    extra: String,
}

impl Exporter for GabExporter {
    fn serialize(&self, runs: &[RunResult]) -> Result<Vec<u8>> {
        let mut entries = Vec::new();
        for (run, prefix, cell) in cells_with_runs(runs) {
            let Some(latency) = cell
                .latency_ms
                .as_ref()
                .filter(|_| cell.status == Status::Ok)
            else {
                continue;
            };
            let name = benchmark_name(&prefix, cell);
            let how = provenance(cell, "latency_ms").text;
            let extra = format!(
                "run {} on {} (n = {}); {how}",
                run.run_id, run.host.cpu_brand, latency.n
            );
            entries.push(Entry {
                name: format!("{name} p50"),
                unit: "ms",
                value: latency.p50,
                range: Some(format!(
                    "95% CI {} .. {}",
                    latency.median_ci95[0], latency.median_ci95[1]
                )),
                extra: extra.clone(),
            });
            entries.push(Entry {
                name: format!("{name} p99"),
                unit: "ms",
                value: latency.p99,
                range: None,
                extra,
            });
        }
        let mut bytes = serde_json::to_vec_pretty(&entries)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sample_run;

    #[test]
    fn two_entries_per_measured_cell_with_provenance() {
        let run = sample_run();
        let v: serde_json::Value =
            serde_json::from_slice(&GabExporter.serialize(std::slice::from_ref(&run)).unwrap())
                .unwrap();
        let entries = v.as_array().unwrap();
        let ok = run.cells.iter().filter(|c| c.status == Status::Ok).count();
        assert_eq!(entries.len(), 2 * ok);
        for e in entries {
            assert_eq!(e["unit"], "ms");
            assert!(e["value"].as_f64().unwrap() > 0.0);
            assert!(e["extra"].as_str().unwrap().contains("measured"));
        }
    }
}
