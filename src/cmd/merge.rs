//! `chipbench merge`: the shard runs of one plan (`bench --plan`) made into one fleet run, with
//! each host's cells recorded in the history as that host's run.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chipbench_core::result::RunResult;
use chipbench_harness::journal::write_atomically;
use chipbench_harness::merge::{self, ShardRun};
use chipbench_harness::shard::{FLEET_PLAN_FILE, FleetPlan};
use clap::Args;

use crate::{Outcome, UsageError};

#[derive(Args)]
pub struct MergeArgs {
    /// Shard runs of one plan: run folders (each keeps its fleet-plan.json) or run.json files.
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<PathBuf>,
    /// The folder of the fleet run to write (run.json, report.md, fleet-plan.json).
    #[arg(long, short = 'o', value_name = "DIR")]
    out: PathBuf,
    /// The plan the runs measured (default: the fleet-plan.json beside the first run).
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// Where two runs delivered the same cell, keep the one that finished last (else that is an
    /// error).
    #[arg(long, value_name = "newest", value_parser = ["newest"])]
    prefer: Option<String>,
    /// Do not record the hosts' runs in the history database.
    #[arg(long)]
    no_history: bool,
    /// The history database each host's cells are recorded in, as a run of that host.
    #[arg(long, value_name = "FILE", default_value = chipbench_report::history::DEFAULT_PATH)]
    history_db: PathBuf,
    /// Print nothing but errors.
    #[arg(long, short = 'q')]
    quiet: bool,
}

pub fn run(args: MergeArgs) -> anyhow::Result<Outcome> {
    let plan_path = match &args.plan {
        Some(p) => p.clone(),
        None => folder_of(&args.runs[0]).join(FLEET_PLAN_FILE),
    };
    let plan = FleetPlan::load(&plan_path).map_err(|e| UsageError(e.to_string()))?;
    let mut runs = Vec::with_capacity(args.runs.len());
    for path in &args.runs {
        let run = chipbench_report::load_run(path).map_err(|e| UsageError(e.to_string()))?;
        runs.push(ShardRun {
            source: path.display().to_string(),
            run,
        });
    }
    let run_id = format!(
        "fleet-{}",
        humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
    );
    let merged = merge::merge(&plan, runs, args.prefer.is_some(), run_id)
        .map_err(|e| UsageError(e.to_string()))?;
    let run = merged.run;

    std::fs::create_dir_all(&args.out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create the folder: {e}", args.out.display()))?;
    let run_json = args.out.join("run.json");
    write_atomically(&run_json, &serde_json::to_vec_pretty(&run)?)?;
    plan.write(&args.out.join(FLEET_PLAN_FILE))?;
    let fleet = crate::cmd::report::fleet_context(std::slice::from_ref(&run), &[])?;
    let markdown = chipbench_report::markdown::render_with(&run, &fleet);
    write_atomically(&args.out.join("report.md"), markdown.as_bytes())?;

    let fleet = run
        .fleet
        .as_ref()
        .expect("a merged run has its fleet record");
    if !args.quiet {
        for note in &merged.notes {
            eprintln!("note: {note}");
        }
        println!(
            "merged {} of {} planned cells from {} hosts into {}",
            run.cells.len(),
            fleet.planned_cells,
            run.hosts.len(),
            run_json.display()
        );
        let not_measured: Vec<String> = run
            .cells
            .iter()
            .filter(|c| c.status != chipbench_core::result::Status::Ok)
            .map(|c| {
                format!(
                    "{} {} on {}:{}",
                    c.model.name, c.model.variant, c.backend.name, c.backend.device
                )
            })
            .collect();
        if !not_measured.is_empty() {
            println!(
                "{} cells were delivered without figures (skipped or failed; reasons in report.md): {}",
                not_measured.len(),
                not_measured.join(", ")
            );
        }
        if !fleet.replaced.is_empty() {
            println!(
                "{} cells delivered twice: kept from the run that finished last",
                fleet.replaced.len()
            );
        }
    }
    if !fleet.missing.is_empty() {
        eprintln!("{} planned cells no shard delivered:", fleet.missing.len());
        for id in &fleet.missing {
            eprintln!("  {id}");
        }
    }
    record_hosts(&args, &run)?;
    Ok(if fleet.missing.is_empty() {
        Outcome::Success
    } else {
        Outcome::SomeFailed
    })
}

/// The folder of a run argument (a folder, or the folder of a run.json).
fn folder_of(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }
}

/// Records each host's cells as a run of that host (its shard run, under its own id), so that
/// the history's series and `compare --history` stay per machine. A host already recorded
/// there (the shards wrote to a shared history) is left as it is.
fn record_hosts(args: &MergeArgs, run: &RunResult) -> anyhow::Result<()> {
    if args.no_history {
        return Ok(());
    }
    let mut history = chipbench_report::history::History::open(&args.history_db)?;
    for host in &run.hosts {
        if history.contains(&host.id)? {
            continue;
        }
        if host.interrupted {
            // As `bench` does: a stopped run is not a point of the history.
            eprintln!(
                "not recorded in {}: run {} ({}) was interrupted",
                args.history_db.display(),
                host.id,
                host.label
            );
            continue;
        }
        let cells = run
            .cells
            .iter()
            .filter(|c| c.host.as_ref() == Some(&host.id))
            .map(|c| {
                let mut c = c.clone();
                c.host = None;
                c
            })
            .collect();
        history.record(&RunResult {
            schema: run.schema.clone(),
            run_id: host.id.clone(),
            tool_version: host.tool_version.clone(),
            started_at: host.started_at.clone(),
            finished_at: host.finished_at.clone(),
            interrupted: false,
            host: host.host.clone(),
            config: run.config.clone(),
            cells,
            idle_baseline: host.idle_baseline.clone(),
            speed_checks: host.speed_checks.clone(),
            // The history keeps cells; a search's probes are among them.
            peaks: Vec::new(),
            hosts: Vec::new(),
            shard: host.shard.clone(),
            fleet: None,
            projections: None,
        })?;
    }
    Ok(())
}
