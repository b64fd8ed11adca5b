//! `chipbench bench`: resolves models and backends into cells, measures them with the runner,
//! journals each cell as it finishes, and writes `run.json` and `report.md`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use chipbench_core::result::{CellResult, RunConfig, RunResult, SCHEMA, Status};
use chipbench_probe::speed::SpeedProbe;
use chipbench_runner::journal::{Journal, write_atomically};
use chipbench_runner::measure::INTERRUPTED;
use chipbench_runner::{SINGLE_STREAM, Settings, StopRule, Sweep, Target, WarmUp};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backends::{self, Skipped};
use crate::hardware::Hardware;
use crate::models;
use crate::resume::Resumed;
use crate::{Outcome, UsageError};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A suite model name or a path to any ONNX file (repeatable; default: the whole suite).
    #[arg(long = "model", short = 'm', value_name = "NAME|PATH")]
    models: Vec<String>,
    /// Backend, or backend:device (repeatable; default: every available one).
    #[arg(long = "backend", short = 'b', value_name = "NAME[:DEVICE]")]
    backends: Vec<String>,
    /// Intra-op threads; a comma-separated list measures each (default: physical cores).
    #[arg(long, value_delimiter = ',', value_name = "N[,N...]")]
    threads: Vec<usize>,
    #[command(flatten)]
    inputs: models::InputArgs,
    /// Minimum timed iterations before the stop rule may end a cell.
    #[arg(long, value_name = "N")]
    min_iterations: Option<u64>,
    /// Minimum duration of the timed loop (e.g. 3s, 500ms).
    #[arg(long, value_parser = crate::parse_duration, value_name = "TIME")]
    min_duration: Option<Duration>,
    /// Maximum duration of the timed loop; ends a cell whose median is still uncertain.
    #[arg(long, value_parser = crate::parse_duration, value_name = "TIME")]
    max_duration: Option<Duration>,
    /// Stop once the 95 % CI of the median is within ± this percentage of the median.
    #[arg(long, value_name = "PERCENT")]
    target_ci: Option<f64>,
    /// Minimum warm-up iterations (warm-up also lasts at least --warmup-duration).
    #[arg(long, value_name = "N")]
    warmup_iterations: Option<u64>,
    /// Minimum warm-up duration.
    #[arg(long, value_parser = crate::parse_duration, value_name = "TIME")]
    warmup_duration: Option<Duration>,
    /// Sessions per cell (default 5): the first gives the figures, each further one is loaded
    /// afresh and timed briefly so that `compare` knows how much a fresh session's speed varies.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    sessions: Option<u16>,
    /// Seeded input samples compared with the fp32 reference (0 disables the check).
    #[arg(long, value_name = "N")]
    accuracy_samples: Option<usize>,
    /// A short run for smoke tests: warm-up of 3 inferences and 0.1 s, then 20 iterations and
    /// 0.3 s minimum, 2 s maximum per cell.
    #[arg(long)]
    quick: bool,
    /// Seed of the generated inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Measure each cell inside this process instead of a child process of its own (faster to
    /// start; a crash or hang of an engine then ends the whole run).
    #[arg(long)]
    in_process: bool,
    /// A cell (or one further session) still running after this long is killed and recorded
    /// as failed; the run goes on (e.g. 90s, 10m).
    #[arg(long, value_parser = crate::parse_duration, value_name = "TIME", default_value = "10m", conflicts_with = "in_process")]
    cell_timeout: Duration,
    /// Continue an interrupted, crashed or killed run in DIR: its plan.json is run again with
    /// the same options (only --json and --quiet may be added), and only the cells missing from
    /// its cells.jsonl are measured.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Output folder (default: bench-results/<run-id>/).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the run JSON on stdout and nothing else there.
    #[arg(long)]
    json: bool,
    /// No progress bar and no table.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Also write the run as FORMAT (md, csv, html, json, bmf, gab) to PATH (repeatable); the
    /// files are created before measuring, so a bad path fails at once.
    #[arg(long, value_name = "FORMAT=PATH")]
    export: Vec<String>,
    /// Do not record the run in the history database.
    #[arg(long)]
    no_history: bool,
    /// The history database the run is recorded in.
    #[arg(long, value_name = "FILE", default_value = chipbench_report::history::DEFAULT_PATH)]
    history_db: PathBuf,
    /// Folder of the built-in suite (default: ./models, else the one chipbench was built with).
    #[arg(long, value_name = "DIR")]
    suite: Option<PathBuf>,
    #[command(flatten)]
    engines: backends::EngineArgs,
    #[command(flatten)]
    edge: crate::edge::EdgeArgs,
    /// Measure idle power for this long before the cells, once, and report energy above it
    /// (needs an energy sensor), e.g. 5s.
    #[arg(long, value_parser = crate::parse_duration, value_name = "TIME")]
    idle_baseline: Option<Duration>,
    /// Roofline ceilings bounding each cell (default: bench-results/roofline/<host
    /// fingerprint>.json, written by `chipbench roofline`, when present).
    #[arg(long, value_name = "FILE")]
    ceilings: Option<PathBuf>,
    /// Record the engine's own time per operator and keep the slowest operators in the
    /// results (ONNX Runtime's profiler, wgpu's kernel timestamps; its time and memory overhead
    /// is inside that run's latencies and peak RSS).
    #[arg(long)]
    operator_times: bool,
    /// The old name of --operator-times ("profile" now means an edge device profile alone).
    #[arg(long = "profile", hide = true)]
    profile_alias: bool,
    /// Model variants, comma-separated: fp32, fp16, int8-dynamic, int8-static,
    /// prune-unstructured:S, prune-2:4, prune-channels:R, or chains (prune-2:4+int8-static).
    /// Derived variants are cached (see --variant-cache) and compared with the fp32 model.
    #[arg(
        long = "variant",
        value_delimiter = ',',
        value_name = "RECIPE[,RECIPE...]"
    )]
    variants: Vec<String>,
    #[command(flatten)]
    calibration: crate::optimize_cmd::CalibrationArgs,
    /// Folder of derived variants, keyed by source SHA-256, recipe, calibration settings and
    /// --keep-float policy (default: bench-results/.cache/variants); a second run reuses them.
    #[arg(long, value_name = "DIR")]
    variant_cache: Option<PathBuf>,
    /// A backend setting, KEY=VALUE (repeatable); see --help for the keys.
    #[arg(long = "set", value_name = "KEY=VALUE", long_help = set_help())]
    set: Vec<String>,
}

/// `--set` in `--help`: every backend key with its values.
fn set_help() -> String {
    let mut text = String::from(
        "A backend setting, KEY=VALUE (repeatable); each backend reads its own keys and records \
         the values it ran with in the results.\nONNX Runtime (ort):",
    );
    for (key, values, what) in chipbench_backend_ort::SETTINGS_HELP {
        text += &format!("\n  {key}={values}\n      {what}");
    }
    text += "\nwgpu:";
    for (key, values, what) in chipbench_backend_wgpu::SETTINGS_HELP {
        text += &format!("\n  {key}={values}\n      {what}");
    }
    text
}

/// `--set` pairs, with the keys of the backends checked up front so a typo fails in the first
/// second rather than in every cell.
fn backend_settings(pairs: &[String]) -> Result<BTreeMap<String, String>, UsageError> {
    let mut settings = BTreeMap::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| {
                UsageError(format!(
                    "--set '{pair}': expected KEY=VALUE, e.g. ort.spinning=off"
                ))
            })?;
        settings.insert(key.trim().to_string(), value.trim().to_string());
    }
    chipbench_backend_ort::OrtSettings::parse(&settings).map_err(|e| UsageError(e.to_string()))?;
    chipbench_backend_wgpu::WgpuSettings::parse(&settings)
        .map_err(|e| UsageError(e.to_string()))?;
    Ok(settings)
}

impl BenchArgs {
    /// The options of a resumed run: the plan's, writing into the run folder `dir`, printing as
    /// the resuming command line asks (`--json`, `--quiet`).
    pub fn for_resume(mut self: Box<Self>, dir: &std::path::Path, now: &BenchArgs) -> BenchArgs {
        self.out = Some(dir.to_path_buf());
        self.resume = None;
        self.json |= now.json;
        self.quiet |= now.quiet;
        *self
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
    match &args.resume {
        Some(dir) => {
            let resumed = Resumed::load(dir)?;
            let args = resumed.args(dir, &args)?;
            measure(args, resumed.plan.argv.clone(), Some(resumed))
        }
        // The options after `bench`, which plan.json keeps for --resume.
        None => measure(args, std::env::args().skip(2).collect(), None),
    }
}

fn measure(
    args: BenchArgs,
    argv: Vec<String>,
    mut resumed: Option<Resumed>,
) -> anyhow::Result<Outcome> {
    let mut settings = settings(&args);
    settings.backend_settings = backend_settings(&args.set)?;
    let started = SystemTime::now();
    let exports = crate::report_cmd::export_manager(&args.export)?;
    let history = crate::history::open_for_bench(args.no_history, &args.history_db);
    let (run_id, started_at) = match &resumed {
        Some(r) => (r.plan.run_id.clone(), r.plan.started_at.clone()),
        None => (
            run_id(started),
            humantime::format_rfc3339_seconds(started).to_string(),
        ),
    };
    let mut host = chipbench_probe::host();
    let edge =
        crate::edge::Emulation::prepare(&args.edge, &args.engines, &args.inputs.input_files)?;
    let threads: Vec<Option<usize>> = if args.threads.is_empty() {
        vec![Some(edge.as_ref().map_or(
            host.physical_cores.unwrap_or(host.logical_cores),
            |e| e.threads(),
        ))]
    } else {
        if args.threads.contains(&0) {
            return Err(UsageError("--threads must be at least 1".into()).into());
        }
        if let Some(e) = &edge {
            e.check_threads(&args.threads)?;
        }
        args.threads.iter().map(|&t| Some(t)).collect()
    };

    let request = args.inputs.request()?;
    let suite_dir = models::suite_dir(args.suite.as_deref())?;
    let prepared = models::resolve(&suite_dir, &args.models, &request)?;
    let recipes = crate::optimize_cmd::parse_variants(&args.variants)?;
    let derive_options = args.calibration.options()?;
    let cache = crate::optimize_cmd::variant_cache(args.variant_cache.as_deref());
    let prepared =
        crate::optimize_cmd::expand(prepared, &recipes, &derive_options, &cache, !args.quiet);

    let registry = backends::registry(&args.engines);
    crate::devices::add_backend_gpus(&mut host, &registry);
    let (targets, skipped, report_skips) = match &edge {
        Some(e) => {
            let (targets, skipped) = e.select(&registry, &args.backends)?;
            (targets, skipped, true)
        }
        None => {
            let (targets, skipped) = backends::select(&registry, &args.backends)?;
            (targets, skipped, !args.backends.is_empty())
        }
    };
    let with_ort = targets.iter().any(|t| t.backend.name() == "ort");
    let references = reference_targets(&registry, with_ort)?;

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("bench-results").join(&run_id));
    let mut journal = Journal::create(&out).with_context(|| "cannot create the output folder")?;

    let config = RunConfig {
        models: prepared.iter().map(|m| m.name().to_string()).collect(),
        backends: targets.iter().map(Target::label).collect(),
        variants: recipes.iter().map(|r| r.name()).collect(),
        threads: threads.first().copied().flatten(),
        scenario: SINGLE_STREAM.into(),
        seed: args.seed,
        warmup_min_iterations: settings.warmup.min_iterations,
        warmup_min_duration_s: settings.warmup.min_duration.as_secs_f64(),
        min_iterations: settings.stop.min_iterations,
        min_duration_s: settings.stop.min_duration.as_secs_f64(),
        max_duration_s: settings.stop.max_duration.as_secs_f64(),
        target_relative_ci: settings.stop.target_relative_ci,
        accuracy_samples: settings.accuracy_samples,
        quick: args.quick,
        edge_profile: edge.as_ref().map(|e| e.record()),
    };
    let planned = crate::remote::planned_cells(&prepared, &threads, &targets);
    match &resumed {
        Some(r) => r.check(&planned)?,
        None => crate::remote::write_plan(
            journal.dir(),
            &crate::remote::Plan {
                run_id: run_id.clone(),
                tool_version: env!("CARGO_PKG_VERSION").into(),
                started_at: started_at.clone(),
                host: host.clone(),
                config: config.clone(),
                cells: planned,
                argv,
            },
        )?,
    }

    let talk = !args.quiet;
    if args.profile_alias && talk {
        eprintln!("note: --profile is now called --operator-times");
    }
    for s in &skipped {
        if talk {
            eprintln!("skipping {}: {}", s.label, s.reason);
        }
    }
    let total =
        prepared.len() * (targets.len() + requested_skips(&skipped, report_skips)) * threads.len();
    let progress = progress_bar(total as u64, talk);
    let hardware = Hardware::prepare(
        &host,
        &targets,
        args.idle_baseline,
        args.ceilings.as_deref(),
        talk,
    )?;
    settings.energy = Some(hardware.energy_plan());
    let mut sweep = Sweep::new(settings, references);
    let mut cells = Vec::new();
    let mut speed = SpeedProbe::new();
    let mut speed_checks = vec![speed.check(0)];
    // Cells measured here (not in an edge worker, which measures its sessions itself), for the
    // further sessions: (index in `cells`, model, target, threads).
    let mut measured = Vec::new();
    let input_files = crate::worker::input_file_paths(&args.inputs.input_files);
    handle_ctrl_c(talk);
    'sweep: for model in &prepared {
        for &thread_count in &threads {
            for target in &targets {
                progress.set_message(format!("{} on {}", model.name(), target.label()));
                let done = resumed
                    .as_mut()
                    .and_then(|r| r.take(model.record(), target.backend.name(), &target.device.id));
                if let Some(cell) = done {
                    // Its further sessions were not journaled: they run again in the rounds.
                    if let (Status::Ok, models::Prepared::Ready(m), None) =
                        (cell.status, model, &edge)
                    {
                        measured.push((cells.len(), m, target, thread_count));
                    }
                    cells.push(cell);
                    progress.inc(1);
                    continue;
                }
                let cell = match model {
                    models::Prepared::Ready(m) => hardware.bound(match &edge {
                        Some(e) => e.run_cell(m, target, thread_count, &sweep.settings),
                        None => {
                            measured.push((cells.len(), m, target, thread_count));
                            if args.in_process {
                                sweep.run_cell(m, target, thread_count)
                            } else {
                                let job = crate::worker::Job::new(
                                    m,
                                    target,
                                    thread_count,
                                    &sweep.settings,
                                    &input_files,
                                    args.engines.ort_lib.clone(),
                                );
                                crate::worker::cell_in_fresh_process(&job, args.cell_timeout)
                                    .unwrap_or_else(|reason| {
                                        target.failed_cell(m, thread_count, reason)
                                    })
                            }
                        }
                    }),
                    models::Prepared::Broken { record, error } => CellResult::not_run(
                        record.clone(),
                        target.record(thread_count),
                        SINGLE_STREAM,
                        Status::Failed,
                        error.clone(),
                    ),
                };
                let mut cell = cell;
                cell.resumed = resumed.is_some();
                record(&mut journal, &mut cells, cell)?;
                speed_checks.push(speed.check(cells.len()));
                progress.inc(1);
                if INTERRUPTED.load(Ordering::Relaxed) {
                    break 'sweep;
                }
            }
            // Backends the user asked for by name but that cannot run here: a skipped cell each,
            // so the gap is visible in the results.
            for s in skipped.iter().filter(|_| report_skips) {
                let (name, device) = s.label.split_once(':').unwrap_or((&s.label, "-"));
                if let Some(done) = resumed
                    .as_mut()
                    .and_then(|r| r.take(model.record(), name, device))
                {
                    cells.push(done);
                    continue;
                }
                let backend = chipbench_core::result::BackendRecord {
                    name: name.into(),
                    version: String::new(),
                    device: device.into(),
                    device_name: String::new(),
                    device_kind: chipbench_core::DeviceKind::Cpu,
                    threads: thread_count,
                    settings: BTreeMap::new(),
                };
                let cell = CellResult::not_run(
                    model.record().clone(),
                    backend,
                    SINGLE_STREAM,
                    Status::Skipped,
                    s.reason.clone(),
                );
                record(&mut journal, &mut cells, cell)?;
                progress.inc(1);
            }
        }
    }
    // Further sessions, each in a fresh process (the sessions of one process share its memory
    // placement), in rounds over every cell so that a cell's sessions span the run rather than
    // one moment of it (a slow phase of the host then shows as spread, not as the cell's speed).
    let rounds = sweep.settings.sessions.saturating_sub(1);
    let how = "in a process of its own each, in rounds over all the run's cells";
    let mut stopped = vec![false; cells.len()];
    progress.inc_length((measured.len() * rounds) as u64);
    'rounds: for round in 1..=rounds {
        progress.set_message(format!("further sessions, round {round} of {rounds}"));
        for &(index, model, target, thread_count) in &measured {
            if INTERRUPTED.load(Ordering::Relaxed) {
                break 'rounds;
            }
            progress.inc(1);
            if stopped[index] || cells[index].status != Status::Ok {
                continue;
            }
            let job = crate::worker::Job::new(
                model,
                target,
                thread_count,
                &sweep.settings,
                &input_files,
                args.engines.ort_lib.clone(),
            )
            .without_energy();
            let session = crate::worker::session_in_fresh_process(&job, args.cell_timeout);
            stopped[index] = !sweep.record_session(&mut cells[index], session, how);
        }
    }
    progress.finish_and_clear();

    let projections = hardware.projections(&cells, &host);
    for c in projections
        .iter()
        .flat_map(|p| &p.checks)
        .filter(|c| !c.holds)
    {
        eprintln!(
            "warning: {} {} on {} ran in {:.4} ms, below the {:.4} ms lower bound projected from catalog '{}' for \
             this CPU: that entry's figures do not hold for this host",
            c.model, c.variant, c.backend, c.measured_min_ms, c.lower_bound_ms, c.chip
        );
    }
    let run = RunResult {
        schema: SCHEMA.into(),
        run_id,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        started_at,
        finished_at: Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string()),
        interrupted: INTERRUPTED.load(Ordering::Relaxed),
        host,
        config,
        cells,
        idle_baseline: hardware.idle_baseline(),
        projections,
        speed_checks,
    };
    let run_json = journal.finish(&run)?;
    let variant_summary = crate::optimize_cmd::variant_summary(&run);
    let mut markdown = chipbench_report::markdown::render(&run);
    if !variant_summary.is_empty() {
        markdown += &format!("\n## Variants\n\n```\n{variant_summary}```\n");
    }
    write_atomically(&out.join("report.md"), markdown.as_bytes())?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    }
    if talk {
        let table = chipbench_report::terminal::render(&run);
        let location = format!(
            "results: {} (and report.md, cells.jsonl beside it)",
            run_json.display()
        );
        let table = format!("{table}{variant_summary}");
        if args.json {
            eprint!("{table}");
            eprintln!("{location}");
        } else {
            print!("{table}");
            println!("{location}");
        }
    }
    for path in exports.write(std::slice::from_ref(&run))? {
        if talk {
            eprintln!("wrote {}", path.display());
        }
    }
    crate::history::record_after_bench(history, &run, &run_json)?;
    Ok(if run.interrupted {
        Outcome::Interrupted
    } else if run.cells.iter().any(|c| c.status == Status::Failed) {
        Outcome::SomeFailed
    } else {
        Outcome::Success
    })
}

/// The first Ctrl-C ends the cell in flight early (its samples are kept) and skips the rest, so
/// that run.json and report.md are still written; a second one exits at once.
fn handle_ctrl_c(talk: bool) {
    let result = ctrlc::set_handler(move || {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        crate::cell_process::interrupt_current();
        if talk {
            eprintln!(
                "\ninterrupted: finishing this cell and writing the results (Ctrl-C again to quit now)"
            );
        }
    });
    if let Err(e) = result {
        eprintln!("warning: Ctrl-C will stop chipbench without writing run.json: {e}");
    }
}

fn requested_skips(skipped: &[Skipped], report_skips: bool) -> usize {
    if report_skips { skipped.len() } else { 0 }
}

fn record(
    journal: &mut Journal,
    cells: &mut Vec<CellResult>,
    cell: CellResult,
) -> anyhow::Result<()> {
    journal.append(&cell)?;
    cells.push(cell);
    Ok(())
}

fn settings(args: &BenchArgs) -> Settings {
    let mut s = Settings::default();
    if args.quick {
        s.warmup = WarmUp {
            min_iterations: 3,
            min_duration: Duration::from_millis(100),
        };
        s.stop = StopRule {
            min_iterations: 20,
            min_duration: Duration::from_millis(300),
            max_duration: Duration::from_secs(2),
            ..StopRule::default()
        };
    }
    if let Some(n) = args.sessions {
        s.sessions = n.into();
    }
    if let Some(n) = args.warmup_iterations {
        s.warmup.min_iterations = n;
    }
    if let Some(d) = args.warmup_duration {
        s.warmup.min_duration = d;
    }
    if let Some(n) = args.min_iterations {
        s.stop.min_iterations = n.max(1);
    }
    if let Some(d) = args.min_duration {
        s.stop.min_duration = d;
    }
    if let Some(d) = args.max_duration {
        s.stop.max_duration = d;
    }
    if let Some(p) = args.target_ci {
        s.stop.target_relative_ci = p / 100.0;
    }
    if let Some(n) = args.accuracy_samples {
        s.accuracy_samples = n;
    }
    s.seed = args.seed;
    s.profile = args.operator_times || args.profile_alias;
    s
}

/// The targets whose fp32 outputs are the reference, in order of preference: tract's CPU device,
/// then, for runs that measure ONNX Runtime anyway (`with_ort`), its CPU provider, for models
/// tract cannot run (no other backend runs those either: wgpu imports through tract). Loading
/// ONNX Runtime only for that keeps it out of the other cells' processes.
pub(crate) fn reference_targets(
    registry: &[Box<dyn chipbench_core::Backend>],
    with_ort: bool,
) -> anyhow::Result<Vec<Target<'_>>> {
    let cpu_of = |name: &str| {
        let backend = registry.iter().find(|b| b.name() == name)?;
        let device = backend
            .devices()
            .ok()?
            .into_iter()
            .find(|d| d.id == "cpu")?;
        Some(Target {
            backend: backend.as_ref(),
            device,
        })
    };
    let tract = cpu_of("tract").context("the reference backend (tract:cpu) is unavailable")?;
    let ort = with_ort.then(|| cpu_of("ort")).flatten();
    Ok(std::iter::once(tract).chain(ort).collect())
}

/// `20261128T134502Z-3f9a`: sortable by time, unique enough for one machine.
fn run_id(started: SystemTime) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(started)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let nanos = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{stamp}-{:04x}", (nanos ^ std::process::id()) & 0xffff)
}

fn progress_bar(total: u64, visible: bool) -> ProgressBar {
    if !visible || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} cells, ETA {eta}  {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    // No steady tick: a drawing thread waking up during the timed loop would disturb it.
    bar
}
