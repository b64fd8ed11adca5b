//! Paired A/B rounds (`chipbench ab`): two sides of one comparison measured in one job, in many
//! short rounds whose side order is drawn at random (or alternates ABBA), so that whatever drifts
//! on a shared host touches both sides of a round alike. With `duet`, both sides run at the same
//! time on disjoint CPUs and each round pairs the same time slice.
//!
//! A side is a `chipbench worker` of the side's binary, its session loaded and warmed once and
//! timed window by window (`protocol` mode), when that binary speaks this protocol version; else
//! each round runs the binary's own `bench --json` for the cell as a whole process with a short
//! window (`whole-process` mode), which any chipbench build can do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chipbench_core::paired::Round;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::child::{self, Worker};
use crate::protocol::{Job, Message};

/// How a cell's rounds run.
#[derive(Clone, Debug)]
pub struct Rounds {
    pub count: usize,
    /// Fresh processes per side the rounds are spread over: a process's memory placement makes
    /// all its windows a few percent faster or slower than another's, an effect no number of
    /// rounds in one pair of processes averages out.
    pub processes: usize,
    /// Each side's timed window per round.
    pub window: Duration,
    pub order: Order,
    pub duet: bool,
    pub seed: u64,
    /// A side's request (load, a window) still unanswered after this long fails the cell.
    pub timeout: Duration,
    /// Where a whole-process side's runs are written (and removed).
    pub scratch: PathBuf,
    /// `duet`: the two halves of the CPUs; the sides swap halves from one process pair to the
    /// next, so that neither keeps the faster cores.
    pub cpus: Option<[Vec<usize>; 2]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Each round's order drawn from the seed.
    Random,
    /// AB, BA, AB, ...
    Abba,
}

impl Order {
    pub fn name(self) -> &'static str {
        match self {
            Order::Random => "random",
            Order::Abba => "abba",
        }
    }
}

impl std::str::FromStr for Order {
    type Err = String;

    fn from_str(s: &str) -> Result<Order, String> {
        [Order::Random, Order::Abba]
            .into_iter()
            .find(|o| o.name() == s)
            .ok_or_else(|| format!("unknown order '{s}' (random or abba)"))
    }
}

/// What one side measures and with which build.
pub struct SideSpec {
    /// The chipbench binary of this side.
    pub bin: PathBuf,
    /// The cell (model, backend, threads, settings, engine options such as `ort_lib`).
    pub job: Job,
    /// How the model is named to a whole-process `bench`: the file with its input shapes.
    pub bench_args: Vec<String>,
}

/// A side ready for rounds.
pub enum Side {
    Protocol(Worker),
    /// The reason the side's binary cannot be driven as a worker.
    WholeProcess(String),
}

impl Side {
    /// Starts the side's worker and loads its session; a binary whose worker speaks another
    /// protocol version (or none) becomes a whole-process side. Other failures are errors.
    pub fn start(
        spec: &SideSpec,
        cpus: Option<&[usize]>,
        timeout: Duration,
    ) -> Result<Side, String> {
        let what = format!("{} worker", spec.bin.display());
        let mut command = Command::new(&spec.bin);
        command.arg("worker");
        if let Some(cpus) = cpus {
            child::pin(&mut command, cpus);
        }
        let mut worker = Worker::start(command).map_err(|e| format!("cannot run {what}: {e}"))?;
        if let Err(why) = worker.handshake(&what, timeout.min(Duration::from_secs(30))) {
            return Ok(Side::WholeProcess(why));
        }
        match worker.ask(
            &Message::OpenSession(Box::new(spec.job.clone())),
            &what,
            timeout,
        )? {
            Message::Opened { .. } => Ok(Side::Protocol(worker)),
            _ => Err(format!("{what} answered something else than Opened")),
        }
    }

    /// `protocol` or `whole-process`, and the reason for the latter.
    pub fn mode(&self) -> (&'static str, Option<String>) {
        match self {
            Side::Protocol(_) => ("protocol", None),
            Side::WholeProcess(why) => ("whole-process", Some(why.clone())),
        }
    }

    /// Ends the side's worker.
    pub fn stop(self) {
        if let Side::Protocol(mut worker) = self {
            worker.send(&Message::CloseSession);
            worker.stop();
        }
    }
}

/// What a cell's rounds gave: the rounds measured (all of them, or those before an error), how
/// each side ran, and the error that ended them early.
pub struct Measured {
    pub rounds: Vec<Round>,
    pub modes: [(&'static str, Option<String>); 2],
    pub error: Option<String>,
}

/// Runs `rounds.count` rounds of side A against side B, spread over `rounds.processes` pairs of
/// fresh processes (each loads and warms its session once). The error names the side or round
/// that failed; the rounds before it are kept.
pub fn run(specs: [&SideSpec; 2], rounds: &Rounds) -> Measured {
    let mut rng = ChaCha8Rng::seed_from_u64(rounds.seed);
    let mut measured = Measured {
        rounds: Vec::with_capacity(rounds.count),
        modes: [("protocol", None), ("protocol", None)],
        error: None,
    };
    let processes = rounds.processes.clamp(1, rounds.count.max(1));
    for process in 0..processes {
        let in_block = rounds.count / processes + usize::from(process < rounds.count % processes);
        let cpus = |side: usize| {
            rounds
                .cpus
                .as_ref()
                .map(|halves| halves[(side + process) % 2].as_slice())
        };
        let started = Side::start(specs[0], cpus(0), rounds.timeout)
            .map_err(|e| format!("side A: {e}"))
            .and_then(|a| match Side::start(specs[1], cpus(1), rounds.timeout) {
                Ok(b) => Ok((a, b)),
                Err(e) => {
                    a.stop();
                    Err(format!("side B: {e}"))
                }
            });
        let (mut a, mut b) = match started {
            Ok(sides) => sides,
            Err(e) => {
                measured.error = Some(e);
                return measured;
            }
        };
        measured.modes = [a.mode(), b.mode()];
        let block = block(&mut a, &mut b, specs, rounds, in_block, &mut rng, process);
        a.stop();
        b.stop();
        match block {
            Ok(done) => measured.rounds.extend(done),
            Err(e) => {
                measured.error = Some(e);
                return measured;
            }
        }
    }
    measured
}

/// The rounds of one pair of processes.
fn block(
    a: &mut Side,
    b: &mut Side,
    specs: [&SideSpec; 2],
    rounds: &Rounds,
    count: usize,
    rng: &mut ChaCha8Rng,
    process: usize,
) -> Result<Vec<Round>, String> {
    let mut done = Vec::with_capacity(count);
    for i in 0..count {
        let a_first = match rounds.order {
            Order::Random => rng.random_bool(0.5),
            Order::Abba => i % 2 == 0,
        };
        let timings = if rounds.duet {
            duet(a, b, specs, rounds)
        } else if a_first {
            window(a, specs[0], rounds).and_then(|ta| Ok((ta, window(b, specs[1], rounds)?)))
        } else {
            window(b, specs[1], rounds).and_then(|tb| Ok((window(a, specs[0], rounds)?, tb)))
        };
        let ((a_ms, a_n), (b_ms, b_n)) =
            timings.map_err(|e| format!("process pair {}, round {}: {e}", process + 1, i + 1))?;
        done.push(Round {
            process,
            first: if a_first || rounds.duet { "a" } else { "b" }.into(),
            a_ms,
            b_ms,
            a_inferences: a_n,
            b_inferences: b_n,
        });
    }
    Ok(done)
}

type Timing = (f64, u64);

/// One side's window: its median latency and inferences.
fn window(side: &mut Side, spec: &SideSpec, rounds: &Rounds) -> Result<Timing, String> {
    match side {
        Side::Protocol(worker) => {
            let sent = worker.send(&time_window(rounds));
            reply(worker.receive(sent, "the side's worker", rounds.timeout))
        }
        Side::WholeProcess(_) => whole_process(spec, rounds),
    }
}

/// Both sides' windows at the same time (each worker pinned to its own CPUs).
fn duet(
    a: &mut Side,
    b: &mut Side,
    specs: [&SideSpec; 2],
    rounds: &Rounds,
) -> Result<(Timing, Timing), String> {
    let (Side::Protocol(wa), Side::Protocol(wb)) = (a, b) else {
        return Err(format!(
            "--duet needs both sides' workers, and {} or {} speaks another protocol version",
            specs[0].bin.display(),
            specs[1].bin.display()
        ));
    };
    let request = time_window(rounds);
    let (sent_a, sent_b) = (wa.send(&request), wb.send(&request));
    let ra = reply(wa.receive(sent_a, "side A's worker", rounds.timeout));
    let rb = reply(wb.receive(sent_b, "side B's worker", rounds.timeout));
    Ok((ra?, rb?))
}

fn time_window(rounds: &Rounds) -> Message {
    Message::TimeWindow {
        seconds: rounds.window.as_secs_f64(),
    }
}

fn reply(message: Result<Message, String>) -> Result<Timing, String> {
    match message? {
        Message::Window { p50_ms, inferences } => Ok((p50_ms, inferences)),
        _ => Err("the side's worker answered something else than a window".into()),
    }
}

/// A whole `bench --json` of the side's binary for its cell, timed for the window, with options
/// every build has had since before cells ran in processes of their own (no `--in-process`).
fn whole_process(spec: &SideSpec, rounds: &Rounds) -> Result<Timing, String> {
    let out = rounds.scratch.join("whole-process-run");
    let _ = std::fs::remove_dir_all(&out);
    let window = format!("{}ms", rounds.window.as_millis().max(1));
    let mut command = Command::new(&spec.bin);
    command
        .args(["bench", "--json", "--quiet", "--no-history"])
        .args(["--sessions", "1", "--accuracy-samples", "0"])
        .args(["--min-duration", &window, "--max-duration", &window])
        .args(["-b", &spec.job.backend])
        .args(&spec.bench_args)
        .arg("--out")
        .arg(&out);
    if let Some(threads) = spec.job.threads {
        command.args(["--threads", &threads.to_string()]);
    }
    if let Some(lib) = spec.job.engines.get("ort_lib") {
        command.args(["--ort-lib", lib]);
    }
    for (key, value) in &spec.job.settings.backend_settings {
        command.args(["--set", &format!("{key}={value}")]);
    }
    let end = child::run(command, &[], Some(rounds.timeout))
        .map_err(|e| format!("cannot run {}: {e}", spec.bin.display()))?;
    let _ = std::fs::remove_dir_all(&out);
    bench_p50(&end.stdout).ok_or_else(|| {
        format!(
            "{} bench gave no timing ({}): {}",
            spec.bin.display(),
            end.how(),
            end.last_words(2, |_| false)
        )
    })
}

/// The first cell's median latency and inference count in a `bench --json` run.
fn bench_p50(stdout: &str) -> Option<Timing> {
    let run: serde_json::Value = serde_json::from_str(stdout).ok()?;
    let cell = run["cells"].get(0)?;
    let p50 = cell["latency_ms"]["p50"].as_f64()?;
    let n = cell["samples_ms"].as_array().map_or(0, Vec::len) as u64;
    Some((p50, n))
}

/// The current binary, the default of both sides.
pub fn this_binary() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("cannot find the chipbench binary: {e}"))
}

/// `path` made absolute, so that a worker started elsewhere finds it.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
