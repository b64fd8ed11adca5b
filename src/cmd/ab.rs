//! `chipbench ab`: a paired A/B gate in one job. Both sides (another model file, another ONNX
//! Runtime library, another chipbench build) are measured in interleaved rounds on the same host
//! at the same time of day, and the rounds' ratios give the gate's verdict. Exit 0 when no cell
//! regressed, 1 when one did, 2 on a usage error.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use chipbench_core::paired::{AB_SCHEMA, AbRun, AbSettings, PairedCell, SideRecord};
use chipbench_harness::paired::{self, Order, Rounds, SideSpec};
use chipbench_harness::plan::{Cell, Prepared};
use chipbench_harness::protocol::{Job, JobContext, allowed_cpus};
use chipbench_report::gate::paired::{MIN_PROCESSES, judge};
use chipbench_report::gate::signed_pct;
use chipbench_runner::{MeasureSettings, ModelUnderTest};
use clap::Args;

use crate::cmd::{backends, compare, models};
use crate::{Outcome, UsageError};

#[derive(Args)]
pub struct AbArgs {
    /// A model both sides run (repeatable): a suite name, zoo:NAME or an ONNX file [default: the
    /// built-in suite].
    #[arg(long = "model", short = 'm', value_name = "NAME|FILE")]
    models: Vec<String>,
    /// Side A's model, instead of --model (with --b-model): the question "is the new file
    /// slower?".
    #[arg(
        long,
        value_name = "NAME|FILE",
        requires = "b_model",
        conflicts_with = "models"
    )]
    a_model: Option<String>,
    /// Side B's model (see --a-model).
    #[arg(long, value_name = "NAME|FILE", requires = "a_model")]
    b_model: Option<String>,
    /// Side A's suite folder: --model names (and the default suite) resolve there for side A.
    #[arg(long, value_name = "DIR", conflicts_with = "a_model")]
    a_suite: Option<PathBuf>,
    /// Side B's suite folder (a changed suite, such as scripts/ab-power.sh's twin).
    #[arg(long, value_name = "DIR", conflicts_with = "b_model")]
    b_suite: Option<PathBuf>,
    /// Backend and device both sides run on (repeatable) [default: tract].
    #[arg(long = "backend", short = 'b', value_name = "BACKEND[:DEVICE]")]
    backends: Vec<String>,
    /// Side A's chipbench binary (a build of the base branch) [default: this one].
    #[arg(long, value_name = "PATH")]
    a_bin: Option<PathBuf>,
    /// Side B's chipbench binary (a build of the pull request) [default: this one].
    #[arg(long, value_name = "PATH")]
    b_bin: Option<PathBuf>,
    /// Side A's ONNX Runtime library (the dependency-upgrade question).
    #[arg(long, value_name = "PATH")]
    a_ort_lib: Option<PathBuf>,
    /// Side B's ONNX Runtime library.
    #[arg(long, value_name = "PATH")]
    b_ort_lib: Option<PathBuf>,
    /// Side A's model variant, derived from its model as `bench --variant` does (fp16,
    /// int8-static, prune-2:4, chains...): the question "is the int8 variant faster?"
    /// [default: fp32, the file as given].
    #[arg(long, value_name = "RECIPE")]
    a_variant: Option<String>,
    /// Side B's model variant (see --a-variant).
    #[arg(long, value_name = "RECIPE")]
    b_variant: Option<String>,
    #[command(flatten)]
    calibration: crate::cmd::optimize::CalibrationArgs,
    /// Folder of derived variants (as `bench --variant-cache`).
    #[arg(long, value_name = "DIR")]
    variant_cache: Option<PathBuf>,
    /// A backend setting of both sides, KEY=VALUE (repeatable; the keys of `bench --set`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A backend setting of side A only, over --set (repeatable): the question "does
    /// ort.opt_level=basic cost anything?".
    #[arg(long = "a-set", value_name = "KEY=VALUE")]
    a_set: Vec<String>,
    /// A backend setting of side B only (see --a-set).
    #[arg(long = "b-set", value_name = "KEY=VALUE")]
    b_set: Vec<String>,
    /// Threads of each side's session [default: 1].
    #[arg(long, default_value_t = 1, value_name = "N")]
    threads: usize,
    /// Side A's threads, over --threads.
    #[arg(long, value_name = "N")]
    a_threads: Option<usize>,
    /// Side B's threads, over --threads.
    #[arg(long, value_name = "N")]
    b_threads: Option<usize>,
    /// Rounds per model and backend; each times both sides once.
    #[arg(long, default_value_t = 30, value_name = "N")]
    rounds: usize,
    /// Pairs of fresh processes the rounds are spread over (the unit of the statistics: a
    /// process's memory placement shifts all its windows by a few percent).
    #[arg(long, default_value_t = 10, value_name = "N")]
    processes: usize,
    /// Warm-up of each process's session before its first window.
    #[arg(long, default_value = "200ms", value_parser = crate::parse_duration, value_name = "TIME")]
    warmup: Duration,
    /// Each side's timed window per round.
    #[arg(long, default_value = "100ms", value_parser = crate::parse_duration, value_name = "TIME")]
    window: Duration,
    /// Side order per round: random (drawn from --seed) or abba (alternating).
    #[arg(long, default_value = "random", value_name = "random|abba")]
    order: Order,
    /// Both sides at the same time, each pinned to CPUs of its own (half of the allowed CPUs
    /// each), paired by time slice, instead of one after the other.
    #[arg(long)]
    duet: bool,
    /// The change that matters, e.g. 3%: regressed above 1 + t, improved below 1 / (1 + t)
    /// [default: 3%].
    #[arg(long, default_value = "3%", value_parser = compare::parse_threshold, value_name = "PERCENT")]
    threshold: f64,
    /// Family-wise significance level over the models and backends compared (Holm).
    #[arg(long, default_value_t = 0.01, value_name = "P")]
    alpha: f64,
    /// Seed of the side order and of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A side's load or window still unanswered after this long fails the cell.
    #[arg(long, default_value = "2m", value_parser = crate::parse_duration, value_name = "TIME")]
    cell_timeout: Duration,
    /// Output folder for ab.json [default: bench-results/ab-<time>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print ab.json on stdout instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    inputs: models::InputArgs,
    /// The built-in suite's folder [default: ./models, else the cache].
    #[arg(long, value_name = "DIR")]
    suite: Option<PathBuf>,
}

pub fn run(args: AbArgs) -> anyhow::Result<Outcome> {
    if args.processes < MIN_PROCESSES {
        return Err(UsageError(format!(
            "--processes {}: a verdict needs at least {MIN_PROCESSES} pairs of processes",
            args.processes
        ))
        .into());
    }
    if args.rounds < args.processes {
        return Err(UsageError(format!(
            "--rounds {} is fewer than --processes {}: each pair of processes needs a round",
            args.rounds, args.processes
        ))
        .into());
    }
    let threads = [
        args.a_threads.unwrap_or(args.threads),
        args.b_threads.unwrap_or(args.threads),
    ];
    if threads.contains(&0) {
        return Err(UsageError("--threads must be at least 1".into()).into());
    }
    let side_settings = |own: &[String]| {
        let both = crate::cmd::bench::backend_settings(&args.set)?;
        let mut settings = both;
        settings.extend(crate::cmd::bench::backend_settings(own)?);
        Ok::<_, UsageError>(settings)
    };
    let backend_settings = [side_settings(&args.a_set)?, side_settings(&args.b_set)?];
    let recipes = [&args.a_variant, &args.b_variant].map(|text| {
        let texts: Vec<String> = text.iter().cloned().collect();
        crate::cmd::optimize::parse_variants(&texts)
    });
    let [a_recipes, b_recipes] = recipes;
    let recipes = [a_recipes?, b_recipes?];
    if recipes.iter().any(|r| r.len() != 1) {
        return Err(UsageError(
            "--a-variant and --b-variant take one recipe each, not a sweep".into(),
        )
        .into());
    }
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return Err(UsageError(format!("--alpha {} must lie between 0 and 1", args.alpha)).into());
    }
    let cpus = duet_cpus(args.duet, threads)?;
    let bin = |given: &Option<PathBuf>| -> anyhow::Result<PathBuf> {
        match given {
            Some(path) if path.is_file() => Ok(paired::absolute(path)),
            Some(path) => {
                Err(UsageError(format!("{}: no such chipbench binary", path.display())).into())
            }
            None => Ok(paired::this_binary().map_err(UsageError)?),
        }
    };
    let bins = [bin(&args.a_bin)?, bin(&args.b_bin)?];
    for lib in [&args.a_ort_lib, &args.b_ort_lib].into_iter().flatten() {
        if !lib.is_file() {
            return Err(
                UsageError(format!("{}: no such ONNX Runtime library", lib.display())).into(),
            );
        }
    }

    let request = args.inputs.request()?;
    let default_suite = models::suite_dir(args.suite.as_deref())?;
    let derive_options = args.calibration.options()?;
    let cache = crate::cmd::optimize::variant_cache(args.variant_cache.as_deref());
    let resolve = |side: usize,
                   suite: &Option<PathBuf>,
                   names: &[String]|
     -> anyhow::Result<Vec<ModelUnderTest>> {
        let suite = suite.as_deref().unwrap_or(&default_suite);
        let prepared = models::resolve(suite, names, &request)?;
        // One model per side: a weight-only recipe that leaves the representation to the
        // backend is written in the one every engine runs (DequantizeLinear).
        crate::cmd::optimize::expand(
            prepared,
            &recipes[side],
            &derive_options,
            &cache,
            &[],
            !args.json,
        )
        .into_iter()
        .map(|p| match p {
            Prepared::Ready(m) => Ok(m),
            // A variant that could not be derived has no file: name the model instead.
            Prepared::Broken { record, error } if record.path.is_empty() => {
                Err(UsageError(format!("{} ({}): {error}", record.name, record.variant)).into())
            }
            Prepared::Broken { record, error } => {
                Err(UsageError(format!("{}: {error}", record.path)).into())
            }
        })
        .collect()
    };
    // Each cell's two models: --a-model against --b-model, or each --model (the suite by
    // default) as each side's suite has it.
    let pairs: Vec<[ModelUnderTest; 2]> = match (&args.a_model, &args.b_model) {
        (Some(a), Some(b)) => {
            let a = resolve(0, &args.a_suite, std::slice::from_ref(a))?.remove(0);
            let b = resolve(1, &args.b_suite, std::slice::from_ref(b))?.remove(0);
            vec![[a, b]]
        }
        _ => {
            let (a, b) = (
                resolve(0, &args.a_suite, &args.models)?,
                resolve(1, &args.b_suite, &args.models)?,
            );
            let names = |side: &[ModelUnderTest]| -> Vec<String> {
                side.iter().map(|m| m.record.name.clone()).collect()
            };
            if names(&a) != names(&b) {
                return Err(UsageError(format!(
                    "the sides' suites hold different models: A {:?}, B {:?}",
                    names(&a),
                    names(&b)
                ))
                .into());
            }
            a.into_iter().zip(b).map(|(a, b)| [a, b]).collect()
        }
    };
    let engines = backends::EngineArgs::default();
    let registry = backends::registry(&engines);
    let wanted = if args.backends.is_empty() {
        vec!["tract".to_string()]
    } else {
        args.backends.clone()
    };
    let (targets, skipped) = backends::select(&registry, &wanted)?;
    if let Some(s) = skipped.first() {
        return Err(UsageError(format!("{}: {}", s.label, s.reason)).into());
    }

    let started = SystemTime::now();
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("bench-results").join(format!(
            "ab-{}",
            humantime::format_rfc3339_seconds(started)
                .to_string()
                .replace(':', "")
        ))
    });
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let settings = AbSettings {
        rounds: args.rounds,
        processes: args.processes,
        window_s: args.window.as_secs_f64(),
        order: args.order.name().into(),
        duet: args.duet,
        threshold: args.threshold,
        alpha: args.alpha,
        seed: args.seed,
    };
    let rounds = Rounds {
        count: args.rounds,
        processes: args.processes,
        window: args.window,
        order: args.order,
        duet: args.duet,
        seed: args.seed,
        timeout: args.cell_timeout,
        scratch: out.clone(),
        cpus,
    };
    let measure = backend_settings.map(|backend_settings| {
        let mut measure = MeasureSettings {
            seed: args.seed,
            accuracy_samples: 0,
            backend_settings,
            ..MeasureSettings::default()
        };
        measure.warmup.min_duration = args.warmup;
        measure
    });
    let ort_libs = [&args.a_ort_lib, &args.b_ort_lib];
    let mut cells = Vec::new();
    for pair in &pairs {
        for target in &targets {
            let specs: Vec<SideSpec> = (0..2)
                .map(|side| {
                    let model = &pair[side];
                    let cell = Cell {
                        model,
                        target,
                        threads: Some(threads[side]),
                        scenario: None,
                    };
                    let mut context = JobContext::default();
                    if let Some(lib) = ort_libs[side] {
                        context.engines.insert(
                            "ort_lib".into(),
                            paired::absolute(lib).display().to_string(),
                        );
                    }
                    SideSpec {
                        bin: bins[side].clone(),
                        job: Job::new(&cell, &measure[side], &context),
                        bench_args: bench_args(model),
                    }
                })
                .collect();
            if !args.json {
                eprintln!(
                    "{} against {} on {}: {} rounds of {} per side",
                    pair[0].record.name,
                    pair[1].record.name,
                    target.label(),
                    args.rounds,
                    humantime::format_duration(args.window)
                );
            }
            cells.push(measure_cell([&specs[0], &specs[1]], &rounds));
        }
    }
    let regressed = judge(&mut cells, &settings);
    let run = AbRun {
        schema: AB_SCHEMA.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        started_at: humantime::format_rfc3339_seconds(started).to_string(),
        host: chipbench_probe::host(),
        settings,
        cells,
    };
    let json = serde_json::to_string_pretty(&run)?;
    std::fs::write(out.join("ab.json"), &json)
        .with_context(|| format!("cannot write {}", out.join("ab.json").display()))?;
    if args.json {
        println!("{json}");
    } else {
        print!("{}", render(&run));
        eprintln!("results: {}", out.join("ab.json").display());
    }
    Ok(if regressed {
        Outcome::Regressed
    } else if run.cells.iter().any(|c| c.error.is_some()) {
        Outcome::SomeFailed
    } else {
        Outcome::Success
    })
}

/// The CPUs of each side under --duet: the allowed CPUs split in two halves.
fn duet_cpus(duet: bool, threads: [usize; 2]) -> anyhow::Result<Option<[Vec<usize>; 2]>> {
    if !duet {
        return Ok(None);
    }
    let allowed = allowed_cpus().map_err(|e| UsageError(format!("--duet: {e}")))?;
    let half = allowed.len() / 2;
    let most = threads[0].max(threads[1]);
    if half < most {
        return Err(UsageError(format!(
            "--duet runs both sides at once on CPUs of their own: {} allowed CPUs give each side \
             {half}, fewer than the {most} threads of a side",
            allowed.len(),
        ))
        .into());
    }
    Ok(Some([
        allowed[..half].to_vec(),
        allowed[half..2 * half].to_vec(),
    ]))
}

/// How a whole-process `bench` of another build is told the model: its file and bound shapes.
fn bench_args(model: &ModelUnderTest) -> Vec<String> {
    let mut args = vec!["--model".to_string(), model.path.display().to_string()];
    for input in &model.bound {
        let shape: Vec<String> = input.shape.iter().map(usize::to_string).collect();
        args.push("--input".into());
        args.push(format!("{}:{}", input.name, shape.join("x")));
    }
    args
}

/// Runs the cell's rounds; a failure is the cell's error (with the rounds before it kept).
fn measure_cell(specs: [&SideSpec; 2], rounds: &Rounds) -> PairedCell {
    let measured = paired::run(specs, rounds);
    let record = |side: usize| {
        let spec = specs[side];
        let (mode, reason) = measured.modes[side].clone();
        SideRecord {
            model: spec.job.model.name.clone(),
            path: spec.job.path.display().to_string(),
            variant: spec.job.model.variant.clone(),
            backend: spec.job.backend.clone(),
            threads: spec.job.threads,
            settings: spec.job.settings.backend_settings.clone(),
            bin: spec.bin.display().to_string(),
            ort_lib: spec.job.engines.get("ort_lib").cloned(),
            mode: mode.into(),
            mode_reason: reason,
        }
    };
    PairedCell {
        a: record(0),
        b: record(1),
        rounds: measured.rounds.clone(),
        verdict: None,
        error: measured.error.clone(),
        provenance: provenance(rounds),
    }
}

fn provenance(rounds: &Rounds) -> std::collections::BTreeMap<String, String> {
    let how = if rounds.duet {
        "both sides at the same time, each pinned to CPUs of its own"
    } else {
        "one side after the other, the order per round drawn at random or alternating (settings.order)"
    };
    [
        (
            "rounds",
            format!(
                "measured: monotonic clock around each inference; per round each side's median over a \
                 window of {} of its held session (loaded and warmed up once per process, {} pairs of \
                 fresh processes; whole-process sides: a fresh bench process per round), {how}",
                humantime::format_duration(rounds.window),
                rounds.processes
            ),
        ),
        (
            "verdict",
            "derived: per pair of processes the mean ln(B/A) over its rounds; ratio = exp(mean over \
             the pairs), 95 % CI by Student's t over the pairs, p by the one-sample t test (Wilcoxon's \
             signed-rank p beside it), Holm over the run's cells"
                .into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A side in the table: its model, with its variant, and its threads and settings where they
/// differ from the other side's.
fn side_label(side: &SideRecord, other: &SideRecord) -> String {
    let mut label = side.model.clone();
    if side.variant != "fp32" {
        label += &format!(" {}", side.variant);
    }
    if side.threads != other.threads {
        label += &format!(" threads={}", side.threads.unwrap_or(0));
    }
    for (key, value) in &side.settings {
        if other.settings.get(key) != Some(value) {
            label += &format!(" {key}={value}");
        }
    }
    label
}

/// The verdict table.
fn render(run: &AbRun) -> String {
    let labels: Vec<[String; 2]> = run
        .cells
        .iter()
        .map(|c| [side_label(&c.a, &c.b), side_label(&c.b, &c.a)])
        .collect();
    let width = labels
        .iter()
        .flatten()
        .map(String::len)
        .fold(22, usize::max);
    let mut text = format!(
        "{:<width$} {:<width$} {:<10} {:>7} {:>10} {:>18} {:>9}  verdict\n",
        "A", "B", "backend", "rounds", "B/A", "95 % CI", "p (Holm)"
    );
    for (c, [a, b]) in run.cells.iter().zip(&labels) {
        let row = match (&c.verdict, &c.error) {
            (Some(v), _) => format!(
                "{:>7} {:>10} {:>18} {:>9}  {}: {}",
                c.rounds.len(),
                signed_pct(v.ratio),
                format!("{} .. {}", signed_pct(v.ci95[0]), signed_pct(v.ci95[1])),
                format!("{:.2e}", v.p_adjusted),
                v.verdict,
                v.reason
            ),
            (None, Some(e)) => format!("{:>7}  failed: {e}", c.rounds.len()),
            (None, None) => String::new(),
        };
        text += &format!("{a:<width$} {b:<width$} {:<10} {row}\n", c.a.backend);
        for side in [&c.a, &c.b] {
            if let Some(why) = &side.mode_reason {
                text += &format!("  {} ran as whole processes: {why}\n", side.bin);
            }
        }
    }
    text += &format!(
        "B/A: measured, each side's median latency over a window of {} per round (monotonic \
         clock), {} rounds over {} pairs of fresh processes{}; derived, exp(mean ln(B/A)) over the \
         process pairs, 95 % CI by Student's t, p by the t test, Holm-adjusted over the cells.\n",
        humantime::format_duration(Duration::from_secs_f64(run.settings.window_s)),
        run.settings.rounds,
        run.settings.processes,
        if run.settings.duet {
            ", both sides at once on CPUs of their own"
        } else {
            ""
        }
    );
    text
}
