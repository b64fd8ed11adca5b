//! `chipbench history`: the runs recorded in the SQLite history, one run in any report format,
//! a metric of one cell over time; and the recording of every `bench` run.

use std::io::Write;
use std::path::{Path, PathBuf};

use chipbench_core::result::RunResult;
use chipbench_report::ReportError;
use chipbench_report::export::ExportFormat;
use chipbench_report::gate::{CellKey, Metric};
use chipbench_report::history::{DEFAULT_PATH, History};
use clap::{Args, Subcommand, ValueEnum};

use crate::cmd::report::parse_format;
use crate::{Outcome, UsageError};

#[derive(Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    action: HistoryAction,
    /// The history database.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PATH, global = true)]
    db: PathBuf,
}

#[derive(Subcommand)]
enum HistoryAction {
    /// The recorded runs, newest first.
    List {
        /// How many runs.
        #[arg(long, default_value_t = 20, value_name = "N")]
        last: usize,
        /// Only runs of this host fingerprint (`this`: the machine chipbench runs on).
        #[arg(long, value_name = "FINGERPRINT")]
        host: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One recorded run (id, unique prefix or `latest`): its table, or a report format.
    Show {
        #[arg(value_name = "RUN_ID")]
        run: String,
        /// md, csv, html, json, bmf or gab (default: the terminal table).
        #[arg(long, short = 'f', value_parser = parse_format)]
        format: Option<ExportFormat>,
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// A metric of one cell over the recorded runs: sparkline and table, CSV or HTML.
    Trend {
        #[arg(long, short = 'm', value_name = "MODEL")]
        model: String,
        #[arg(long, value_name = "VARIANT")]
        variant: Option<String>,
        /// Backend, or backend:device.
        #[arg(long, short = 'b', value_name = "NAME[:DEVICE]")]
        backend: Option<String>,
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        #[arg(long, value_name = "SCENARIO")]
        scenario: Option<String>,
        /// p50, p90, p99, throughput or energy.
        #[arg(long, default_value = "p50", value_parser = |s: &str| s.parse::<Metric>().map_err(|e| e.to_string()))]
        metric: Metric,
        /// How many of the most recent runs.
        #[arg(long, default_value_t = 30, value_name = "N")]
        last: usize,
        /// Only runs of this host fingerprint (`this`: the machine chipbench runs on).
        #[arg(long, value_name = "FINGERPRINT")]
        host: Option<String>,
        #[arg(long, short = 'f', value_enum, default_value_t = TrendFormat::Text)]
        format: TrendFormat,
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Records existing runs (folders or run.json files), e.g. ones measured with --no-history.
    Add {
        #[arg(required = true, value_name = "RUN")]
        runs: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TrendFormat {
    Text,
    Csv,
    Html,
}

pub fn run(args: HistoryArgs) -> anyhow::Result<Outcome> {
    let usage = |e: ReportError| UsageError(e.to_string());
    match args.action {
        HistoryAction::List { last, host, json } => {
            let history = History::open_existing(&args.db).map_err(usage)?;
            let host = host.map(|h| {
                if h == "this" {
                    chipbench_probe::host().fingerprint
                } else {
                    h
                }
            });
            let runs = history.list(last, host.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(Outcome::Success);
            }
            println!(
                "{:<24} {:<22} {:<16} {:<14} {:>9}  cpu",
                "run", "started", "host", "hostname", "cells ok"
            );
            for r in &runs {
                let quick = if r.quick { " (--quick)" } else { "" };
                println!(
                    "{:<24} {:<22} {:<16} {:<14} {:>9}  {}{quick}",
                    r.run_id,
                    r.started_at,
                    r.host_fingerprint,
                    r.hostname,
                    format!("{}/{}", r.cells_ok, r.cells),
                    r.cpu_brand
                );
            }
            eprintln!("{} runs shown from {}", runs.len(), args.db.display());
        }
        HistoryAction::Show {
            run,
            format,
            output,
        } => {
            let history = History::open_existing(&args.db).map_err(usage)?;
            let run = history.load(&run).map_err(usage)?;
            let bytes = match format {
                Some(f) => f.exporter().serialize(std::slice::from_ref(&run))?,
                None => chipbench_report::terminal::render(&run).into_bytes(),
            };
            write_output(output.as_deref(), &bytes)?;
        }
        HistoryAction::Trend {
            model,
            variant,
            backend,
            threads,
            scenario,
            metric,
            last,
            host,
            format,
            output,
        } => {
            let history = History::open_existing(&args.db).map_err(usage)?;
            let (backend, device) = match backend
                .as_deref()
                .map(|b| b.split_once(':').unwrap_or((b, "")))
            {
                Some((b, d)) => (Some(b.to_string()), (!d.is_empty()).then(|| d.to_string())),
                None => (None, None),
            };
            let keys = history.cell_keys()?;
            let matching: Vec<&CellKey> = keys
                .iter()
                .filter(|k| {
                    k.model == model
                        && variant.as_ref().is_none_or(|v| *v == k.variant)
                        && backend.as_ref().is_none_or(|b| *b == k.backend)
                        && device.as_ref().is_none_or(|d| *d == k.device)
                        && scenario.as_ref().is_none_or(|s| *s == k.scenario)
                        && threads.is_none_or(|t| Some(t) == k.threads)
                })
                .collect();
            let key = match matching.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    let known: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
                    return Err(UsageError(format!(
                        "no recorded cell matches in {}; recorded cells: {}",
                        args.db.display(),
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join("; ")
                        }
                    ))
                    .into());
                }
                many => {
                    let listed: Vec<String> = many.iter().map(|k| k.to_string()).collect();
                    return Err(UsageError(format!(
                        "{} cells match; narrow with --variant, --backend, --threads or --scenario: {}",
                        many.len(),
                        listed.join("; ")
                    ))
                    .into());
                }
            };
            let host = host.map(|h| {
                if h == "this" {
                    chipbench_probe::host().fingerprint
                } else {
                    h
                }
            });
            let series = history.series(&key, host.as_deref(), last)?;
            let text = match format {
                TrendFormat::Text => chipbench_report::trend::render_text(&key, metric, &series),
                TrendFormat::Csv => chipbench_report::trend::render_csv(metric, &series),
                TrendFormat::Html => chipbench_report::trend::render_html(&key, metric, &series)?,
            };
            write_output(output.as_deref(), text.as_bytes())?;
        }
        HistoryAction::Add { runs } => {
            let mut history = History::open(&args.db)?;
            for path in &runs {
                let run = chipbench_report::load_run(path).map_err(usage)?;
                history.record(&run)?;
                eprintln!(
                    "recorded {} ({} cells) in {}",
                    run.run_id,
                    run.cells.len(),
                    args.db.display()
                );
            }
        }
    }
    Ok(Outcome::Success)
}

fn write_output(path: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match path {
        Some(p) => {
            std::fs::write(p, bytes).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        None => std::io::stdout().lock().write_all(bytes)?,
    }
    Ok(())
}

/// The history `bench` records into, opened before measuring so that a problem is reported in
/// the first second; the run goes on either way (its JSON is its primary record).
pub struct BenchHistory {
    db: PathBuf,
    opened: Result<History, ReportError>,
}

/// `None` with --no-history.
pub fn open_for_bench(no_history: bool, db: &Path) -> Option<BenchHistory> {
    if no_history {
        return None;
    }
    let db = db.to_path_buf();
    let opened = History::open(&db);
    if let Err(e) = &opened {
        eprintln!(
            "warning: {e}; the run goes on and its JSON is written, but it cannot be recorded in the history"
        );
    }
    Some(BenchHistory { db, opened })
}

/// Records the finished run. A history that cannot take it is an error (exit 1) after the run's
/// JSON has been written, so nothing measured is lost.
pub fn record_after_bench(
    history: Option<BenchHistory>,
    run: &RunResult,
    run_json: &Path,
) -> anyhow::Result<()> {
    let Some(BenchHistory { db, opened }) = history else {
        return Ok(());
    };
    if run.interrupted {
        eprintln!("not recorded in {}: the run was interrupted", db.display());
        return Ok(());
    }
    opened.and_then(|mut h| h.record(run)).map_err(|e| {
        anyhow::anyhow!(
            "{e}\nthe run is not in the history, but its results are complete in {} (record it later with \
             `chipbench history add`, or pass --no-history)",
            run_json.display()
        )
    })
}
