//! Memory caps of the processes that measure cells: a cgroup of its own per process where
//! chipbench can create one (it caps resident memory), else RLIMIT_AS (it caps address space).
//! Every cell's process runs under the run's memory budget (`bench --memory-cap`), an edge
//! profile's under the device's RAM, so that a model that grows past what the estimate foresaw
//! fails its own cell as out of memory instead of taking the machine down.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chipbench_core::format_bytes;

/// Cgroups created by this process, for their names.
static CGROUPS_CREATED: AtomicUsize = AtomicUsize::new(0);

/// glibc reserves up to 8 malloc arenas per CPU, each a 64 MiB mapping that RLIMIT_AS counts
/// though little of it is ever resident.
const MALLOC_ARENA_BYTES: u64 = 64 << 20;
/// Address space beyond the heap that a worker maps without using it as memory: the binary and
/// its libraries (ONNX Runtime, a Vulkan driver and its compiler), thread stacks, GPU mappings.
const MAPPED_BEYOND_HEAP_BYTES: u64 = 4 << 30;

/// The cap of each worker process, and how it is enforced.
#[derive(Clone, Debug)]
pub struct MemoryCap {
    /// The memory a process may use.
    pub bytes: u64,
    pub limit: MemoryLimit,
    /// RLIMIT_AS's value where it enforces the cap: `bytes` for an edge profile (whose workers run
    /// with one malloc arena), `bytes` and a margin for the address space a worker maps without
    /// using it otherwise (see [`MemoryCap::for_cells`]).
    pub address_space: u64,
}

impl MemoryCap {
    /// A cap of exactly `bytes`, by `limit`.
    pub fn exact(bytes: u64, limit: MemoryLimit) -> MemoryCap {
        MemoryCap {
            bytes,
            limit,
            address_space: bytes,
        }
    }

    /// The cap of ordinary cells: `bytes` of memory in a cgroup where one can be created, else
    /// RLIMIT_AS at `bytes` plus what a worker maps without using (the malloc arenas of every CPU
    /// and 4 GiB of libraries, stacks and driver mappings): a second line behind the memory
    /// estimate, which stops what grows far past it without changing how the engines allocate.
    pub fn for_cells(bytes: u64) -> MemoryCap {
        let limit = find_cgroup().unwrap_or(MemoryLimit::RlimitAs);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        MemoryCap {
            bytes,
            limit,
            address_space: bytes
                .saturating_add(8 * cpus * MALLOC_ARENA_BYTES)
                .saturating_add(MAPPED_BEYOND_HEAP_BYTES),
        }
    }

    /// `18.8 GiB by cgroup v1 memory.limit_in_bytes (...)`, or with RLIMIT_AS its value.
    pub fn describe(&self) -> String {
        match self.limit {
            MemoryLimit::RlimitAs if self.address_space > self.bytes => format!(
                "{} by RLIMIT_AS (virtual address space) at {}, the margin for the libraries, \
                 stacks and malloc arenas a process maps without using",
                format_bytes(self.bytes as f64),
                format_bytes(self.address_space as f64)
            ),
            _ => format!(
                "{} by {}",
                format_bytes(self.bytes as f64),
                self.limit.describe()
            ),
        }
    }

    /// Makes `command`'s process start under the cap: a cgroup of its own it joins before it
    /// runs anything, or RLIMIT_AS. Keep the confinement until the process has ended: it holds
    /// the cgroup, whose counters tell an out-of-memory end, and removes it when dropped.
    pub fn confine(&self, command: &mut Command) -> Result<Confinement, String> {
        let (cgroup, procs) = match &self.limit {
            MemoryLimit::Cgroup { version, parent } => {
                let cgroup = CellCgroup::create(*version, parent, self.bytes)
                    .map_err(|e| format!("cannot create the process's memory cgroup: {e}"))?;
                let procs = cgroup.procs_file()?;
                (Some(cgroup), Some(procs))
            }
            MemoryLimit::RlimitAs => (None, None),
        };
        let procs_fd = procs.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        let rlimit = matches!(self.limit, MemoryLimit::RlimitAs).then_some(self.address_space);
        // SAFETY: between fork and exec the closure only makes async-signal-safe system calls
        // (getpid, write, setrlimit) on memory prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                if let Some(fd) = procs_fd {
                    let mut digits = [0u8; 20];
                    let text = decimal(libc::getpid() as u64, &mut digits);
                    if libc::write(fd, text.as_ptr().cast(), text.len()) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
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
        Ok(Confinement { cgroup, procs })
    }
}

/// A process's place under its cap (see [`MemoryCap::confine`]).
pub struct Confinement {
    cgroup: Option<CellCgroup>,
    /// The cgroup's `cgroup.procs`, open until the process has joined it.
    procs: Option<std::fs::File>,
}

impl Confinement {
    /// The process has started (and joined its cgroup).
    pub fn started(&mut self) {
        self.procs = None;
    }

    /// The cgroup's peak usage and the processes its OOM killer ended (`(None, 0)` under
    /// RLIMIT_AS).
    pub fn usage(&self) -> (Option<u64>, u64) {
        self.cgroup.as_ref().map_or((None, 0), CellCgroup::usage)
    }
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

/// The cgroup of one worker process: created capped, removed when dropped.
struct CellCgroup {
    version: CgroupVersion,
    dir: PathBuf,
}

impl CellCgroup {
    /// Creates and removes a child cgroup of `parent` to see whether cells can be capped there.
    fn probe(version: CgroupVersion, parent: &Path) -> Result<(), String> {
        let name = format!("chipbench-probe-{}", std::process::id());
        CellCgroup::create_named(version, parent, u64::MAX / 2, &name).map(drop)
    }

    /// A new cgroup under `parent`, capped at `cap` bytes, named after this process and a count.
    fn create(version: CgroupVersion, parent: &Path, cap: u64) -> Result<CellCgroup, String> {
        let n = CGROUPS_CREATED.fetch_add(1, Ordering::Relaxed);
        let name = format!("chipbench-cell-{}-{n}", std::process::id());
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

/// The line that says an allocation was refused, as Rust's allocator, tract or the OS word it.
pub fn allocation_failure_in(text: &str) -> Option<&str> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_written_without_allocating() {
        let mut buffer = [0u8; 20];
        assert_eq!(decimal(0, &mut buffer), b"0");
        assert_eq!(decimal(4_194_304, &mut buffer), b"4194304");
    }

    #[test]
    fn address_space_caps_leave_room_for_what_is_mapped_and_say_so() {
        let cap = MemoryCap {
            limit: MemoryLimit::RlimitAs,
            ..MemoryCap::for_cells(1 << 30)
        };
        assert!(cap.address_space >= cap.bytes + MAPPED_BEYOND_HEAP_BYTES + 8 * MALLOC_ARENA_BYTES);
        assert!(
            cap.describe().starts_with("1.0 GiB by RLIMIT_AS"),
            "{}",
            cap.describe()
        );
        let exact = MemoryCap::exact(1 << 30, MemoryLimit::RlimitAs);
        assert_eq!(exact.address_space, 1 << 30);
        assert_eq!(
            exact.describe(),
            "1.0 GiB by RLIMIT_AS (virtual address space)"
        );
    }

    #[test]
    fn refused_allocations_are_recognised_in_every_wording() {
        for line in [
            "memory allocation of 1600000000 bytes failed",
            "Error: Failed to allocate memory for requested buffer",
            "Cannot allocate memory (os error 12)",
        ] {
            assert_eq!(allocation_failure_in(&format!("x\n{line}\n")), Some(line));
        }
        assert_eq!(allocation_failure_in("the model has no input 'x'"), None);
    }
}
