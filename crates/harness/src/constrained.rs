//! The constrained executor: each cell, with its further sessions, in a `chipbench worker` of its
//! own, pinned to a set of CPUs and capped in memory (a cgroup of its own per cell, or
//! RLIMIT_AS), so that a model that does not fit fails its own cell with an out-of-memory reason
//! instead of ending the run. `bench --edge-profile` emulates an edge device with it; every
//! timing is this host's under those limits, never the device's.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chipbench_core::format_bytes;
use chipbench_core::result::{CellResult, EdgeFit, Status};
use chipbench_runner::measure::INTERRUPTED;
use chipbench_runner::{FreshSession, MeasureSettings};

use crate::child;
use crate::executor::Executor;
use crate::plan::Cell;
use crate::protocol::{Job, JobContext, Message, Observed};
use crate::worker::STARTED as WORKER_STARTED;

/// Measures cells under an edge profile's limits.
pub struct Constrained {
    /// The id of the profile emulated.
    pub profile: String,
    /// The profile's RAM, which a cell fits in or not.
    pub device_ram: u64,
    /// The CPUs of this host the cells are pinned to.
    pub cpus: Vec<usize>,
    /// Memory cap per cell, in bytes.
    pub cap: u64,
    pub limit: MemoryLimit,
    /// The chipbench binary.
    pub exe: PathBuf,
    pub context: JobContext,
    /// A cell still running after this long is killed (`--cell-timeout`).
    pub timeout: Duration,
    cells_started: AtomicUsize,
}

impl Constrained {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        profile: String,
        device_ram: u64,
        cpus: Vec<usize>,
        cap: u64,
        limit: MemoryLimit,
        exe: PathBuf,
        context: JobContext,
        timeout: Duration,
    ) -> Constrained {
        Constrained {
            profile,
            device_ram,
            cpus,
            cap,
            limit,
            exe,
            context,
            timeout,
            cells_started: AtomicUsize::new(0),
        }
    }

    fn oom_reason(&self, detail: &str) -> String {
        format!(
            "out of memory: edge profile {} caps memory at {} by {}; {detail}",
            self.profile,
            format_bytes(self.cap as f64),
            self.limit.describe()
        )
    }

    fn spawn(&self, job: Job) -> Result<WorkerEnd, String> {
        let n = self.cells_started.fetch_add(1, Ordering::Relaxed);
        let cgroup = match &self.limit {
            MemoryLimit::Cgroup { version, parent } => {
                match CellCgroup::create(*version, parent, self.cap, n) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        return Ok(WorkerEnd::Died {
                            reason: format!("cannot create the cell's memory cgroup: {e}"),
                            oom: false,
                        });
                    }
                }
            }
            MemoryLimit::RlimitAs => None,
        };
        let mut command = Command::new(&self.exe);
        command.arg("worker");
        let rlimit = match self.limit {
            MemoryLimit::RlimitAs => {
                command.env("MALLOC_ARENA_MAX", "1");
                Some(self.cap)
            }
            MemoryLimit::Cgroup { .. } => None,
        };
        // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write into it.
        let mut cpuset: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &cpu in &self.cpus {
            unsafe { libc::CPU_SET(cpu, &mut cpuset) };
        }
        let procs = cgroup.as_ref().map(|c| c.procs_file()).transpose()?;
        let procs_fd = procs.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        // SAFETY: between fork and exec the closure only makes async-signal-safe system calls
        // (getpid, write, sched_setaffinity, setrlimit) on memory prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                if let Some(fd) = procs_fd {
                    let mut digits = [0u8; 20];
                    let text = decimal(libc::getpid() as u64, &mut digits);
                    if libc::write(fd, text.as_ptr().cast(), text.len()) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &cpuset) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(cap) = rlimit {
                    let limit = libc::rlimit {
                        rlim_cur: cap,
                        rlim_max: cap,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let request = [Message::MeasureConstrained(Box::new(job))];
        let spawned = child::converse(command, &request, Some(self.timeout));
        drop(procs);
        let (replies, end) = match spawned {
            Ok(conversation) => (conversation.replies, conversation.end),
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {
                return Ok(WorkerEnd::Died {
                    reason: self.oom_reason(&format!("the cell's process could not start: {e}")),
                    oom: true,
                });
            }
            Err(e) => {
                return Err(format!(
                    "cannot start the cell's process {}: {e}",
                    self.exe.display()
                ));
            }
        };
        if end.timed_out {
            return Ok(WorkerEnd::Died {
                reason: end.died("the cell's process", Some(self.timeout)),
                oom: false,
            });
        }
        let (status, stderr) = (end.status, &end.stderr);
        let (peak, oom_kills) = cgroup.as_ref().map(|c| c.usage()).unwrap_or((None, 0));
        drop(cgroup);
        let allocation_failure = stderr
            .lines()
            .find_map(allocation_failure_in)
            .map(str::to_string);
        if let Some(Message::Cell { cell, observed }) = replies.into_iter().nth(1) {
            return Ok(WorkerEnd::Cell {
                cell,
                observed: observed.unwrap_or_default(),
                peak,
                allocation_failure,
            });
        }
        let how = end.how();
        let started = stderr.lines().any(|l| l == WORKER_STARTED);
        let died = if oom_kills > 0 && status.signal() == Some(libc::SIGKILL) {
            Some(format!(
                "the kernel's OOM killer ended the cell's process ({how})"
            ))
        } else if let Some(line) = &allocation_failure {
            Some(format!("the cell's process ended with {how}: {line}"))
        } else if !started && matches!(self.limit, MemoryLimit::RlimitAs) {
            // The parent is the same binary and runs: only the cap keeps the child from starting.
            Some(format!(
                "the cell's process could not start ({how}): the chipbench binary and its libraries \
                 alone need more address space than the cap"
            ))
        } else {
            None
        };
        Ok(match died {
            Some(detail) => WorkerEnd::Died {
                reason: self.oom_reason(&detail),
                oom: true,
            },
            None if INTERRUPTED.load(Ordering::Relaxed) => WorkerEnd::Died {
                reason: format!("interrupted: the cell's process ended with {how}"),
                oom: false,
            },
            None => {
                let last_words = end.last_words(1, |l| l == WORKER_STARTED);
                WorkerEnd::Died {
                    reason: format!(
                        "the cell's process ended with {how} without a result{}",
                        if last_words.is_empty() {
                            String::new()
                        } else {
                            format!(": {last_words}")
                        }
                    ),
                    oom: false,
                }
            }
        })
    }
}

impl Executor for Constrained {
    /// Measures one cell and its further sessions in a worker process under the constraints.
    /// Never fails: a worker that runs out of memory or dies is a failed cell with the reason.
    fn measure(&mut self, c: &Cell, settings: &MeasureSettings) -> CellResult {
        let job = Job::new(c, settings, &self.context).without_energy();
        let end = self.spawn(job).unwrap_or_else(|e| WorkerEnd::Died {
            reason: e,
            oom: false,
        });
        let (mut cell, observed, oom) = match end {
            WorkerEnd::Cell {
                cell,
                observed,
                peak,
                allocation_failure,
            } => {
                let mut cell = *cell;
                // An engine may turn a refused allocation into an error or a caught panic; the
                // worker's stderr (or the error itself) names the allocation.
                let refused = cell.status == Status::Failed
                    && cell
                        .error
                        .as_deref()
                        .is_some_and(|e| allocation_failure_in(e).is_some());
                let oom =
                    cell.status == Status::Failed && (refused || allocation_failure.is_some());
                if oom {
                    let error = cell.error.as_deref().unwrap_or_default();
                    cell.error = Some(self.oom_reason(
                        &match allocation_failure.filter(|_| !refused) {
                            Some(line) => format!("{error} ({line})"),
                            None => error.to_string(),
                        },
                    ));
                }
                let peak = peak.or(match self.limit {
                    MemoryLimit::RlimitAs => observed.vm_peak_bytes,
                    MemoryLimit::Cgroup { .. } => None,
                });
                (cell, Some((observed.cpus, peak)), oom)
            }
            WorkerEnd::Died { reason, oom } => (c.failed(reason), None, oom),
        };
        let ram = self.device_ram;
        let fits = match (cell.status, oom) {
            (_, true) => (self.cap >= ram).then_some(false),
            (Status::Ok, false) => cell
                .peak_rss_bytes
                .map(|peak| peak <= ram && cell.model.file_bytes.unwrap_or(0) <= ram),
            _ => None,
        };
        let (cpus, capped_peak_bytes) = observed.unwrap_or_default();
        cell.edge = Some(EdgeFit {
            profile: self.profile.clone(),
            fits,
            out_of_memory: oom,
            capped_peak_bytes,
            cpus,
        });
        cell.provenance.insert(
            "edge".into(),
            format!(
                "measured: the cell's own process (chipbench worker), pinned to CPUs {} and \
                 capped at {} by {}; fits: its peak RSS (VmHWM) and the model file against the \
                 profile's {} of RAM; capped_peak_bytes: {}; cpus: sched_getaffinity read by the \
                 process itself",
                cpu_list(&self.cpus),
                format_bytes(self.cap as f64),
                self.limit.describe(),
                format_bytes(ram as f64),
                match self.limit {
                    MemoryLimit::Cgroup {
                        version: CgroupVersion::V2,
                        ..
                    } => "the cgroup's memory.peak",
                    MemoryLimit::Cgroup {
                        version: CgroupVersion::V1,
                        ..
                    } => {
                        "the cgroup's memory.max_usage_in_bytes"
                    }
                    MemoryLimit::RlimitAs => "VmPeak of the process (virtual size)",
                }
            ),
        );
        if let Some(latency) = cell.provenance.get_mut("latency_ms") {
            latency.push_str(&format!(
                "; a host timing under edge profile {}'s constraints, not a measurement of the device",
                self.profile
            ));
        }
        cell.provenance.insert(
            "energy".into(),
            "not estimated: this host's power says nothing about the emulated device".into(),
        );
        cell
    }

    fn rounds(&self) -> Option<&'static str> {
        None
    }

    fn further_session(&mut self, _: &Cell, _: &MeasureSettings) -> Result<FreshSession, String> {
        Err("a constrained cell measures its further sessions in its own process".into())
    }
}

/// The line that says an allocation was refused, as Rust's allocator, tract or the OS word it.
fn allocation_failure_in(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|line| {
        let lower = line.to_ascii_lowercase();
        [
            "memory allocation of",
            "failed to allocate",
            "cannot allocate memory",
            "out of memory",
            "os error 12",
        ]
        .iter()
        .any(|sign| lower.contains(sign))
    })
}

enum WorkerEnd {
    /// The worker's result, the cgroup's peak usage when a cgroup capped it, and a refused
    /// allocation the worker reported on stderr.
    Cell {
        cell: Box<CellResult>,
        observed: Observed,
        peak: Option<u64>,
        allocation_failure: Option<String>,
    },
    Died {
        reason: String,
        oom: bool,
    },
}

/// How each cell's memory is capped.
#[derive(Clone, Debug)]
pub enum MemoryLimit {
    /// A child cgroup per cell under `parent` (this process's own cgroup).
    Cgroup {
        version: CgroupVersion,
        parent: PathBuf,
    },
    RlimitAs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl MemoryLimit {
    /// The `memory_limit` value of the result.
    pub fn id(&self) -> &'static str {
        match self {
            MemoryLimit::Cgroup {
                version: CgroupVersion::V2,
                ..
            } => "cgroup-v2",
            MemoryLimit::Cgroup {
                version: CgroupVersion::V1,
                ..
            } => "cgroup-v1",
            MemoryLimit::RlimitAs => "rlimit-as",
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            MemoryLimit::Cgroup {
                version: CgroupVersion::V2,
                ..
            } => {
                "cgroup v2 memory.max (resident memory, page cache the process faults in included)"
            }
            MemoryLimit::Cgroup {
                version: CgroupVersion::V1,
                ..
            } => {
                "cgroup v1 memory.limit_in_bytes (resident memory, page cache the process faults in included)"
            }
            MemoryLimit::RlimitAs => "RLIMIT_AS (virtual address space)",
        }
    }
}

/// `0-3,6`
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &cpu in cpus {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == cpu => *end = cpu,
            _ => ranges.push((cpu, cpu)),
        }
    }
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `n` in decimal digits inside `buffer`, without allocating (it runs between fork and exec).
fn decimal(mut n: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[start..];
        }
    }
}

/// This process's cgroup with the memory controller, where a child cgroup per cell can be
/// created and capped; the reason when there is none.
pub fn find_cgroup() -> Result<MemoryLimit, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let membership = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let mut reasons = Vec::new();
    // Mount point of the cgroup2 hierarchy, and of the v1 hierarchy holding `memory`.
    let mut v2_mount = None;
    let mut v1_mount = None;
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = before.split_whitespace().nth(4);
        let mut fields = after.split_whitespace();
        let fstype = fields.next();
        let options = fields.nth(1).unwrap_or("");
        match (fstype, mount_point) {
            (Some("cgroup2"), Some(m)) => v2_mount = Some(PathBuf::from(m)),
            (Some("cgroup"), Some(m)) if options.split(',').any(|o| o == "memory") => {
                v1_mount = Some(PathBuf::from(m))
            }
            _ => {}
        }
    }
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let relative = path.trim_start_matches('/');
        let candidate = if controllers.is_empty() {
            v2_mount
                .as_ref()
                .map(|m| (CgroupVersion::V2, m.join(relative)))
        } else if controllers.split(',').any(|c| c == "memory") {
            v1_mount
                .as_ref()
                .map(|m| (CgroupVersion::V1, m.join(relative)))
        } else {
            None
        };
        let Some((version, parent)) = candidate else {
            continue;
        };
        match CellCgroup::probe(version, &parent) {
            Ok(()) => return Ok(MemoryLimit::Cgroup { version, parent }),
            Err(e) => reasons.push(e),
        }
    }
    Err(if reasons.is_empty() {
        "no cgroup with the memory controller is mounted".into()
    } else {
        reasons.join("; ")
    })
}

/// The cgroup of one cell: created capped, removed when dropped.
struct CellCgroup {
    version: CgroupVersion,
    dir: PathBuf,
}

impl CellCgroup {
    /// Creates and removes a child cgroup of `parent` to see whether cells can be capped there.
    fn probe(version: CgroupVersion, parent: &Path) -> Result<(), String> {
        let name = format!("chipbench-edge-probe-{}", std::process::id());
        CellCgroup::create_named(version, parent, u64::MAX / 2, &name).map(drop)
    }

    fn create(
        version: CgroupVersion,
        parent: &Path,
        cap: u64,
        n: usize,
    ) -> Result<CellCgroup, String> {
        let name = format!("chipbench-edge-{}-{n}", std::process::id());
        CellCgroup::create_named(version, parent, cap, &name)
    }

    fn create_named(
        version: CgroupVersion,
        parent: &Path,
        cap: u64,
        name: &str,
    ) -> Result<CellCgroup, String> {
        let dir = parent.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cgroup = CellCgroup { version, dir };
        let write = |file: &str, value: &str| {
            let path = cgroup.dir.join(file);
            std::fs::write(&path, value).map_err(|e| format!("{}: {e}", path.display()))
        };
        match version {
            CgroupVersion::V2 => {
                if !cgroup.dir.join("memory.max").exists() {
                    // The memory controller must be enabled for the children of `parent`; the
                    // kernel refuses while `parent` itself holds processes.
                    let control = parent.join("cgroup.subtree_control");
                    std::fs::write(&control, "+memory")
                        .map_err(|e| format!("{}: enabling +memory: {e}", control.display()))?;
                }
                write("memory.max", &cap.to_string())?;
                if cgroup.dir.join("memory.swap.max").exists() {
                    write("memory.swap.max", "0")?;
                }
            }
            CgroupVersion::V1 => {
                write("memory.limit_in_bytes", &cap.to_string())?;
                if cgroup.dir.join("memory.memsw.limit_in_bytes").exists() {
                    write("memory.memsw.limit_in_bytes", &cap.to_string())?;
                }
            }
        }
        Ok(cgroup)
    }

    fn procs_file(&self) -> Result<std::fs::File, String> {
        let path = self.dir.join("cgroup.procs");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    }

    /// Peak usage, and how many processes the OOM killer ended inside the cgroup.
    fn usage(&self) -> (Option<u64>, u64) {
        let read = |file: &str| std::fs::read_to_string(self.dir.join(file)).ok();
        let counter = |text: Option<String>, key: &str| {
            text.and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix(key)
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
            })
            .unwrap_or(0)
        };
        match self.version {
            CgroupVersion::V2 => (
                read("memory.peak").and_then(|t| t.trim().parse().ok()),
                counter(read("memory.events"), "oom_kill "),
            ),
            CgroupVersion::V1 => {
                let kills = counter(read("memory.oom_control"), "oom_kill ");
                let failures = read("memory.failcnt")
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                (
                    read("memory.max_usage_in_bytes").and_then(|t| t.trim().parse().ok()),
                    // Kernels before 4.13 have no oom_kill counter: a hit limit is the sign.
                    kills.max(u64::from(failures > 0)),
                )
            }
        }
    }
}

impl Drop for CellCgroup {
    fn drop(&mut self) {
        // The kernel frees an emptied cgroup asynchronously: retry briefly, then leave it.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "warning: could not remove the cgroup {}",
            self.dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_pids_are_written_compactly() {
        assert_eq!(cpu_list(&[0, 1, 2, 3]), "0-3");
        assert_eq!(cpu_list(&[0, 2, 3, 7]), "0,2-3,7");
        let mut buffer = [0u8; 20];
        assert_eq!(decimal(0, &mut buffer), b"0");
        assert_eq!(decimal(4_194_304, &mut buffer), b"4194304");
    }
}
