//! Bencher Metric Format: `{benchmark: {measure: {value, lower_value, upper_value}}}`.
//!
//! Measures: `latency` (Bencher's built-in, nanoseconds: the median with its 95 % CI),
//! `latency-p99` (nanoseconds) and `throughput` (Bencher's built-in, operations per second, derived
//! from the timed loop). BMF has no field for provenance, so only these timed figures are
//! exported; failed and skipped cells have no figures and are left out.

use std::collections::BTreeMap;

use chipbench_core::result::{RunResult, Status};
use serde::Serialize;

use super::{Exporter, benchmark_name, cells_with_runs};
use crate::error::Result;

pub struct BmfExporter;

#[derive(Serialize)]
struct Metric {
    value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    lower_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upper_value: Option<f64>,
}

const NS_PER_MS: f64 = 1e6;

impl Exporter for BmfExporter {
    fn serialize(&self, runs: &[RunResult]) -> Result<Vec<u8>> {
        let mut benchmarks: BTreeMap<String, BTreeMap<&str, Metric>> = BTreeMap::new();
        for (_, prefix, cell) in cells_with_runs(runs) {
            let Some(latency) = cell
                .latency_ms
                .as_ref()
                .filter(|_| cell.status == Status::Ok)
            else {
                continue;
            };
            let mut measures = BTreeMap::new();
            measures.insert(
                "latency",
                Metric {
                    value: latency.p50 * NS_PER_MS,
                    lower_value: Some(latency.median_ci95[0] * NS_PER_MS),
                    upper_value: Some(latency.median_ci95[1] * NS_PER_MS),
                },
            );
            measures.insert(
                "latency-p99",
                Metric {
                    value: latency.p99 * NS_PER_MS,
                    lower_value: None,
                    upper_value: None,
                },
            );
            if let Some(t) = cell.throughput_per_s {
                measures.insert(
                    "throughput",
                    Metric {
                        value: t,
                        lower_value: None,
                        upper_value: None,
                    },
                );
            }
            benchmarks.insert(benchmark_name(&prefix, cell), measures);
        }
        let mut bytes = serde_json::to_vec_pretty(&benchmarks)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sample_run;

    #[test]
    fn latency_is_in_nanoseconds_with_the_median_ci() {
        let run = sample_run();
        let v: serde_json::Value =
            serde_json::from_slice(&BmfExporter.serialize(std::slice::from_ref(&run)).unwrap())
                .unwrap();
        let cell = &run.cells[0];
        let name = benchmark_name("", cell);
        let l = cell.latency_ms.as_ref().unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
        assert!(close(
            v[&name]["latency"]["value"].as_f64().unwrap(),
            l.p50 * 1e6
        ));
        assert!(close(
            v[&name]["latency"]["lower_value"].as_f64().unwrap(),
            l.median_ci95[0] * 1e6
        ));
        assert!(v[&name]["throughput"]["value"].as_f64().unwrap() > 0.0);
        let ok = run.cells.iter().filter(|c| c.status == Status::Ok).count();
        assert_eq!(v.as_object().unwrap().len(), ok);
    }
}
