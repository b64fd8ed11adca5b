//! `chipbench remote` end to end against a real sshd on 127.0.0.1, started here with throwaway
//! keys and configuration in a temporary folder, with this host's own binary as the device's:
//! a whole run lands in the local results and history, and a connection dropped mid-run keeps
//! the cells that finished and fails the others with the reason.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ndarray_npy::WriteNpyExt;
use serde_json::Value;

mod common;
use common::validate;

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd listening on a free loopback port, stopped when dropped.
struct Sshd {
    process: Child,
    port: u16,
    dir: tempfile::TempDir,
    user: String,
}

impl Sshd {
    /// Starts sshd, or returns `None` with the reason printed when the OpenSSH programs are
    /// missing (a failure instead when `CI` is set).
    fn start() -> Option<Sshd> {
        let missing: Vec<&str> = [SSHD, "ssh", "scp", "ssh-keygen"]
            .into_iter()
            .filter(|p| {
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("command -v {p}"))
                    .output()
                    .map(|o| !o.status.success())
                    .unwrap_or(true)
            })
            .collect();
        if !missing.is_empty() {
            let reason = format!(
                "skipping: {} not installed (Debian: openssh-server openssh-client)",
                missing.join(", ")
            );
            assert!(std::env::var_os("CI").is_none(), "{reason}");
            eprintln!("{reason}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        for key in ["host_key", "client_key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.path().join(key))
                .status()
                .unwrap();
            assert!(status.success(), "ssh-keygen");
        }
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPermitRootLogin yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
            ),
        )
        .unwrap();
        // sshd running as root insists on its privilege-separation folder.
        let _ = std::fs::create_dir_all("/run/sshd");
        let process = Command::new(SSHD)
            .arg("-f")
            .arg(dir.path().join("sshd_config"))
            .args(["-D", "-e"])
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("sshd.log")).unwrap())
            .spawn()
            .expect("sshd starts");
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let sshd = Sshd {
            process,
            port,
            dir,
            user,
        };
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < until,
                "sshd did not listen: {}",
                std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(sshd)
    }

    /// The `chipbench remote` options that reach this sshd.
    fn options(&self) -> Vec<String> {
        [
            "--ssh".into(),
            format!("{}@127.0.0.1", self.user),
            "--port".into(),
            self.port.to_string(),
            "--identity".into(),
            self.dir.path().join("client_key").display().to_string(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
        .into()
    }

    /// Kills the per-connection sshd processes (the master's children): the connection drops.
    fn drop_connections(&self) -> usize {
        let master = self.process.id();
        let mut killed = 0;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: the comm may hold spaces, so read after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(master) {
                // SAFETY: kill has no memory effects; the pid is a child of the sshd we started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed += 1;
            }
        }
        killed
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn chipbench() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chipbench"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

fn remote_args(sshd: &Sshd, work: &Path, own: &[&str], bench: &[&str]) -> Vec<String> {
    let device_dir = work.join("device");
    std::fs::create_dir_all(&device_dir).unwrap();
    let mut args = vec!["remote".to_string()];
    args.extend(sshd.options());
    for (flag, value) in [
        ("--remote-dir", device_dir.display().to_string()),
        ("--out", work.join("local").display().to_string()),
        (
            "--history-db",
            work.join("history.db").display().to_string(),
        ),
        ("--timeout", "120s".into()),
    ] {
        args.push(flag.into());
        args.push(value);
    }
    args.extend(own.iter().map(|s| s.to_string()));
    args.push("--".into());
    args.extend(bench.iter().map(|s| s.to_string()));
    args
}

fn describe(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn device_folders_left(work: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(work.join("device"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect()
}

#[test]
fn a_remote_run_comes_back_with_the_devices_fingerprint_and_lands_in_the_history() {
    let Some(sshd) = Sshd::start() else { return };
    let work = tempfile::tempdir().unwrap();
    // A model given by path and an input file: both must be copied and their arguments rewritten.
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mlp.onnx");
    let input = work.path().join("ones.npy");
    ndarray::ArrayD::<f32>::ones(ndarray::IxDyn(&[1, 784]))
        .write_npy(std::fs::File::create(&input).unwrap())
        .unwrap();
    let input_arg = format!("input={}", input.display());
    let bench = [
        "--quick",
        "--backend",
        "tract",
        "--model",
        model.to_str().unwrap(),
        "--dim",
        "batch=1",
        "--input-file",
        &input_arg,
        "--threads",
        "1,2",
        "--accuracy-samples",
        "2",
    ];
    let o = chipbench()
        .args(remote_args(&sshd, work.path(), &["--json"], &bench))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let run: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&o)));
    validate(&run);
    let local: Value =
        serde_json::from_slice(&std::fs::read(work.path().join("local/run.json")).unwrap())
            .unwrap();
    assert_eq!(local, run, "--json prints the run.json written locally");
    let cells = run["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for (c, threads) in cells.iter().zip([1, 2]) {
        assert_eq!(c["status"], "ok", "{}", c["error"]);
        assert_eq!(c["model"]["name"], "mlp", "the copied file keeps its name");
        assert_eq!(c["backend"]["threads"], threads);
        assert!(c["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    }
    // The device here is this machine, probed by the device's chipbench over ssh.
    assert_eq!(
        run["host"]["fingerprint"],
        chipbench_probe::host().fingerprint
    );
    let provenance = run["host"]["provenance"]["remote"].as_str().unwrap();
    assert!(
        provenance.contains(&format!("{}@127.0.0.1", sshd.user)),
        "{provenance}"
    );
    let journal = std::fs::read_to_string(work.path().join("local/cells.jsonl")).unwrap();
    assert_eq!(
        journal.lines().count(),
        2,
        "each cell was journaled locally as it arrived"
    );
    let report = std::fs::read_to_string(work.path().join("local/report.md")).unwrap();
    assert!(
        report.contains(run["host"]["fingerprint"].as_str().unwrap()),
        "{report}"
    );

    let history = chipbench()
        .args(["history", "list", "--json", "--db"])
        .arg(work.path().join("history.db"))
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&history.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", describe(&history)));
    assert_eq!(listed[0]["run_id"], run["run_id"], "{listed:#}");
    assert!(
        device_folders_left(work.path()).is_empty(),
        "the device's run folder was removed"
    );
}

#[test]
fn a_dropped_connection_keeps_the_finished_cells_and_fails_the_rest() {
    let Some(sshd) = Sshd::start() else { return };
    let work = tempfile::tempdir().unwrap();
    let args = remote_args(
        &sshd,
        work.path(),
        &["--quiet"],
        &["--quick", "--backend", "tract", "--accuracy-samples", "2"],
    );
    let mut child = chipbench()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drop the connection as soon as the first cell has come back.
    let journal = work.path().join("local/cells.jsonl");
    let until = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&journal)
        .map(|t| t.lines().count())
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < until, "no cell came back within 60 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "chipbench remote ended before its first cell"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sshd.drop_connections() >= 1, "an sshd session to kill");
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < until,
            "chipbench remote did not end after the connection dropped"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let run: Value =
        serde_json::from_slice(&std::fs::read(work.path().join("local/run.json")).unwrap())
            .unwrap();
    validate(&run);
    let cells = run["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4, "every planned cell is in the run: {run:#}");
    let ok: Vec<&Value> = cells.iter().filter(|c| c["status"] == "ok").collect();
    let failed: Vec<&Value> = cells.iter().filter(|c| c["status"] == "failed").collect();
    assert!(!ok.is_empty(), "the cells that finished are kept");
    assert!(
        !failed.is_empty(),
        "the connection dropped before the last cell"
    );
    assert_eq!(ok.len() + failed.len(), 4);
    assert_eq!(
        cells[0]["model"]["name"], "mlp",
        "the first planned cell came back"
    );
    for c in failed {
        let error = c["error"].as_str().unwrap();
        assert!(
            error.contains("connection to") && error.contains("lost"),
            "{error}"
        );
    }
    assert!(
        stderr.contains("not recorded in"),
        "a partial run stays out of the history: {stderr}"
    );
    // The orphaned run on the device was stopped and its folder removed over a new connection.
    let until = Instant::now() + Duration::from_secs(10);
    while !device_folders_left(work.path()).is_empty() {
        assert!(
            Instant::now() < until,
            "the device kept {:?}",
            device_folders_left(work.path())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The ssh runner measures shards of a fleet plan: the plan and its own model file travel to the
/// device (the file checked there by the plan's SHA-256), each shard comes back as a run of its
/// own, and `merge` makes one fleet run with every planned cell once.
#[test]
fn a_plan_is_measured_shard_by_shard_over_ssh_and_merged() {
    let Some(sshd) = Sshd::start() else { return };
    let work = tempfile::tempdir().unwrap();
    // A user model (a copy of the suite's mlp under another name) beside a suite model.
    let own = work.path().join("mine").join("digits.onnx");
    std::fs::create_dir_all(own.parent().unwrap()).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mlp.onnx"),
        &own,
    )
    .unwrap();
    let plan = work.path().join("plan.json");
    let o = chipbench()
        .args(["plan", "-o"])
        .arg(&plan)
        .args([
            "--quick",
            "-b",
            "tract",
            "--threads",
            "1",
            "--accuracy-samples",
            "0",
        ])
        .args(["--dim", "batch=1", "-m", "resnet-mini", "-m"])
        .arg(&own)
        .args(["--shards", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe(&o));
    let mut runs = Vec::new();
    for k in 0..2 {
        let shard_work = work.path().join(format!("shard{k}"));
        let shard = format!("{k}/2");
        let o = chipbench()
            .args(remote_args(
                &sshd,
                &shard_work,
                &["--quiet"],
                &["--plan", plan.to_str().unwrap(), "--shard", &shard],
            ))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "shard {k}: {}", describe(&o));
        let run_json = shard_work.join("local/run.json");
        let run: Value = serde_json::from_slice(&std::fs::read(&run_json).unwrap()).unwrap();
        validate(&run);
        assert_eq!(run["shard"]["index"], k);
        for c in run["cells"].as_array().unwrap() {
            assert_eq!(c["status"], "ok", "{}", c["error"]);
        }
        runs.push(run_json);
    }
    let merged = work.path().join("fleet");
    let o = chipbench()
        .args(["merge", "--no-history", "-o"])
        .arg(&merged)
        .args(&runs)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let fleet: Value =
        serde_json::from_slice(&std::fs::read(merged.join("run.json")).unwrap()).unwrap();
    validate(&fleet);
    let mut models: Vec<&str> = fleet["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["model"]["name"].as_str().unwrap())
        .collect();
    models.sort();
    assert_eq!(models, ["digits", "resnet-mini"], "every planned cell once");
    assert_eq!(fleet["fleet"]["missing"].as_array().unwrap().len(), 0);
}
