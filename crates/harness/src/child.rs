//! A `chipbench worker` child process that measures for its parent: started with its requests on
//! its stdin, bound to die with the parent, killed past a deadline, and read back with its
//! replies and how it ended.
//!
//! Cells run in children of their own by default (`bench --in-process` runs them inside the
//! sweep): a segfault or abort inside an engine (ONNX Runtime providers, GPU drivers) or a hang
//! then costs one cell, not the run. Constrained cells and further sessions use the same path.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

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

/// Runs `command` (its program and arguments set; its own `pre_exec` hooks, if any, run first)
/// with `input` on its stdin, until it ends or `timeout` passes, then kills it. The child gets
/// SIGKILL when the parent dies, so a killed run leaves no stray measurer behind.
/// The error is the spawn's own (ENOMEM under a memory cap, say) or a failed wait.
pub fn run(
    mut command: Command,
    input: &[u8],
    timeout: Option<Duration>,
) -> std::io::Result<ChildEnd> {
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
    let mut child = command.spawn()?;
    let pid = child.id() as libc::pid_t;
    CURRENT.store(pid, Ordering::SeqCst);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A child that dies before reading its job closes the pipe; its exit status says why.
    let _ = stdin.write_all(input);
    drop(stdin);
    let mut stdout_pipe = child.stdout.take().expect("stdout is piped");
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout_pipe.read_to_string(&mut text);
        text
    });
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    // The parent sleeps in a blocking wait while the child measures: no polling to disturb it.
    let (ended, status) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = ended.send(child.wait());
    });
    let (status, timed_out) = match timeout {
        Some(limit) => match status.recv_timeout(limit) {
            Ok(status) => (status, false),
            Err(_) => {
                // SAFETY: the child is not reaped until the waiter's wait returns, so the pid
                // is still ours.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
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
    pub replies: Vec<crate::protocol::Message>,
    pub end: ChildEnd,
}

impl Conversation {
    /// The reply to the request, past the child's `Hello`; the reason there is none (another
    /// protocol version, a signal, the deadline, an exit without a reply) otherwise.
    pub fn reply(
        mut self,
        what: &str,
        timeout: Option<Duration>,
    ) -> Result<crate::protocol::Message, String> {
        use crate::protocol::Message;
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
    requests: &[crate::protocol::Message],
    timeout: Option<Duration>,
) -> std::io::Result<Conversation> {
    use crate::protocol::Message;
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
}
