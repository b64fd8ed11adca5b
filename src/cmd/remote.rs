//! `chipbench remote --ssh user@host -- [bench options]`: benchmarks a real device. Copies a
//! chipbench built for it and the selected models there with the system `scp`, runs `chipbench
//! bench` there over `ssh`, streams each cell back as the device's journal gets it, fetches
//! `run.json`, and writes the local reports and history entry with the device's own host
//! fingerprint. Every connection has bounded time-outs; when the connection is lost, the cells that
//! finished are kept and the others fail with the reason.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use chipbench_core::result::{RunResult, Status};
use chipbench_harness::journal::Journal;
use chipbench_harness::journal::JournalError;
use chipbench_harness::protocol::Message;
use chipbench_harness::remote::{self, Received};
use chipbench_harness::shard::FleetPlan;
use chipbench_harness::ssh::{self, SshTarget};
use chipbench_optimize::suite::Suite;
use chipbench_runner::measure::INTERRUPTED;
use clap::Args;
use clap::parser::ValueSource;

use crate::cmd::models;
use crate::{Outcome, UsageError};

#[derive(Args)]
pub struct RemoteArgs {
    /// The device: user@host, or a host alias of your ssh configuration.
    #[arg(long, value_name = "USER@HOST")]
    ssh: String,
    /// The device's ssh port.
    #[arg(long, short = 'p', value_name = "N")]
    port: Option<u16>,
    /// The private key ssh and scp authenticate with.
    #[arg(long, short = 'i', value_name = "FILE")]
    identity: Option<PathBuf>,
    /// An ssh option for every connection (repeatable), e.g. -o StrictHostKeyChecking=accept-new.
    #[arg(long = "ssh-option", short = 'o', value_name = "KEY=VALUE")]
    ssh_options: Vec<String>,
    /// The device's Rust target (default: from its `uname -m`, e.g. aarch64-unknown-linux-gnu).
    #[arg(long, value_name = "TRIPLE")]
    target: Option<String>,
    /// chipbench built for the device (default: this binary when the device has this host's
    /// target, else what scripts/build-arm.sh builds: target/cross/TRIPLE/chipbench).
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// How long to wait for each connection to open.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration, value_name = "TIME")]
    connect_timeout: Duration,
    /// Maximum duration of the whole remote run: copying, benchmarking, fetching. The cells not
    /// finished by then fail with a time-out.
    #[arg(long, default_value = "30m", value_parser = crate::parse_duration, value_name = "TIME")]
    timeout: Duration,
    /// The folder on the device under which a temporary run folder is created (removed after).
    #[arg(long, default_value = "/tmp", value_name = "DIR")]
    remote_dir: String,
    /// Leave the run folder on the device.
    #[arg(long)]
    keep_remote: bool,
    /// The built-in suite to copy models from (default: ./models, else the one generated in the
    /// cache).
    #[arg(long, value_name = "DIR")]
    suite: Option<PathBuf>,
    /// Local output folder (default: bench-results/<run-id>/).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Do not record the run in the history database.
    #[arg(long)]
    no_history: bool,
    /// The history database the run is recorded in.
    #[arg(long, value_name = "FILE", default_value = chipbench_report::history::DEFAULT_PATH)]
    history_db: PathBuf,
    /// Print the run JSON on stdout and nothing else there.
    #[arg(long)]
    json: bool,
    /// No progress lines and no table.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// `chipbench bench` options for the device, after `--`: -- --quick --backend tract -m mlp.
    #[arg(last = true, value_name = "BENCH OPTIONS")]
    bench: Vec<String>,
}

/// Bench options that `remote` sets itself, or that name local files it does not copy.
const OWN_OPTIONS: [(&str, &str); 11] = [
    (
        "out",
        "--out: give it to chipbench remote (the local output folder)",
    ),
    ("json", "--json: give it to chipbench remote"),
    ("quiet", "--quiet: give it to chipbench remote"),
    (
        "no_history",
        "--no-history: give it to chipbench remote (the history is local)",
    ),
    (
        "history_db",
        "--history-db: give it to chipbench remote (the history is local)",
    ),
    (
        "suite",
        "--suite: give it to chipbench remote, which copies the models from it",
    ),
    (
        "export",
        "--export: render the fetched run with `chipbench report` instead",
    ),
    (
        "ceilings",
        "--ceilings names a local file; measure the device's with `chipbench roofline` there",
    ),
    (
        "variant_cache",
        "--variant-cache names a local folder; the device derives and caches its own",
    ),
    (
        "edge_profile",
        "--edge-profile emulates a device on a host; on the device itself, leave it out",
    ),
    (
        "models_dir",
        "--models-dir: chipbench remote copies a plan's model files to the device itself",
    ),
];

/// The bench options as the device gets them, and the local files they need there.
struct Forwarded {
    args: Vec<String>,
    /// Suite model files to copy into the device's `models/` (suite.toml always goes).
    suite_models: Vec<PathBuf>,
    /// Other local files and where they go in the device's run folder.
    files: Vec<(PathBuf, String)>,
    suite_toml: PathBuf,
    /// The fleet plan the device measures a shard of (`--plan`).
    plan: Option<PathBuf>,
}

impl Forwarded {
    fn parse(tokens: &[String], suite_dir: &Path) -> anyhow::Result<Forwarded> {
        let command = crate::cmd::bench::BenchArgs::augment_args(
            clap::Command::new("bench").no_binary_name(true),
        );
        let bench_command = || command.clone();
        let matches = bench_command().try_get_matches_from(tokens).map_err(|e| {
            let text = e.to_string();
            UsageError(format!(
                "the bench options after --: {}",
                text.lines()
                    .next()
                    .unwrap_or("invalid")
                    .trim_start_matches("error: ")
            ))
        })?;
        for (id, why) in OWN_OPTIONS {
            if matches.value_source(id) == Some(ValueSource::CommandLine) {
                return Err(
                    UsageError(format!("the bench options after -- cannot hold {why}")).into(),
                );
            }
        }
        let suite = Suite::load(suite_dir).with_context(|| "cannot read the built-in suite")?;
        let mut suite_models: Vec<PathBuf> = Vec::new();
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        let mut add_suite_model = |name: &str| -> bool {
            match suite.model(name) {
                Some(m) => {
                    let path = suite_dir.join(&m.file);
                    if !suite_models.contains(&path) {
                        suite_models.push(path);
                    }
                    true
                }
                None => false,
            }
        };
        let mut add_file = |local: &str| -> Result<String, UsageError> {
            let path = PathBuf::from(local);
            if !path.is_file() {
                return Err(UsageError(format!(
                    "{local}: no such file to copy to the device"
                )));
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // A folder per file keeps its name, and so the model name bench derives from it.
            let remote = format!("files/{}/{name}", files.len());
            files.push((path, remote.clone()));
            Ok(remote)
        };
        let mut failure = None;
        let args = rewrite(tokens, |id, value| {
            let result = match id {
                "models" if add_suite_model(value) => Ok(value.to_string()),
                "models" => add_file(value),
                "input_files" => match value.split_once('=') {
                    Some((name, path)) => add_file(path).map(|remote| format!("{name}={remote}")),
                    None => Ok(value.to_string()),
                },
                _ => add_file(value),
            };
            result.unwrap_or_else(|e| {
                failure.get_or_insert(e);
                value.to_string()
            })
        });
        if let Some(e) = failure {
            return Err(e.into());
        }
        let mut args = args;
        // A shard of a fleet plan (`--plan`, copied above like any file): its suite models go
        // into the device's models/, its other files into one folder the device's bench finds
        // them in by file name (--models-dir); bench checks each by the plan's SHA-256 there.
        let plan = matches.get_one::<PathBuf>("plan");
        if let Some(path) = plan {
            let plan = FleetPlan::load(path).map_err(|e| UsageError(e.to_string()))?;
            let mut own_files = false;
            for model in &plan.models {
                let file = Path::new(&model.path);
                let in_suite = suite
                    .model(&model.name)
                    .is_some_and(|m| Path::new(&m.file).file_name() == file.file_name())
                    && add_suite_model(&model.name);
                if in_suite {
                    continue;
                }
                let (Some(name), true) = (file.file_name(), file.is_file()) else {
                    return Err(UsageError(format!(
                        "{}: the plan's model {} is not here to copy to the device",
                        model.path, model.name
                    ))
                    .into());
                };
                files.push((
                    file.to_path_buf(),
                    format!("{PLAN_MODELS}/{}", name.to_string_lossy()),
                ));
                own_files = true;
            }
            if own_files {
                args.extend(["--models-dir".to_string(), PLAN_MODELS.to_string()]);
            }
        }
        if plan.is_none() && matches.get_many::<String>("models").is_none() {
            for m in &suite.models {
                add_suite_model(&m.name);
            }
        }
        // What the device will parse: every file argument must now point into its run folder.
        let check = bench_command()
            .try_get_matches_from(&args)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let copied = |v: &str| v.starts_with("files/") || suite.model(v).is_some();
        for id in ["models", "input_files"] {
            for value in check.get_many::<String>(id).into_iter().flatten() {
                let path = value.split_once('=').map_or(value.as_str(), |(_, p)| p);
                if !copied(if id == "models" { value } else { path }) {
                    return Err(UsageError(format!(
                        "cannot tell which local file '{value}' is: write it as its own option (--model PATH)"
                    ))
                    .into());
                }
            }
        }
        Ok(Forwarded {
            args,
            suite_models,
            files,
            suite_toml: suite_dir.join("suite.toml"),
            plan: plan.cloned(),
        })
    }
}

/// The options whose values are local files, and how they are spelled.
const FILE_OPTIONS: [(&str, &str, Option<char>); 4] = [
    ("models", "--model", Some('m')),
    ("input_files", "--input-file", None),
    ("calibration", "--calibration", None),
    ("plan", "--plan", None),
];

/// Where a plan's own model files go in the device's run folder.
const PLAN_MODELS: &str = "files/plan-models";

/// `tokens` with the value of every file option replaced by `rename(id, value)`.
fn rewrite(tokens: &[String], mut rename: impl FnMut(&str, &str) -> String) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        if token == "--" {
            out.extend(tokens[i..].iter().cloned());
            break;
        }
        let mut handled = false;
        for (id, long, short) in FILE_OPTIONS {
            let short = short.map(|c| format!("-{c}"));
            if (token == long || short.as_deref() == Some(token.as_str())) && i + 1 < tokens.len() {
                out.push(token.clone());
                out.push(rename(id, &tokens[i + 1]));
                i += 1;
                handled = true;
            } else if let Some(value) = token.strip_prefix(&format!("{long}=")) {
                out.push(format!("{long}={}", rename(id, value)));
                handled = true;
            } else if let Some(value) = short
                .as_deref()
                .and_then(|s| token.strip_prefix(s))
                .filter(|v| !v.is_empty() && !token.starts_with("--"))
            {
                out.push(format!(
                    "{}{}",
                    short.as_deref().unwrap_or_default(),
                    rename(id, value)
                ));
                handled = true;
            }
            if handled {
                break;
            }
        }
        if !handled {
            out.push(token.clone());
        }
        i += 1;
    }
    out
}

pub fn run(args: RemoteArgs) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let deadline = started + args.timeout;
    let talk = !args.quiet;
    let suite_dir = models::suite_dir(args.suite.as_deref())?;
    let forwarded = Forwarded::parse(&args.bench, &suite_dir)?;
    let device = SshTarget {
        destination: args.ssh.clone(),
        port: args.port,
        identity: args.identity.clone(),
        options: args.ssh_options.clone(),
        connect_timeout: args.connect_timeout,
    };
    let history = crate::cmd::history::open_for_bench(args.no_history, &args.history_db);

    let machine = device
        .exec("uname -m", deadline, &format!("connecting to {}", args.ssh))
        .map_err(UsageError)?;
    let target = match (&args.target, ssh::target_of(&machine)) {
        (Some(t), Some(found)) if t != found => {
            return Err(UsageError(format!(
                "--target {t}, but {} is {machine} ({found})",
                args.ssh
            ))
            .into());
        }
        (Some(t), _) => t.clone(),
        (None, Some(found)) => found.to_string(),
        (None, None) => {
            return Err(UsageError(format!(
                "{} is {machine}: give --target and --binary for it",
                args.ssh
            ))
            .into());
        }
    };
    let binary = device_binary(args.binary.as_deref(), &target)?;
    if talk {
        eprintln!("{} is {machine}: using {}", args.ssh, binary.display());
    }

    let base = ssh::quote(&args.remote_dir);
    let mut file_dirs: Vec<&str> = forwarded
        .files
        .iter()
        .filter_map(|(_, remote)| remote.rsplit_once('/').map(|(dir, _)| dir))
        .collect();
    file_dirs.dedup();
    let file_dirs: String = file_dirs
        .iter()
        .map(|dir| format!(" \"$d/{dir}\""))
        .collect();
    let dir = device.exec(
        &format!(
            "mkdir -p {base} && d=$(mktemp -d {base}/chipbench.XXXXXX) && mkdir -p \"$d/models\"{file_dirs} && echo \"$d\""
        ),
        deadline,
        "creating the run folder on the device",
    )
    .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        dir.starts_with('/'),
        "the device did not name its run folder (got '{dir}')"
    );
    let copied = (|| -> anyhow::Result<()> {
        device
            .copy(&[&binary], &format!("{dir}/chipbench"), deadline)
            .map_err(anyhow::Error::msg)?;
        let mut suite_files: Vec<&Path> = vec![&forwarded.suite_toml];
        suite_files.extend(forwarded.suite_models.iter().map(PathBuf::as_path));
        device
            .copy(&suite_files, &format!("{dir}/models/"), deadline)
            .map_err(anyhow::Error::msg)?;
        for (local, remote) in &forwarded.files {
            device
                .copy(&[local], &format!("{dir}/{remote}"), deadline)
                .map_err(anyhow::Error::msg)?;
        }
        Ok(())
    })();
    if let Err(e) = copied {
        ssh::cleanup(&device, &dir, None, args.keep_remote);
        return Err(e);
    }
    if talk {
        eprintln!(
            "copied chipbench and {} model file(s) to {}:{dir}",
            forwarded.suite_models.len() + forwarded.files.len(),
            args.ssh
        );
    }

    let streamed = stream(&device, &dir, &forwarded.args, deadline, &args, talk)?;
    let Streamed {
        received,
        mut journal,
    } = streamed;
    let exit = received.exit.as_ref().map(|(code, _)| *code);
    let errors: Vec<String> = received
        .exit
        .iter()
        .flat_map(|(_, stderr)| stderr.iter().cloned())
        .chain(received.other.iter().cloned())
        .collect();
    let lost = received
        .lost
        .as_ref()
        .map(|l| ssh::lost_reason(l, &device, args.timeout));
    let (plan, pid) = (received.plan, received.pid);

    let fetched: Option<RunResult> = match exit {
        Some(_) => {
            let local =
                std::env::temp_dir().join(format!("chipbench-remote-{}.json", std::process::id()));
            let result = device
                .fetch(&format!("{dir}/run/run.json"), &local, deadline)
                .map_err(anyhow::Error::msg)
                .and_then(|_| chipbench_report::load_run(&local).map_err(anyhow::Error::from));
            let _ = std::fs::remove_file(&local);
            result.ok()
        }
        None => None,
    };
    ssh::cleanup(
        &device,
        &dir,
        if exit.is_none() { pid } else { None },
        args.keep_remote,
    );

    let (Some(plan), true) = (plan, journal.is_some()) else {
        let why = match (exit, &lost) {
            (Some(2), _) => {
                return Err(
                    UsageError(format!("the device's chipbench: {}", errors.join("\n"))).into(),
                );
            }
            (Some(code), _) => format!(
                "the device's chipbench exited with {code} before planning: {}",
                errors.join("\n")
            ),
            (None, Some(reason)) => format!("{reason} before the run started"),
            (None, None) => "the device's run ended without a plan".into(),
        };
        anyhow::bail!("{why}");
    };
    let mut journal = journal.take().expect("created with the plan");
    let destination = args.ssh.clone();
    let complete = fetched.is_some();
    let mut run = match fetched {
        Some(run) => run,
        None => {
            let reason = lost.clone().unwrap_or_else(|| match exit {
                Some(code) => format!(
                    "the device's chipbench exited with {code} and left no run.json: {}",
                    errors.join(" ")
                ),
                None => "the connection ended".into(),
            });
            remote::partial_run(plan, received.cells, &reason, &mut journal)?
        }
    };
    run.host.provenance.insert(
        "remote".into(),
        format!(
            "measured on the device over ssh (chipbench remote {destination}, {target} binary {}); the host figures \
             were probed there",
            binary.display()
        ),
    );
    let run_json = crate::cmd::bench::finish(&run, &journal, args.json, talk)?;
    if let Some(plan) = &forwarded.plan {
        // Beside the run, as `bench --plan` keeps it, for `merge`.
        let kept = journal
            .dir()
            .join(chipbench_harness::shard::FLEET_PLAN_FILE);
        std::fs::copy(plan, &kept).with_context(|| format!("cannot write {}", kept.display()))?;
    }
    if complete {
        crate::cmd::history::record_after_bench(history, &run, &run_json)?;
    } else if !args.no_history {
        eprintln!(
            "not recorded in {}: the run did not finish (record what it kept with `chipbench history add {}`)",
            args.history_db.display(),
            run_json.display()
        );
    }
    Ok(if run.interrupted {
        Outcome::Interrupted
    } else if !complete || run.cells.iter().any(|c| c.status == Status::Failed) {
        Outcome::SomeFailed
    } else {
        Outcome::Success
    })
}

/// What came back while the device ran, and the local journal it went into.
struct Streamed {
    received: Received,
    journal: Option<Journal>,
}

/// Runs the benchmark on the device and journals each cell locally as it arrives.
fn stream(
    device: &SshTarget,
    dir: &str,
    bench_args: &[String],
    deadline: Instant,
    args: &RemoteArgs,
    talk: bool,
) -> anyhow::Result<Streamed> {
    let mut transport = device.command("ssh");
    transport.arg(&device.destination).arg("sh -s");
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    let mut journal: Option<Journal> = None;
    let mut early = Vec::new();
    let mut on = |message: &Message| -> Result<(), JournalError> {
        match message {
            Message::Plan(plan) => {
                let out = args.out.clone().unwrap_or_else(|| {
                    PathBuf::from(crate::hardware::RESULTS_DIR).join(&plan.run_id)
                });
                let mut created = Journal::create(&out)?;
                for cell in early.drain(..) {
                    created.append(&cell)?;
                }
                if talk {
                    eprintln!(
                        "the device planned {} cells (run {})",
                        plan.cells.len(),
                        plan.run_id
                    );
                }
                journal = Some(created);
            }
            Message::Cell { cell, .. } => {
                match journal.as_mut() {
                    Some(j) => j.append(cell)?,
                    None => early.push((**cell).clone()),
                }
                if talk {
                    eprintln!(
                        "{} {} on {}:{}: {}",
                        cell.model.name,
                        cell.model.variant,
                        cell.backend.name,
                        cell.backend.device,
                        match (&cell.latency_ms, &cell.error) {
                            (Some(l), _) => format!("p50 {} ms", chipbench_report::fmt_ms(l.p50)),
                            (None, Some(e)) => format!("{:?}: {e}", cell.status).to_lowercase(),
                            (None, None) => format!("{:?}", cell.status).to_lowercase(),
                        }
                    );
                }
            }
            _ => {}
        }
        Ok(())
    };
    let received = remote::receive(
        transport,
        &ssh::run_script(dir, bench_args),
        deadline,
        &mut on,
    )
    .context("cannot run ssh")??;
    Ok(Streamed { received, journal })
}

/// The chipbench to copy: `--binary`, this one when the device has this host's target, else
/// the cross build's.
fn device_binary(explicit: Option<&Path>, target: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            return Err(UsageError(format!("--binary {}: no such file", path.display())).into());
        }
        return Ok(path.to_path_buf());
    }
    if Some(target) == ssh::target_of(std::env::consts::ARCH) && cfg!(target_os = "linux") {
        return std::env::current_exe().context("cannot find this chipbench binary");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let candidates = [
        root.join("cross").join(target).join("chipbench"),
        root.join(target).join("chipbench"),
        root.join("cross").join(target).join("release/chipbench"),
        root.join(target).join("release/chipbench"),
    ];
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        UsageError(format!(
            "no chipbench for {target}: build it with scripts/build-arm.sh (it writes {}) or pass --binary",
            candidates[0].display()
        ))
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn file_options_are_rewritten_in_every_spelling() {
        let tokens = strings(&[
            "--quick",
            "--model",
            "a.onnx",
            "-m",
            "mlp",
            "--model=b.onnx",
            "-mc.onnx",
            "--input-file",
            "x=in.npy",
            "--seed",
            "3",
        ]);
        let out = rewrite(&tokens, |id, v| format!("<{id}:{v}>"));
        assert_eq!(
            out,
            strings(&[
                "--quick",
                "--model",
                "<models:a.onnx>",
                "-m",
                "<models:mlp>",
                "--model=<models:b.onnx>",
                "-m<models:c.onnx>",
                "--input-file",
                "<input_files:x=in.npy>",
                "--seed",
                "3"
            ])
        );
    }
}
