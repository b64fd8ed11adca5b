//! `chipbench`: the command line. Parses arguments, builds the list of concrete backends and the
//! plan, shows progress, and hands everything else to the library crates.

mod backends;
mod bench;
mod compare;
mod devices;
mod edge;
mod hardware;
mod history;
mod models;
mod optimize_cmd;
mod outputs;
mod remote;
mod report_cmd;
mod roofline;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Hardware-aware inference benchmarking: the same ONNX models on every backend and device
/// available, measured honestly.
#[derive(Parser)]
#[command(name = "chipbench", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmark models on backends (default: the built-in suite on every available backend).
    Bench(Box<bench::BenchArgs>),
    /// List the built-in model suite, or regenerate it.
    Models(models::ModelsArgs),
    /// List the backends, their devices, or why they are unavailable.
    Backends(backends::BackendsArgs),
    /// Derive a model variant (fp16, int8, pruned) and show what it changes: size, sparsity,
    /// params, MACs and accuracy against fp32.
    Optimize(optimize_cmd::OptimizeArgs),
    /// Render runs as Markdown, CSV, HTML with charts, JSON, or dashboard formats (bmf, gab).
    Report(report_cmd::ReportArgs),
    /// Compare a run with a baseline (or its history): verdict per cell; exit 1 on a regression.
    Compare(compare::CompareArgs),
    /// The recorded runs: list, show, and the trend of one cell over time.
    History(history::HistoryArgs),
    /// This host: CPU, ISA features, caches, GPUs, energy sensors, catalog entry, ceilings.
    Devices(devices::DevicesArgs),
    /// Measure this host's roofline ceilings (matmul GFLOP/s, memory GB/s), or project models
    /// onto catalog chips (--project).
    Roofline(roofline::RooflineArgs),
    /// Write the models' outputs on tract for seeded inputs, or compare them with those of another
    /// build or machine (a functional check within fp32 tolerance; it measures no time).
    Outputs(outputs::OutputsArgs),
    /// Benchmark a real device over ssh: copy chipbench and the models there, run `bench`, fetch
    /// the results into the local reports and history.
    Remote(Box<remote::RemoteArgs>),
    /// Internal: measures one cell of `bench --edge-profile` in a constrained process.
    #[command(hide = true)]
    EdgeWorker,
    /// Internal: measures one further session of a cell in a fresh process.
    #[command(hide = true)]
    SessionWorker,
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

/// A mistake in the command line or configuration: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn main() -> ExitCode {
    chipbench_runner::install_panic_hook();
    let cli = Cli::parse();
    let result = std::panic::catch_unwind(|| match cli.command {
        Command::Bench(args) => bench::run(*args),
        Command::Models(args) => models::run(args),
        Command::Backends(args) => backends::run(args),
        Command::Optimize(args) => optimize_cmd::run(args),
        Command::Report(args) => report_cmd::run(args),
        Command::Compare(args) => compare::run(args),
        Command::History(args) => history::run(args),
        Command::Devices(args) => devices::run(args),
        Command::Roofline(args) => roofline::run(args),
        Command::Remote(args) => remote::run(*args),
        Command::Outputs(args) => outputs::run(args),
        Command::EdgeWorker => edge::worker(),
        Command::SessionWorker => worker::session_worker(),
    });
    match result {
        Ok(Ok(Outcome::Success)) => ExitCode::SUCCESS,
        Ok(Ok(Outcome::SomeFailed | Outcome::Regressed)) => ExitCode::from(1),
        Ok(Ok(Outcome::Interrupted)) => ExitCode::from(130),
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
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
