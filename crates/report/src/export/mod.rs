//! Report formats, one module each, behind a one-method trait (hyperfine's `export/` pattern),
//! and the manager that creates every output file before any work starts, so that a bad path
//! fails in the first second rather than after a long run.

mod bmf;
mod csv;
mod gab;
pub mod html;
mod json;
mod markdown;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chipbench_core::result::{CellResult, RunResult};

use crate::error::{ReportError, Result};

/// Turns runs into the bytes of one format.
pub trait Exporter {
    fn serialize(&self, runs: &[RunResult]) -> Result<Vec<u8>>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// GitHub-flavoured Markdown: a table per run and how each figure was obtained.
    Markdown,
    /// One row per cell, stable column names, a provenance column per group of figures.
    Csv,
    /// One self-contained page with inline SVG charts.
    Html,
    /// `chipbench.report/1`: every figure with its unit, origin and provenance.
    Json,
    /// Bencher Metric Format.
    Bmf,
    /// github-action-benchmark `customSmallerIsBetter`.
    Gab,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 6] = [
        ExportFormat::Markdown,
        ExportFormat::Csv,
        ExportFormat::Html,
        ExportFormat::Json,
        ExportFormat::Bmf,
        ExportFormat::Gab,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Markdown => "md",
            ExportFormat::Csv => "csv",
            ExportFormat::Html => "html",
            ExportFormat::Json => "json",
            ExportFormat::Bmf => "bmf",
            ExportFormat::Gab => "gab",
        }
    }

    pub fn exporter(self) -> Box<dyn Exporter> {
        match self {
            ExportFormat::Markdown => Box::new(markdown::MarkdownExporter),
            ExportFormat::Csv => Box::new(csv::CsvExporter),
            ExportFormat::Html => Box::new(html::HtmlExporter),
            ExportFormat::Json => Box::new(json::JsonExporter),
            ExportFormat::Bmf => Box::new(bmf::BmfExporter),
            ExportFormat::Gab => Box::new(gab::GabExporter),
        }
    }
}

/// `format`'s bytes, the fleet section of Markdown and HTML drawn with what `fleet` knows of the
/// devices (the chip catalog, which the command line reads) and the hosts' prices.
pub fn serialize_with(
    format: ExportFormat,
    runs: &[RunResult],
    fleet: &crate::fleet::FleetContext,
) -> Result<Vec<u8>> {
    match format {
        ExportFormat::Markdown => Ok(markdown::render(runs, fleet).into_bytes()),
        ExportFormat::Html => Ok(html::page_with(runs, fleet)?.into_bytes()),
        other => other.exporter().serialize(runs),
    }
}

impl FromStr for ExportFormat {
    type Err = ReportError;

    fn from_str(text: &str) -> Result<Self> {
        let lower = text.to_ascii_lowercase();
        let name = if lower == "markdown" {
            "md"
        } else {
            lower.as_str()
        };
        ExportFormat::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = ExportFormat::ALL.iter().map(|f| f.name()).collect();
                ReportError::Invalid(format!(
                    "unknown format '{text}' (one of: {})",
                    names.join(", ")
                ))
            })
    }
}

/// Output files opened up front, written at the end.
#[derive(Default)]
pub struct ExportManager {
    targets: Vec<(ExportFormat, PathBuf, File)>,
}

impl ExportManager {
    /// Creates (truncates) `path` now, so an unwritable path is an error before any work.
    pub fn add(&mut self, format: ExportFormat, path: &Path) -> Result<()> {
        let file = File::create(path).map_err(|e| ReportError::io(path, e))?;
        self.targets.push((format, path.to_path_buf(), file));
        Ok(())
    }

    /// Writes every output; returns the paths written.
    pub fn write(self, runs: &[RunResult]) -> Result<Vec<PathBuf>> {
        self.write_with(runs, &crate::fleet::FleetContext::default())
    }

    /// [`ExportManager::write`], fleet sections drawn with `fleet` (see [`serialize_with`]).
    pub fn write_with(
        self,
        runs: &[RunResult],
        fleet: &crate::fleet::FleetContext,
    ) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (format, path, mut file) in self.targets {
            let bytes = serialize_with(format, runs, fleet)?;
            file.write_all(&bytes)
                .and_then(|_| file.sync_all())
                .map_err(|e| ReportError::io(&path, e))?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Every cell of every run with the run it belongs to, and a prefix that tells runs apart when
/// there are several (`#2 `), empty for one run.
pub(crate) fn cells_with_runs(runs: &[RunResult]) -> Vec<(&RunResult, String, &CellResult)> {
    runs.iter()
        .enumerate()
        .flat_map(|(i, run)| {
            let prefix = if runs.len() > 1 {
                format!("#{} ", i + 1)
            } else {
                String::new()
            };
            run.cells.iter().map(move |c| (run, prefix.clone(), c))
        })
        .collect()
}

/// The benchmark name of a cell in dashboard formats: `model/variant/backend:device/scenario/tN`.
pub(crate) fn benchmark_name(run_prefix: &str, cell: &CellResult) -> String {
    let threads = cell
        .backend
        .threads
        .map(|t| format!("t{t}"))
        .unwrap_or_else(|| "t-".into());
    let prefix = run_prefix.trim().trim_start_matches('#');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("run{prefix}/")
    };
    format!(
        "{prefix}{}/{}/{}:{}/{}/{threads}",
        cell.model.name, cell.model.variant, cell.backend.name, cell.backend.device, cell.scenario
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::sample_run;

    #[test]
    fn formats_parse_by_name() {
        for f in ExportFormat::ALL {
            assert_eq!(f.name().parse::<ExportFormat>().unwrap(), f);
        }
        assert_eq!(
            "markdown".parse::<ExportFormat>().unwrap(),
            ExportFormat::Markdown
        );
        let err = "pdf".parse::<ExportFormat>().unwrap_err().to_string();
        assert!(
            err.contains("unknown format 'pdf'") && err.contains("gab"),
            "{err}"
        );
    }

    #[test]
    fn the_manager_fails_on_a_bad_path_before_writing() {
        let mut manager = ExportManager::default();
        let err = manager
            .add(
                ExportFormat::Csv,
                Path::new("/nonexistent-dir/x/report.csv"),
            )
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/nonexistent-dir/x/report.csv: "), "{err}");
    }

    #[test]
    fn the_manager_writes_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut manager = ExportManager::default();
        for f in ExportFormat::ALL {
            manager
                .add(f, &dir.path().join(format!("report.{}", f.name())))
                .unwrap();
        }
        let written = manager.write(&[sample_run()]).unwrap();
        assert_eq!(written.len(), ExportFormat::ALL.len());
        for path in written {
            let len = std::fs::metadata(&path).unwrap().len();
            assert!(len > 100, "{} has {len} bytes", path.display());
        }
    }
}
