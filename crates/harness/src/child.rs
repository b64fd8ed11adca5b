//! A `chipbench worker` child process that measures for its parent: started with its requests on
//! its stdin, bound to die with the parent, killed past a deadline, and read back with its
//! replies and how it ended.
//!
//! Cells run in children of their own by default (`bench --in-process` runs them inside the
//! sweep): a segfault or abort inside an engine (ONNX Runtime providers, GPU drivers) or a hang
//! then costs one cell, not the run. Constrained cells run through [`run`] (their requests known
//! up front); the executor's cells and further sessions through a [`Worker`] it asks one request
//! at a time.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::protocol::Message;

/// The child measuring now (0: none), for [`interrupt_current`].
static CURRENT: AtomicI32 = AtomicI32::new(0);

/// Passes a Ctrl-C on to the child measuring now, so that it ends its cell early and keeps its
/// samples, as an in-process cell does (a SIGINT sent to `bench` alone would not reach it).
pub fn interrupt_current() {
    let pid = CURRENT.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill only sends a signal; the pid is our child until run() reaps it.
        unsafe { libc::kill(pid, libc::SIGINT) };
    }
}

/// How a child ended, with what it wrote.
pub struct ChildEnd {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Killed by the parent at the deadline.
    pub timed_out: bool,
}

impl ChildEnd {
    /// `exit code 3`, `signal 11 (SIGSEGV)`.
    pub fn how(&self) -> String {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("signal {signal} ({})", signal_name(signal)),
            (None, None) => "an unknown status".into(),
        }
    }

    /// The last non-empty lines of its stderr (at most `n`, 400 characters each), oldest
    /// first, leaving out lines `skip` matches.
    pub fn last_words(&self, n: usize, skip: impl Fn(&str) -> bool) -> String {
        let mut lines: Vec<String> = self
            .stderr
            .lines()
            .rev()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !skip(l))
            .take(n)
            .map(|l| l.chars().take(400).collect())
            .collect();
        lines.reverse();
        lines.join(" | ")
    }
}

/// Starts `command` with piped stdin, stdout and stderr, bound to get SIGKILL when the parent
/// dies (so a killed run leaves no stray measurer behind) and in a process group of its own.
fn spawn(mut command: Command) -> std::io::Result<Child> {
    command
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A group of its own, so that the deadline's kill also ends what it started (whose
            // open pipes would otherwise keep us waiting); Ctrl-C reaches it through
            // `interrupt_current`.
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Makes `command`'s process run on `cpus` only (sched_setaffinity before it starts).
pub fn pin(command: &mut Command, cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write into it.
    let mut cpuset: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        unsafe { libc::CPU_SET(cpu, &mut cpuset) };
    }
    // SAFETY: between fork and exec the closure only calls sched_setaffinity on memory prepared
    // before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &cpuset) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Kills a child's whole process group.
fn kill_group(pid: libc::pid_t) {
    // SAFETY: kill only sends a signal; callers reap the child after this, so the pid (and its
    // group) is still theirs.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

/// Collects what a child writes on a pipe until it closes it.
fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Runs `command` (its program and arguments set; its own `pre_exec` hooks, if any, run first)
/// with `input` on its stdin, until it ends or `timeout` passes, then kills it (see [`spawn`]).
/// The error is the spawn's own (ENOMEM under a memory cap, say) or a failed wait.
pub fn run(command: Command, input: &[u8], timeout: Option<Duration>) -> std::io::Result<ChildEnd> {
    let mut child = spawn(command)?;
    let pid = child.id() as libc::pid_t;
    CURRENT.store(pid, Ordering::SeqCst);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A child that dies before reading its job closes the pipe; its exit status says why.
    let _ = stdin.write_all(input);
    drop(stdin);
    let stdout = read_all(child.stdout.take().expect("stdout is piped"));
    let stderr = read_all(child.stderr.take().expect("stderr is piped"));
    // The parent sleeps in a blocking wait while the child measures: no polling to disturb it.
    let (ended, status) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = ended.send(child.wait());
    });
    let (status, timed_out) = match timeout {
        Some(limit) => match status.recv_timeout(limit) {
            Ok(status) => (status, false),
            Err(_) => {
                // The child is not reaped until the waiter's wait returns.
                kill_group(pid);
                (status.recv().map_err(std::io::Error::other)?, true)
            }
        },
        None => (status.recv().map_err(std::io::Error::other)?, false),
    };
    CURRENT.store(0, Ordering::SeqCst);
    let _ = waiter.join();
    Ok(ChildEnd {
        status: status?,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        timed_out,
    })
}

/// A child's replies to a conversation, and how it ended.
pub struct Conversation {
    pub replies: Vec<Message>,
    pub end: ChildEnd,
}

impl Conversation {
    /// The reply to the request, past the child's `Hello`; the reason there is none (another
    /// protocol version, a signal, the deadline, an exit without a reply) otherwise.
    pub fn reply(mut self, what: &str, timeout: Option<Duration>) -> Result<Message, String> {
        if let Some(hello) = self.replies.first()
            && let Some(why) = hello.incompatible()
        {
            return Err(why);
        }
        match (self.replies.len(), self.end.status.success()) {
            (2.., true) => Ok(self.replies.swap_remove(1)),
            _ => {
                if let Some(Message::Failed(why)) = self.replies.pop() {
                    return Err(why);
                }
                Err(self.end.died(what, timeout))
            }
        }
    }
}

/// Starts `command` (a `chipbench worker`), says `Hello`, sends `requests` and `Stop`, and reads
/// its replies until it ends or `timeout` passes (then kills it).
pub fn converse(
    command: Command,
    requests: &[Message],
    timeout: Option<Duration>,
) -> std::io::Result<Conversation> {
    let mut input = Vec::new();
    Message::hello().send(&mut input)?;
    for request in requests {
        request.send(&mut input)?;
    }
    Message::Stop.send(&mut input)?;
    let end = run(command, &input, timeout)?;
    let replies = end.stdout.lines().filter_map(Message::parse).collect();
    Ok(Conversation { replies, end })
}

/// A `chipbench worker` child asked one request at a time, each with its own deadline, so that
/// one process can answer several (the further sessions of a round). A worker that failed a
/// request, died or passed a deadline is done: drop it (which kills it) and start another.
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: mpsc::Receiver<Message>,
    stderr: Option<JoinHandle<String>>,
    greeted: bool,
}

impl Worker {
    /// Starts `command` (a `chipbench worker`, see [`spawn`]) and says `Hello`.
    pub fn start(command: Command) -> std::io::Result<Worker> {
        let mut child = spawn(command)?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = read_all(child.stderr.take().expect("stderr is piped"));
        let (sender, replies) = mpsc::channel();
        // Lines that are not messages (an engine's output mixed into the stream) are skipped.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(message) = Message::parse(&line)
                    && sender.send(message).is_err()
                {
                    break;
                }
            }
        });
        // A child that died at once closes the pipe; the first request's answer says why.
        let _ = Message::hello().send(&mut stdin);
        Ok(Worker {
            child,
            stdin: Some(stdin),
            replies,
            stderr: Some(stderr),
            greeted: false,
        })
    }

    /// Sends `request` and waits for its reply until `timeout` passes (then kills the worker).
    /// `what` names the process in the reason there is no reply (`the session's process`).
    pub fn ask(
        &mut self,
        request: &Message,
        what: &str,
        timeout: Duration,
    ) -> Result<Message, String> {
        let sent = self.send(request);
        self.receive(sent, what, timeout)
    }

    /// Sends `request` without waiting for the reply (see [`Worker::receive`]); false when the
    /// worker's input is closed.
    pub fn send(&mut self, request: &Message) -> bool {
        match self.stdin.as_mut() {
            Some(stdin) => request.send(stdin).is_ok(),
            None => false,
        }
    }

    /// The reply to a request [`Worker::send`] sent (`sent`), waited for until `timeout` passes.
    pub fn receive(
        &mut self,
        sent: bool,
        what: &str,
        timeout: Duration,
    ) -> Result<Message, String> {
        let deadline = Instant::now() + timeout;
        CURRENT.store(self.child.id() as libc::pid_t, Ordering::SeqCst);
        let reply = if sent {
            self.next_reply(deadline)
        } else {
            Err(false)
        };
        CURRENT.store(0, Ordering::SeqCst);
        match reply {
            Ok(Message::Failed(why)) => Err(why),
            Ok(message) => Ok(message),
            Err(timed_out) => Err(self.end(timed_out).died(what, Some(timeout))),
        }
    }

    /// Waits for the worker's `Hello` and checks its protocol version: the reason it cannot be
    /// talked to (another version, or no `Hello` at all: a build without workers) otherwise.
    pub fn handshake(&mut self, what: &str, timeout: Duration) -> Result<(), String> {
        if self.greeted {
            return Ok(());
        }
        match self.replies.recv_timeout(timeout) {
            Ok(hello @ Message::Hello { .. }) => match hello.incompatible() {
                None => {
                    self.greeted = true;
                    Ok(())
                }
                Some(why) => Err(why),
            },
            Ok(_) => Err(format!("{what} did not start with a Hello")),
            Err(e) => {
                let timed_out = e == mpsc::RecvTimeoutError::Timeout;
                Err(self.end(timed_out).died(what, Some(timeout)))
            }
        }
    }

    /// The next message past the worker's `Hello`; `Err(timed_out)` when none came.
    fn next_reply(&mut self, deadline: Instant) -> Result<Message, bool> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(hello @ Message::Hello { .. }) if !self.greeted => {
                    if let Some(why) = hello.incompatible() {
                        return Ok(Message::Failed(why));
                    }
                    self.greeted = true;
                }
                Ok(message) => return Ok(message),
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(true),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(false),
            }
        }
    }

    /// Ends the worker, killed at its deadline (`timed_out`) or else given a few seconds to
    /// exit (its output is closed or it was told to stop), and tells how.
    fn end(&mut self, timed_out: bool) -> ChildEnd {
        self.stdin = None;
        if timed_out || !self.exits_within(Duration::from_secs(5)) {
            kill_group(self.child.id() as libc::pid_t);
        }
        let status = self
            .child
            .wait()
            .unwrap_or_else(|_| ExitStatus::from_raw(0));
        ChildEnd {
            status,
            stdout: String::new(),
            stderr: self
                .stderr
                .take()
                .and_then(|t| t.join().ok())
                .unwrap_or_default(),
            timed_out,
        }
    }

    fn exits_within(&mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Tells the worker to stop and reaps it (killed if an engine's teardown keeps it).
    pub fn stop(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = Message::Stop.send(&mut stdin);
        }
        self.end(false);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            kill_group(self.child.id() as libc::pid_t);
            let _ = self.child.wait();
        }
    }
}

impl ChildEnd {
    /// Why a child gave no result: the deadline, or how it ended and its last words on stderr.
    pub fn died(&self, what: &str, timeout: Option<Duration>) -> String {
        if self.timed_out {
            return format!(
                "timed out after {} (--cell-timeout): {what} was killed",
                timeout.map_or_else(
                    || "its deadline".into(),
                    |t| humantime::format_duration(t).to_string()
                )
            );
        }
        let words = self.last_words(3, |l| {
            l.starts_with("note: run with `RUST_BACKTRACE") || l == crate::worker::STARTED
        });
        format!(
            "{what} ended with {} without a result{}",
            self.how(),
            if words.is_empty() {
                String::new()
            } else {
                format!(": {words}")
            }
        )
    }
}

pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn a_child_reads_its_input_and_its_end_is_told() {
        let end = run(sh("cat; echo oops >&2; exit 3"), b"job", None).unwrap();
        assert_eq!(
            (end.stdout.as_str(), end.how().as_str()),
            ("job", "exit code 3")
        );
        assert_eq!(end.last_words(2, |_| false), "oops");
        let end = run(sh("kill -SEGV $$"), b"", None).unwrap();
        assert_eq!(end.how(), "signal 11 (SIGSEGV)");
        assert!(!end.timed_out);
    }

    #[test]
    fn a_child_past_its_deadline_is_killed() {
        let started = std::time::Instant::now();
        let end = run(
            sh("echo started >&2; exec sleep 30"),
            b"",
            Some(Duration::from_millis(300)),
        )
        .unwrap();
        assert!(end.timed_out && end.status.signal() == Some(libc::SIGKILL));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the kill did not wait for sleep"
        );
        assert_eq!(end.last_words(1, |_| false), "started");
    }

    /// A worker that greets with `version`, then answers each request with its pid, except the
    /// second, before which it runs `second`.
    fn scripted_worker(version: u32, second: &str) -> Worker {
        Worker::start(sh(&format!(
            r#"read hello
            echo '{{"hello":{{"version":{version},"tool_version":"t"}}}}'
            n=0
            while read request; do
              case "$request" in *stop*) exit 0;; esac
              n=$((n+1))
              if [ $n -eq 2 ]; then {second}; fi
              echo "{{\"pid\":$$}}"
            done"#
        )))
        .unwrap()
    }

    /// The pid the worker answered with, or why it did not.
    fn ask(worker: &mut Worker) -> Result<u32, String> {
        match worker.ask(
            &Message::Pid(0),
            "the test's process",
            Duration::from_millis(2000),
        )? {
            Message::Pid(pid) => Ok(pid),
            _ => Err("another message".into()),
        }
    }

    #[test]
    fn a_worker_answers_request_after_request_in_one_process() {
        let mut worker = scripted_worker(crate::protocol::PROTOCOL_VERSION, "true");
        let pid = worker.child.id();
        for _ in 0..3 {
            assert_eq!(ask(&mut worker), Ok(pid));
        }
        worker.stop();
        // SAFETY: signal 0 only checks that the process exists.
        assert_ne!(
            unsafe { libc::kill(pid as i32, 0) },
            0,
            "the stopped worker was reaped"
        );
    }

    #[test]
    fn a_worker_that_dies_or_hangs_says_how_and_one_of_another_version_is_refused() {
        let mut crashing = scripted_worker(
            crate::protocol::PROTOCOL_VERSION,
            "echo 'engine exploded' >&2; kill -SEGV $$",
        );
        assert!(ask(&mut crashing).is_ok());
        let why = ask(&mut crashing).unwrap_err();
        assert!(
            why.contains("the test's process ended with signal 11 (SIGSEGV) without a result")
                && why.contains("engine exploded"),
            "{why}"
        );

        let mut hanging = scripted_worker(crate::protocol::PROTOCOL_VERSION, "sleep 30");
        assert!(ask(&mut hanging).is_ok());
        let started = std::time::Instant::now();
        let why = ask(&mut hanging).unwrap_err();
        assert!(why.starts_with("timed out after 2s"), "{why}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the kill did not wait for sleep"
        );

        let mut other = scripted_worker(999, "true");
        let why = ask(&mut other).unwrap_err();
        assert!(why.contains("protocol version 999"), "{why}");
    }
}
