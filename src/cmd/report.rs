//! `chipbench report`: renders runs in one of the report formats, to a file or stdout.

use std::io::Write;
use std::path::PathBuf;

use chipbench_core::DeviceKind;
use chipbench_core::result::RunResult;
use chipbench_probe::catalog;
use chipbench_report::export::{ExportFormat, ExportManager};
use chipbench_report::fleet::{DeviceInfo, FleetContext};
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
    /// What an hour of a fleet host costs, by its label, in US dollars (repeatable), for the
    /// fleet table's inferences per dollar, e.g. --price h100=2.49.
    #[arg(long, value_name = "LABEL=USD/h")]
    price: Vec<String>,
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
    let fleet = fleet_context(&runs, &args.price)?;
    match &args.output {
        Some(_) => {
            for path in manager.write_with(&runs, &fleet)? {
                eprintln!("wrote {}", path.display());
            }
        }
        None => {
            let bytes = chipbench_report::export::serialize_with(args.format, &runs, &fleet)?;
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

/// What the fleet table knows beyond the runs: each fleet host's devices in the chip catalog
/// (class, power figure), and the prices given by `--price LABEL=USD/h`.
pub fn fleet_context(runs: &[RunResult], prices: &[String]) -> Result<FleetContext, UsageError> {
    let mut context = FleetContext::default();
    let labels: Vec<&str> = runs
        .iter()
        .flat_map(|r| r.hosts.iter().map(|h| h.label.as_str()))
        .collect();
    for price in prices {
        let (label, usd) = price
            .split_once('=')
            .map(|(l, u)| (l, u.strip_suffix("/h").unwrap_or(u)))
            .ok_or_else(|| {
                UsageError(format!(
                    "--price '{price}': expected LABEL=USD/h, e.g. h100=2.49"
                ))
            })?;
        let usd: f64 = usd
            .parse()
            .ok()
            .filter(|u: &f64| u.is_finite() && *u > 0.0)
            .ok_or_else(|| {
                UsageError(format!(
                    "--price '{price}': the price must be a positive number"
                ))
            })?;
        if !labels.contains(&label) {
            return Err(UsageError(format!(
                "--price '{price}': no host of these runs is labelled '{label}' (fleet hosts: {})",
                if labels.is_empty() {
                    "none, no run is a fleet run".to_string()
                } else {
                    labels.join(", ")
                }
            )));
        }
        context.prices.insert(label.to_string(), usd);
    }
    if labels.is_empty() {
        return Ok(context);
    }
    let chips = chipbench_probe::catalog::catalog().map_err(|e| UsageError(e.to_string()))?;
    for run in runs {
        for cell in &run.cells {
            let Some(host) = run.hosts.iter().find(|h| Some(&h.id) == cell.host.as_ref()) else {
                continue;
            };
            let key = (host.id.clone(), cell.backend.device.clone());
            if context.devices.contains_key(&key) {
                continue;
            }
            let chip = match cell.backend.device_kind {
                // A software rasterizer runs on the CPU.
                DeviceKind::Cpu | DeviceKind::SoftwareRasterizer => {
                    catalog::cpu_core_for(&chips, &host.host)
                }
                DeviceKind::Accelerator => {
                    chips.iter().find(|c| c.matches(&cell.backend.device_name))
                }
                _ => catalog::gpu_for(&chips, &cell.backend.device_name),
            };
            if let Some(chip) = chip {
                context.devices.insert(
                    key,
                    DeviceInfo {
                        chip: chip.name.clone(),
                        class: chip.class.label().to_string(),
                        rated_w: chip.rated_power().map(|(w, what)| (w, what.to_string())),
                        per_core_w: chip.per_core_active_w,
                    },
                );
            }
        }
    }
    Ok(context)
}
