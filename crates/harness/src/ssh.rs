//! The ssh transport of `chipbench remote`: a device reached with the system `ssh` and `scp`,
//! every command bounded in time, and the shell script that runs `bench` there and reports it
//! through `chipbench follow` (see [`crate::remote`] for the messages that come back).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::remote::Lost;

/// The device at the other end of ssh, and how to reach it (not a backend's `Device`).
pub struct SshTarget {
    /// user@host, or a host alias of the user's ssh configuration.
    pub destination: String,
    pub port: Option<u16>,
    pub identity: Option<PathBuf>,
    /// `-o` options passed on to ssh and scp.
    pub options: Vec<String>,
    pub connect_timeout: Duration,
}

impl SshTarget {
    /// `ssh` or `scp` with the bounded time-outs and the user's options.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .arg("-o")
            .arg("BatchMode=yes")
            .arg("-o")
            .arg(format!(
                "ConnectTimeout={}",
                self.connect_timeout.as_secs().max(1)
            ))
            .arg("-o")
            .arg("ServerAliveInterval=5")
            .arg("-o")
            .arg("ServerAliveCountMax=3");
        if let Some(key) = &self.identity {
            command.arg("-i").arg(key);
        }
        for option in &self.options {
            command.arg("-o").arg(option);
        }
        if let Some(port) = self.port {
            command
                .arg(if program == "scp" { "-P" } else { "-p" })
                .arg(port.to_string());
        }
        command
    }

    /// Runs `script` on the device and returns its stdout.
    pub fn exec(&self, script: &str, deadline: Instant, what: &str) -> Result<String, String> {
        let mut command = self.command("ssh");
        command.arg(&self.destination).arg(script);
        let output = run_bounded(command, deadline, what)?;
        Ok(output.trim().to_string())
    }

    /// Copies local `sources` to `destination` on the device.
    pub fn copy(
        &self,
        sources: &[&Path],
        destination: &str,
        deadline: Instant,
    ) -> Result<(), String> {
        let mut command = self.command("scp");
        command.arg("-p").arg("-q");
        command.args(sources);
        command.arg(format!("{}:{destination}", self.destination));
        run_bounded(
            command,
            deadline,
            &format!("copying to {}:{destination}", self.destination),
        )?;
        Ok(())
    }

    /// Copies `source` on the device to `local`.
    pub fn fetch(&self, source: &str, local: &Path, deadline: Instant) -> Result<(), String> {
        let mut command = self.command("scp");
        command
            .arg("-q")
            .arg(format!("{}:{source}", self.destination))
            .arg(local);
        run_bounded(
            command,
            deadline,
            &format!("fetching {}:{source}", self.destination),
        )?;
        Ok(())
    }
}

/// Runs a command to completion or until `deadline`; its stdout, or an error with its stderr.
fn run_bounded(mut command: Command, deadline: Instant, what: &str) -> Result<String, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", command.get_program()))?;
    let readers = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .map(|pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    });
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("{what}: cannot wait for it: {e}"))?
        {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let [stdout, stderr] = readers.map(|r| r.join().unwrap_or_default());
    match status {
        None => Err(format!("{what}: time-out (--timeout)")),
        Some(s) if s.success() => Ok(stdout),
        Some(s) => Err(format!(
            "{what}: {} ({s})",
            last_line(&stderr).unwrap_or("no message")
        )),
    }
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rev().find(|l| !l.is_empty())
}

/// A shell word: the text in single quotes.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The Rust target of a `uname -m`.
pub fn target_of(machine: &str) -> Option<&'static str> {
    match machine {
        "x86_64" | "amd64" => Some("x86_64-unknown-linux-gnu"),
        "aarch64" | "arm64" => Some("aarch64-unknown-linux-gnu"),
        _ => None,
    }
}

/// The shell script that runs the benchmark in `dir` on the device and reports it in the
/// harness's messages (`chipbench follow`).
pub fn run_script(dir: &str, args: &[String]) -> String {
    let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
    format!(
        r#"cd {dir} || exit 97
./chipbench bench --suite models --out run --no-history --quiet {args} >run.stdout 2>run.stderr &
exec ./chipbench follow run --pid $! --stderr run.stderr
"#,
        dir = quote(dir),
        args = args.join(" ")
    )
}

/// Why the stream ended before the run did, in words.
pub fn lost_reason(lost: &Lost, device: &SshTarget, timeout: Duration) -> String {
    match lost {
        Lost::Interrupted => "interrupted (Ctrl-C)".to_string(),
        Lost::TimedOut => format!(
            "time-out: the remote run exceeded --timeout {}",
            humantime::format_duration(timeout)
        ),
        Lost::Incompatible(why) => format!("the device's chipbench cannot report back: {why}"),
        Lost::Connection { status, last_words } => format!(
            "connection to {} lost ({})",
            device.destination,
            last_words
                .clone()
                .or_else(|| status.map(|s| format!("ssh ended with {s}")))
                .unwrap_or_else(|| "ssh ended".into())
        ),
    }
}

/// Stops a run the connection left behind and removes the device's run folder, in one bounded
/// attempt; a failure is only reported.
pub fn cleanup(device: &SshTarget, dir: &str, orphan: Option<u32>, keep: bool) {
    let mut script = String::new();
    if let Some(pid) = orphan {
        script.push_str(&format!("kill {pid} 2>/dev/null; "));
    }
    if !keep {
        script.push_str(&format!("rm -rf {}", quote(dir)));
    }
    if script.is_empty() {
        return;
    }
    let deadline = Instant::now() + device.connect_timeout + Duration::from_secs(10);
    if let Err(e) = device.exec(&script, deadline, "cleaning up on the device") {
        eprintln!("warning: {e}; the device may keep {dir}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_survive_quotes_and_machines_map_to_targets() {
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(target_of("aarch64"), Some("aarch64-unknown-linux-gnu"));
        assert_eq!(target_of("riscv64"), None);
    }
}
