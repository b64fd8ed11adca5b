//! CSV: one row per cell, stable column names (the figure keys of [`crate::figures::Figure`]),
//! and one `<group>_provenance` column per group of figures saying how they were obtained.

use chipbench_core::result::RunResult;

use super::{Exporter, cells_with_runs};
use crate::error::Result;
use crate::figures::{Figure, GROUPS, provenance};

pub struct CsvExporter;

const IDENTITY: [&str; 12] = [
    "run_id",
    "host_fingerprint",
    "hostname",
    "model",
    "variant",
    "backend",
    "device",
    "device_kind",
    "scenario",
    "threads",
    "status",
    "error",
];

impl Exporter for CsvExporter {
    fn serialize(&self, runs: &[RunResult]) -> Result<Vec<u8>> {
        let mut header: Vec<String> = IDENTITY.iter().map(|s| s.to_string()).collect();
        header.extend(Figure::ALL.iter().map(|f| f.key().to_string()));
        header.extend(
            GROUPS
                .iter()
                .map(|g| format!("{}_provenance", g.trim_end_matches("_ms"))),
        );
        let mut out = line(&header);
        for (run, _, cell) in cells_with_runs(runs) {
            let kind = serde_json::to_value(cell.backend.device_kind)?;
            let mut row = vec![
                run.run_id.clone(),
                run.host.fingerprint.clone(),
                run.host.hostname.clone(),
                cell.model.name.clone(),
                cell.model.variant.clone(),
                cell.backend.name.clone(),
                cell.backend.device.clone(),
                kind.as_str().unwrap_or_default().to_string(),
                cell.scenario.clone(),
                cell.backend
                    .threads
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                format!("{:?}", cell.status).to_lowercase(),
                cell.error.clone().unwrap_or_default(),
            ];
            row.extend(
                Figure::ALL
                    .iter()
                    .map(|f| f.value(cell).map(|v| v.to_string()).unwrap_or_default()),
            );
            row.extend(GROUPS.iter().map(|g| provenance(cell, g).text));
            out.push_str(&line(&row));
        }
        Ok(out.into_bytes())
    }
}

/// One RFC 4180 line: fields with a comma, quote or line break are quoted, quotes doubled.
fn line(fields: &[String]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect();
    format!("{}\r\n", quoted.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sample_run;

    #[test]
    fn one_row_per_cell_with_the_same_number_of_columns() {
        let run = sample_run();
        let text =
            String::from_utf8(CsvExporter.serialize(std::slice::from_ref(&run)).unwrap()).unwrap();
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), run.cells.len() + 1);
        let header: Vec<&str> = lines[0].split(',').collect();
        assert!(header.contains(&"p50_ms") && header.contains(&"latency_provenance"));
        // Provenance texts contain commas: the quoted fields keep the count right.
        let p50 = header.iter().position(|h| *h == "p50_ms").unwrap();
        let first: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(
            first[p50].parse::<f64>().unwrap(),
            run.cells[0].latency_ms.as_ref().unwrap().p50
        );
    }

    #[test]
    fn quotes_fields_that_need_it() {
        assert_eq!(
            line(&["a".into(), "b,c".into(), "say \"x\"".into()]),
            "a,\"b,c\",\"say \"\"x\"\"\"\r\n"
        );
    }
}
