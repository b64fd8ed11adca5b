//! `chipbench report`: renders runs in one of the report formats, to a file or stdout.

use std::io::Write;
use std::path::PathBuf;

use chipbench_report::export::{ExportFormat, ExportManager};
use chipbench_report::history::{DEFAULT_PATH, History};
use clap::Args;

use crate::{Outcome, UsageError};

#[derive(Args)]
pub struct ReportArgs {
    /// Run folders, run.json files, or history:RUN_ID (a recorded run; `history:latest`).
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<String>,
    /// md, csv, html (self-contained, with charts), json, bmf (Bencher Metric Format) or gab
    /// (github-action-benchmark customSmallerIsBetter).
    #[arg(long, short = 'f', default_value = "md", value_parser = parse_format)]
    format: ExportFormat,
    /// Output file (default: stdout). Created before the runs are read.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// History database for history:RUN_ID arguments.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PATH)]
    db: PathBuf,
}

pub fn parse_format(text: &str) -> Result<ExportFormat, String> {
    text.parse()
        .map_err(|e: chipbench_report::ReportError| e.to_string())
}

pub fn run(args: ReportArgs) -> anyhow::Result<Outcome> {
    let mut manager = ExportManager::default();
    if let Some(path) = &args.output {
        manager
            .add(args.format, path)
            .map_err(|e| UsageError(e.to_string()))?;
    }
    let runs = load_runs(&args.runs, &args.db)?;
    match &args.output {
        Some(_) => {
            for path in manager.write(&runs)? {
                eprintln!("wrote {}", path.display());
            }
        }
        None => {
            let bytes = args.format.exporter().serialize(&runs)?;
            std::io::stdout().lock().write_all(&bytes)?;
        }
    }
    Ok(Outcome::Success)
}

/// Runs named on the command line: paths, or `history:ID` from the history database. A run that
/// cannot be read is a usage error naming the file and the cause.
pub fn load_runs(
    names: &[String],
    db: &std::path::Path,
) -> Result<Vec<chipbench_core::result::RunResult>, UsageError> {
    let mut history: Option<History> = None;
    names
        .iter()
        .map(|name| match name.strip_prefix("history:") {
            Some(id) => {
                if history.is_none() {
                    history =
                        Some(History::open_existing(db).map_err(|e| UsageError(e.to_string()))?);
                }
                history
                    .as_ref()
                    .expect("opened above")
                    .load(id)
                    .map_err(|e| UsageError(e.to_string()))
            }
            None => chipbench_report::load_run(std::path::Path::new(name))
                .map_err(|e| UsageError(e.to_string())),
        })
        .collect()
}

/// `--export FORMAT=PATH` of `bench`: every file is created now, before anything is measured.
pub fn export_manager(specs: &[String]) -> Result<ExportManager, UsageError> {
    let mut manager = ExportManager::default();
    for spec in specs {
        let (format, path) = spec.split_once('=').ok_or_else(|| {
            UsageError(format!(
                "--export '{spec}': expected FORMAT=PATH, e.g. html=report.html"
            ))
        })?;
        let format =
            parse_format(format).map_err(|e| UsageError(format!("--export '{spec}': {e}")))?;
        manager
            .add(format, std::path::Path::new(path))
            .map_err(|e| UsageError(format!("--export: {e}")))?;
    }
    Ok(manager)
}
