//! A whole run on another machine, over any byte stream (ssh in `chipbench remote`, a local
//! shell in the tests): the device runs `bench` and `chipbench follow` turns its run folder into
//! the protocol's messages (`Hello`, `Pid`, `Plan`, a `Cell` per journaled cell, `Exit`); this
//! side reads them until the run ends, the deadline passes or the stream breaks, and keeps what
//! arrived. The same plan, cells and messages as a local run: a transport, not a second harness.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use chipbench_core::result::{CellResult, RunResult, SCHEMA, Status};
use chipbench_runner::SINGLE_STREAM;
use chipbench_runner::measure::INTERRUPTED;

use crate::journal::{CELLS_FILE, Journal, JournalError};
use crate::plan::{self, PLAN_FILE, Plan};
use crate::protocol::Message;

/// How often `follow` looks for new cells in the journal.
const POLL: Duration = Duration::from_millis(200);
/// How long `follow` waits for the run to write its plan.
const PLAN_WAIT: Duration = Duration::from_secs(600);
/// Lines of the run's stderr that `Exit` carries.
const STDERR_LINES: usize = 20;

/// The device's side: reports the run `pid` (a child of this process: the shell that started it
/// `exec`s `chipbench follow`) writing into `dir`, until it exits. When nobody reads `out` any
/// more (the connection broke), the run is stopped: its results could not come back.
pub fn follow(
    dir: &Path,
    pid: i32,
    stderr_file: &Path,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let stop_run = |e: std::io::Error| {
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        e
    };
    Message::hello().send(out).map_err(stop_run)?;
    Message::Pid(pid as u32).send(out).map_err(stop_run)?;
    let started = Instant::now();
    let mut exit = None;
    let mut plan_sent = false;
    let mut offset = 0;
    loop {
        if exit.is_none() {
            exit = exited(pid);
        }
        if !plan_sent && let Some(plan) = read_plan(dir) {
            Message::Plan(Box::new(plan)).send(out).map_err(stop_run)?;
            plan_sent = true;
        }
        if plan_sent {
            for cell in new_cells(&dir.join(CELLS_FILE), &mut offset) {
                Message::Cell {
                    cell: Box::new(cell),
                    observed: None,
                }
                .send(out)
                .map_err(stop_run)?;
            }
        }
        if let Some(code) = exit {
            let text = std::fs::read_to_string(stderr_file).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(String::from).collect();
            let stderr = lines[lines.len().saturating_sub(STDERR_LINES)..].to_vec();
            return Message::Exit { code, stderr }.send(out);
        }
        if !plan_sent && started.elapsed() > PLAN_WAIT {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        std::thread::sleep(POLL);
    }
}

/// The exit code of our child `pid` once it has ended (128 + the signal that ended it).
fn exited(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waitpid writes only into `status`.
    match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
        0 => None,
        -1 => Some(127), // not our child, or already reaped: nothing more to wait for
        _ if libc::WIFEXITED(status) => Some(libc::WEXITSTATUS(status)),
        _ if libc::WIFSIGNALED(status) => Some(128 + libc::WTERMSIG(status)),
        _ => None,
    }
}

fn read_plan(dir: &Path) -> Option<Plan> {
    serde_json::from_str(&std::fs::read_to_string(dir.join(PLAN_FILE)).ok()?).ok()
}

/// Whole lines appended to the journal since `offset`, as cells.
fn new_cells(journal: &Path, offset: &mut usize) -> Vec<CellResult> {
    let Ok(text) = std::fs::read_to_string(journal) else {
        return Vec::new();
    };
    let Some(end) = text.get(*offset..).and_then(|t| t.rfind('\n')) else {
        return Vec::new();
    };
    let fresh = &text[*offset..*offset + end + 1];
    *offset += end + 1;
    fresh
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// What came back from the device.
#[derive(Default)]
pub struct Received {
    pub plan: Option<Plan>,
    pub cells: Vec<CellResult>,
    /// The run's exit code and the last lines of its stderr, when the run ended.
    pub exit: Option<(i32, Vec<String>)>,
    /// Lines that were not messages (a shell's complaints).
    pub other: Vec<String>,
    pub pid: Option<u32>,
    /// Why the stream ended before the run did.
    pub lost: Option<Lost>,
}

pub enum Lost {
    TimedOut,
    Interrupted,
    /// The transport ended: its status and the last line of its stderr.
    Connection {
        status: Option<ExitStatus>,
        last_words: Option<String>,
    },
    /// The device speaks another protocol.
    Incompatible(String),
}

/// Starts `transport` (ssh, or a shell), writes `script` to its stdin and reads the device's
/// messages until the run's `Exit`, the `deadline`, Ctrl-C or the end of the stream. `on` sees
/// each message as it arrives (to journal and print it); its error stops the stream.
pub fn receive(
    mut transport: Command,
    script: &str,
    deadline: Instant,
    on: &mut dyn FnMut(&Message) -> Result<(), JournalError>,
) -> std::io::Result<Result<Received, JournalError>> {
    transport
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = transport.spawn()?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes())?;
    let (sender, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let mut received = Received::default();
    let mut greeted = false;
    let outcome = loop {
        let now = Instant::now();
        if now >= deadline {
            break Some(Lost::TimedOut);
        }
        match lines.recv_timeout((deadline - now).min(POLL)) {
            Ok(line) => {
                let Some(message) = Message::parse(&line) else {
                    received.other.push(line);
                    continue;
                };
                if !greeted {
                    if let Some(why) = message.incompatible() {
                        break Some(Lost::Incompatible(why));
                    }
                    greeted = true;
                    continue;
                }
                if let Err(e) = on(&message) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(Err(e));
                }
                match message {
                    Message::Pid(pid) => received.pid = Some(pid),
                    Message::Plan(plan) => received.plan = Some(*plan),
                    Message::Cell { cell, .. } => received.cells.push(*cell),
                    Message::Exit { code, stderr } => {
                        received.exit = Some((code, stderr));
                        break None;
                    }
                    Message::Failed(why) => received.other.push(why),
                    _ => {}
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if INTERRUPTED.load(Ordering::Relaxed) {
                    break Some(Lost::Interrupted);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Some(Lost::Connection {
                    status: None,
                    last_words: None,
                });
            }
        }
    };
    if received.exit.is_none() {
        let _ = child.kill();
    }
    let status = child.wait().ok();
    let stderr = stderr_reader.join().unwrap_or_default();
    received.lost = outcome.map(|lost| match lost {
        Lost::Connection { .. } => Lost::Connection {
            status,
            last_words: stderr
                .lines()
                .map(str::trim)
                .rev()
                .find(|l| !l.is_empty())
                .map(|l| l.trim_end_matches('.').to_string()),
        },
        other => other,
    });
    Ok(Ok(received))
}

/// The run as far as it got: the cells received, and the planned ones that did not arrive as
/// failed cells with `reason` (journaled too).
pub fn partial_run(
    plan: Plan,
    received: Vec<CellResult>,
    reason: &str,
    journal: &mut Journal,
) -> Result<RunResult, JournalError> {
    let mut arrived: HashMap<String, CellResult> =
        plan::ids_of(&received).into_iter().zip(received).collect();
    let mut cells = Vec::new();
    for planned in plan.cells {
        match arrived.remove(&planned.id) {
            Some(cell) => cells.push(cell),
            None => {
                let cell = CellResult::not_run(
                    planned.model,
                    planned.backend,
                    SINGLE_STREAM,
                    Status::Failed,
                    format!("{reason}; this cell had not finished"),
                );
                journal.append(&cell)?;
                cells.push(cell);
            }
        }
    }
    // Cells the plan does not list (from a device's older chipbench) keep their place at the end.
    cells.extend(arrived.into_values());
    Ok(RunResult {
        schema: SCHEMA.into(),
        run_id: plan.run_id,
        tool_version: plan.tool_version,
        started_at: plan.started_at,
        finished_at: Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string()),
        interrupted: INTERRUPTED.load(Ordering::Relaxed),
        host: plan.host,
        config: plan.config,
        cells,
        idle_baseline: None,
        projections: None,
        // The device's checks went down with the connection; comparisons then go without.
        speed_checks: Vec::new(),
        // So did its peak searches' records (their probes arrived as cells).
        peaks: Vec::new(),
        hosts: Vec::new(),
        shard: None,
        fleet: None,
    })
}
