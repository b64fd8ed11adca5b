//! `chipbench bench`: resolves models and backends into cells, measures them with the runner,
//! journals each cell as it finishes, and writes `run.json` and `report.md`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use chipbench_core::result::{CellResult, RunConfig, RunResult, SCHEMA, Status};
use chipbench_harness::journal::{Journal, write_atomically};
use chipbench_harness::memory::MemoryCap;
use chipbench_harness::plan::{self, Plan, PlannedCell, Resumed};
use chipbench_harness::protocol::JobContext;
use chipbench_harness::{Executor, FreshProcess, InProcess, Observer, Unavailable, targets};
use chipbench_runner::measure::INTERRUPTED;
use chipbench_runner::{MeasureSettings, StopRule, Target, WarmUp};
use clap::Args;
use clap::parser::ValueSource;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cmd::backends;
use crate::cmd::models;
use crate::hardware::Hardware;
use crate::{Outcome, UsageError};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A suite model name, zoo:NAME (a real trained model, see `chipbench zoo list`) or a path to
    /// any ONNX file (repeatable; default: the whole suite).
    #[arg(long = "model", short = 'm', value_name = "NAME|zoo:NAME|PATH")]
    models: Vec<String>,
    /// Backend, or backend:device (repeatable; default: every available one).
    #[arg(long = "backend", short = 'b', value_name = "NAME[:DEVICE]")]
    backends: Vec<String>,
    /// Intra-op threads; a comma-separated list measures each (default: physical cores).
    #[arg(long, value_delimiter = ',', value_name = "N[,N...]")]
    threads: Vec<usize>,
    #[command(flatten)]
    inputs: models::InputArgs,
    #[command(flatten)]
    scenario: crate::cmd::scenarios::ScenarioArgs,
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
    /// Folder of the built-in suite (default: ./models, else the one generated in the cache).
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
    /// prune-unstructured:S, prune-2:4, prune-channels:R, or chains (prune-2:4+int8-static);
    /// a fraction may be a sweep, prune-unstructured:0.1..0.5 (steps of 0.1) or A..B/STEP.
    /// Derived variants are cached (see --variant-cache) and compared with the fp32 model.
    #[arg(
        long = "variant",
        value_delimiter = ',',
        value_name = "RECIPE[,RECIPE...]"
    )]
    variants: Vec<String>,
    #[command(flatten)]
    calibration: crate::cmd::optimize::CalibrationArgs,
    /// Feeds output OUT of each inference to input IN of the next, in the accuracy check and the
    /// timed loop (a streaming model's state: silero-vad's stateN=state); repeatable.
    #[arg(long = "feedback", value_name = "OUT=IN", value_parser = parse_feedback)]
    feedback: Vec<(String, String)>,
    /// Folder of derived variants, keyed by source SHA-256, recipe, calibration settings and
    /// --keep-float policy (default: bench-results/.cache/variants); a second run reuses them.
    #[arg(long, value_name = "DIR")]
    variant_cache: Option<PathBuf>,
    /// A backend setting, KEY=VALUE (repeatable); see --help for the keys.
    #[arg(long = "set", value_name = "KEY=VALUE", long_help = set_help())]
    set: Vec<String>,
    #[command(flatten)]
    pub fleet: crate::cmd::fleet::FleetArgs,
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
pub fn backend_settings(pairs: &[String]) -> Result<BTreeMap<String, String>, UsageError> {
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

    /// The options of one shard of a fleet plan: the plan's (`self`), with what belongs to this
    /// host from its own command line (`now`): where results go, its engines, suite and models.
    fn for_shard(mut self: Box<Self>, now: BenchArgs) -> Result<BenchArgs, UsageError> {
        // What to measure is the plan's alone: every shard must measure the same cells.
        const THIS_HOSTS: [&str; 16] = [
            "--out",
            "--json",
            "--quiet",
            "--export",
            "--no-history",
            "--history-db",
            "--suite",
            "--ort-lib",
            "--variant-cache",
            "--ceilings",
            "--resume",
            "--plan",
            "--shard",
            "--shards",
            "--host-label",
            "--models-dir",
        ];
        if let Some(option) = given_options()
            .into_iter()
            .find(|o| !THIS_HOSTS.contains(&o.as_str()))
        {
            return Err(UsageError(format!(
                "{option} with --plan: the plan says what every shard measures; give it to \
                 `chipbench plan` (a shard's command line takes only {})",
                THIS_HOSTS.join(", ")
            )));
        }
        self.models = self
            .models
            .into_iter()
            .map(|m| now.fleet.relocate(m))
            .collect();
        self.out = now.out;
        self.json = now.json;
        self.quiet = now.quiet;
        self.export = now.export;
        self.no_history = now.no_history;
        self.history_db = now.history_db;
        self.suite = now.suite;
        self.engines = now.engines;
        self.variant_cache = now.variant_cache;
        self.ceilings = now.ceilings;
        self.resume = now.resume;
        self.fleet = now.fleet;
        Ok(*self)
    }
}

/// The `bench` options given on this process's command line (not defaulted, not from the
/// environment), as `--long` names.
fn given_options() -> Vec<String> {
    let command = crate::cli_command();
    let Ok(matches) = command.clone().try_get_matches_from(std::env::args_os()) else {
        return Vec::new();
    };
    let (Some(("bench", given)), Some(bench)) =
        (matches.subcommand(), command.find_subcommand("bench"))
    else {
        return Vec::new();
    };
    bench
        .get_arguments()
        .filter(|arg| given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine))
        .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
        .collect()
}

/// `chipbench plan`: the cells these options give, written to `output` as a fleet plan.
pub fn plan(
    args: BenchArgs,
    argv: Vec<String>,
    output: &std::path::Path,
) -> anyhow::Result<Outcome> {
    measure(args, argv, None, Some(output))
}

pub fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
    match &args.resume {
        Some(dir) => {
            let resumed = Resumed::load(dir).map_err(|e| UsageError(e.to_string()))?;
            let args = resume_args(&resumed.plan, dir, &args)?;
            measure(args, resumed.plan.argv.clone(), Some(resumed), None)
        }
        // The options after `bench`, which plan.json keeps for --resume.
        None => measure(args, std::env::args().skip(2).collect(), None, None),
    }
}

/// Measures the cells of `args`; with `planning`, writes them there as a fleet plan instead.
fn measure(
    args: BenchArgs,
    argv: Vec<String>,
    mut resumed: Option<Resumed>,
    planning: Option<&std::path::Path>,
) -> anyhow::Result<Outcome> {
    // A shard of a fleet plan runs the plan's options.
    let (args, node) = match &args.fleet.plan {
        Some(path) => {
            let node = crate::cmd::fleet::Node::prepare(path, &args.fleet)?;
            let planned = parse_options(&node.plan.argv, path)?;
            (planned.for_shard(args)?, Some(node))
        }
        None => (args, None),
    };
    if node.is_none()
        && planning.is_none()
        && !(args.fleet.on.is_empty() && args.fleet.shards.is_empty())
    {
        return Err(UsageError(
            "--on and --shards split a plan: give them to `chipbench plan`, then measure its \
             shards with `bench --plan`"
                .into(),
        )
        .into());
    }
    let mut settings = settings(&args);
    settings.backend_settings = backend_settings(&args.set)?;
    let started = SystemTime::now();
    let exports = crate::cmd::report::export_manager(&args.export)?;
    let history = crate::cmd::history::open_for_bench(args.no_history, &args.history_db);
    let (run_id, started_at) = match &resumed {
        Some(r) => (r.plan.run_id.clone(), r.plan.started_at.clone()),
        None => (
            run_id(started),
            humantime::format_rfc3339_seconds(started).to_string(),
        ),
    };
    let mut host = chipbench_probe::host();
    let context = JobContext {
        input_files: input_file_paths(&args.inputs.input_files),
        input_values: args.inputs.values()?,
        engines: args.engines.to_map(),
        energy: None,
    };
    let edge = crate::edge::Emulation::prepare(&args.edge, &context, args.cell_timeout)?;
    let threads: Vec<Option<usize>> = if args.threads.is_empty() && planning.is_some() {
        // Each host of a fleet uses its own cores.
        vec![None]
    } else if args.threads.is_empty() {
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

    let mut request = args.inputs.request()?;
    request.budget = crate::edge::memory_budget(&args.edge, edge.as_ref());
    request.accuracy_samples = settings.accuracy_samples;
    request.feedback = args.feedback.clone();
    if !args.feedback.is_empty() && args.scenario.any_load() {
        return Err(UsageError(
            "--feedback runs single-stream only (one inference feeds the next)".into(),
        )
        .into());
    }
    let suite_dir = models::suite_dir(args.suite.as_deref())?;
    let prepared = models::resolve(&suite_dir, &args.models, &request)?;
    if let Some(node) = &node {
        node.plan
            .check_models(prepared.iter().map(|m| m.record()))
            .map_err(|e| UsageError(e.to_string()))?;
    }
    let recipes = crate::cmd::optimize::parse_variants(&args.variants)?;
    let derive_options = args.calibration.options()?;
    let cache = crate::cmd::optimize::variant_cache(args.variant_cache.as_deref());
    if edge.is_some() && args.scenario.any_load() {
        return Err(UsageError(
            "--scenario offline, server and multi-stream run on the host's own cores; \
             --edge-profile measures single-stream only"
                .into(),
        )
        .into());
    }

    let registry = backends::registry(&args.engines);
    crate::cmd::devices::add_backend_gpus(&mut host, &registry);
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
    // Backends the user asked for by name but that cannot run here: a skipped cell each, so
    // that the gap is visible in the results.
    let unavailable: &[Unavailable] = if report_skips { &skipped } else { &[] };
    // Derived once the backends are known: a weight-only variant takes the representation each
    // backend runs fast.
    let backend_names: Vec<String> = targets
        .iter()
        .map(|t| t.backend.name().to_string())
        .chain(unavailable.iter().map(|u| u.backend().to_string()))
        .collect();
    let prepared = crate::cmd::optimize::expand(
        prepared,
        &recipes,
        &derive_options,
        &cache,
        &backend_names,
        !args.quiet,
    );
    let scenarios = args.scenario.cells(args.seed, &prepared)?;
    let with_ort = targets.iter().any(|t| t.backend.name() == "ort");
    let references = targets::references(&registry, with_ort).map_err(anyhow::Error::msg)?;
    let work = plan::plan(&prepared, &threads, &targets, unavailable, &scenarios);
    if let Some(output) = planning {
        let cells = work.into_iter().map(|w| w.cell).collect();
        let threads_fixed = !args.threads.is_empty();
        return crate::cmd::fleet::write(
            cells,
            argv,
            &args.fleet,
            threads_fixed,
            output,
            !args.quiet,
        );
    }
    let work = match &node {
        Some(node) => {
            let work = node.select(work, &skipped);
            if !args.quiet {
                eprintln!("{}", node.describe(work.len()));
            }
            work
        }
        None => work,
    };

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
        scenario: args.scenario.names(),
        settings,
        quick: args.quick,
        edge_profile: edge.as_ref().map(|e| e.record()),
    };
    if let Some(node) = &node {
        node.plan.write(
            &journal
                .dir()
                .join(chipbench_harness::shard::FLEET_PLAN_FILE),
        )?;
    }
    match &resumed {
        Some(r) => r.check(&work).map_err(|e| UsageError(e.to_string()))?,
        None => Plan {
            run_id: run_id.clone(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            started_at: started_at.clone(),
            host: host.clone(),
            config: config.clone(),
            cells: work.iter().map(|w| w.cell.clone()).collect(),
            argv,
        }
        .write(journal.dir())?,
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
    let hardware = Hardware::prepare(
        &host,
        &targets,
        args.idle_baseline,
        args.ceilings.as_deref(),
        talk,
    )?;
    let energy = Some(hardware.energy_plan());
    let mut executor: Box<dyn Executor> = match (edge, args.in_process) {
        (Some(e), _) => Box::new(e.executor),
        (None, true) => Box::new(InProcess::new(references, energy)),
        (None, false) => Box::new(FreshProcess::new(
            std::env::current_exe().context("cannot find the chipbench binary to run cells in")?,
            JobContext { energy, ..context },
            args.cell_timeout,
            request
                .budget
                .clone()
                .map(|(bytes, source)| (MemoryCap::for_cells(bytes), source)),
        )),
    };
    let mut observer = Progress {
        bar: progress_bar(work.len() as u64, talk),
        hardware: &hardware,
    };
    handle_ctrl_c(talk);
    let measured = chipbench_harness::run(
        &work,
        &config.settings,
        executor.as_mut(),
        &mut journal,
        resumed.as_mut(),
        &mut observer,
    )?;
    drop(executor);
    let cells = measured.cells;
    let speed_checks = measured.speed_checks;
    let peaks = measured.peaks;
    let progress = observer.bar;
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
        peaks,
        hosts: Vec::new(),
        shard: node.as_ref().map(|n| {
            n.choice
                .record(&n.plan, n.pool.as_deref(), n.label.as_deref())
        }),
        fleet: None,
    };
    let run_json = finish(&run, &journal, args.json, talk)?;
    for path in exports.write(std::slice::from_ref(&run))? {
        if talk {
            eprintln!("wrote {}", path.display());
        }
    }
    crate::cmd::history::record_after_bench(history, &run, &run_json)?;
    Ok(if run.interrupted {
        Outcome::Interrupted
    } else if run.cells.iter().any(|c| c.status == Status::Failed) {
        Outcome::SomeFailed
    } else {
        Outcome::Success
    })
}

/// Ends a run folder: `run.json` and `report.md` (with the variant summary) beside the journal;
/// the run JSON on stdout with `json`; the table and where the files are unless quiet (on stderr
/// when stdout has the JSON). Returns the path of `run.json`.
pub fn finish(
    run: &RunResult,
    journal: &Journal,
    json: bool,
    talk: bool,
) -> anyhow::Result<PathBuf> {
    let run_json = journal.finish(run)?;
    let variant_summary = crate::cmd::optimize::variant_summary(run);
    let mut markdown = chipbench_report::markdown::render(run);
    if !variant_summary.is_empty() {
        markdown += &format!("\n## Variants\n\n```\n{variant_summary}```\n");
    }
    write_atomically(&journal.dir().join("report.md"), markdown.as_bytes())?;
    if json {
        println!("{}", serde_json::to_string_pretty(run)?);
    }
    if talk {
        let table = format!(
            "{}{variant_summary}",
            chipbench_report::terminal::render(run)
        );
        let location = format!(
            "results: {} (and report.md, cells.jsonl beside it)",
            run_json.display()
        );
        if json {
            eprint!("{table}");
            eprintln!("{location}");
        } else {
            print!("{table}");
            println!("{location}");
        }
    }
    Ok(run_json)
}

/// The first Ctrl-C ends the cell in flight early (its samples are kept) and skips the rest, so
/// that run.json and report.md are still written; a second one exits at once.
fn handle_ctrl_c(talk: bool) {
    let result = ctrlc::set_handler(move || {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        chipbench_harness::child::interrupt_current();
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

/// `--feedback OUT=IN`
fn parse_feedback(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((o, i)) if !o.is_empty() && !i.is_empty() => Ok((o.to_string(), i.to_string())),
        _ => Err(format!("'{text}': expected OUT=IN, e.g. stateN=state")),
    }
}

fn settings(args: &BenchArgs) -> MeasureSettings {
    let mut s = MeasureSettings {
        feedback: args.feedback.clone(),
        ..MeasureSettings::default()
    };
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
    s.operator_times = args.operator_times || args.profile_alias;
    s
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

/// The options of a resumed run: the plan's, writing into `dir`, printing as `now` asks.
fn resume_args(plan: &Plan, dir: &std::path::Path, now: &BenchArgs) -> anyhow::Result<BenchArgs> {
    let args = parse_options(&plan.argv, &dir.join(plan::PLAN_FILE))?;
    Ok(args.for_resume(dir, now))
}

/// The `bench` options kept in `file` (a run's plan.json, a fleet plan).
fn parse_options(argv: &[String], file: &std::path::Path) -> Result<Box<BenchArgs>, UsageError> {
    let words = ["chipbench", "bench"]
        .into_iter()
        .map(String::from)
        .chain(argv.iter().cloned());
    let cli = <crate::Cli as clap::Parser>::try_parse_from(words).map_err(|e| {
        UsageError(format!(
            "{}: its options no longer parse: {e}",
            file.display()
        ))
    })?;
    let crate::Command::Bench(args) = cli.command else {
        unreachable!("the words start with `bench`")
    };
    Ok(args)
}

/// The progress bar, and the host's roofline bound added to each measured cell.
struct Progress<'h> {
    bar: ProgressBar,
    hardware: &'h Hardware,
}

impl Observer for Progress<'_> {
    fn cell_started(&mut self, cell: &PlannedCell) {
        self.bar.set_message(format!(
            "{} on {}:{}",
            cell.model.name, cell.backend.name, cell.backend.device
        ));
    }

    fn cell_measured(&mut self, cell: &mut CellResult) {
        self.hardware.bound(cell);
    }

    fn cell_done(&mut self) {
        self.bar.inc(1);
    }

    fn rounds_started(&mut self, sessions: usize, _rounds: usize) {
        self.bar.inc_length(sessions as u64);
    }

    fn round_started(&mut self, round: usize, rounds: usize) {
        self.bar
            .set_message(format!("further sessions, round {round} of {rounds}"));
    }

    fn session_done(&mut self) {
        self.bar.inc(1);
    }
}

/// `--input-file NAME=PATH` pairs by input name.
fn input_file_paths(pairs: &[String]) -> BTreeMap<String, PathBuf> {
    pairs
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, path)| (name.to_string(), PathBuf::from(path)))
        .collect()
}
