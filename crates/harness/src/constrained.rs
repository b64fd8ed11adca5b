//! The constrained executor: each cell, with its further sessions, in a `chipbench worker` of its
//! own, pinned to a set of CPUs and capped in memory (a cgroup of its own per cell, or
//! RLIMIT_AS, see [`crate::memory`]), so that a model that does not fit fails its own cell with an out-of-memory reason
//! instead of ending the run. `bench --edge-profile` emulates an edge device with it; every
//! timing is this host's under those limits, never the device's.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chipbench_core::format_bytes;
use chipbench_core::result::{CellResult, EdgeFit, Status};
use chipbench_runner::measure::INTERRUPTED;
use chipbench_runner::{FreshSession, MeasureSettings};

use crate::child;
use crate::executor::Executor;
use crate::memory::{CgroupVersion, MemoryCap, MemoryLimit, allocation_failure_in};
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
        let mut command = Command::new(&self.exe);
        command.arg("worker");
        if matches!(self.limit, MemoryLimit::RlimitAs) {
            // One arena, so that glibc's 64 MiB arena reservations do not count against the cap.
            command.env("MALLOC_ARENA_MAX", "1");
        }
        let mut confinement =
            match MemoryCap::exact(self.cap, self.limit.clone()).confine(&mut command) {
                Ok(c) => c,
                Err(reason) => return Ok(WorkerEnd::Died { reason, oom: false }),
            };
        child::pin(&mut command, &self.cpus);
        let request = [Message::MeasureConstrained(Box::new(job))];
        let spawned = child::converse(command, &request, Some(self.timeout));
        confinement.started();
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
        let (peak, oom_kills) = confinement.usage();
        drop(confinement);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_written_compactly() {
        assert_eq!(cpu_list(&[0, 1, 2, 3]), "0-3");
        assert_eq!(cpu_list(&[0, 2, 3, 7]), "0,2-3,7");
    }
}
