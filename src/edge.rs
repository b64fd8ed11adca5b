//! `chipbench bench --edge-profile ID`: an edge device emulated on this host. Threads are capped
//! to the profile's cores, and each cell runs in a process of its own pinned to that many CPUs
//! and capped to the profile's RAM (the harness's constrained executor), so that a variant that
//! does not fit fails its own cell with an out-of-memory reason instead of killing the sweep.
//! Every timing is this host's under those limits, never the device's.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chipbench_core::format_bytes;
use chipbench_core::result::{EDGE_LABEL, EdgeEmulation};
use chipbench_harness::constrained::{Constrained, cpu_list};
use chipbench_harness::memory::{self, MemoryLimit};
use chipbench_harness::protocol::{JobContext, allowed_cpus};
use chipbench_probe::profile::{self, Profile};
use chipbench_runner::Target;
use clap::{Args, ValueEnum};

use crate::UsageError;
use crate::cmd::backends::{self, Unavailable};

#[derive(Args, Debug, Default)]
pub struct EdgeArgs {
    /// Emulate an edge device on this host: a profile id (rpi4, rpi5, jetson-orin-nano-cpu,
    /// jetson-orin-nano-gpu, phone-a55) or a TOML file in the format of
    /// crates/probe/data/profiles.toml. Threads are capped to its cores; each cell runs in its own
    /// process pinned to that many CPUs and capped to its RAM. Timings are this host's under those
    /// limits, not the device's.
    #[arg(long, value_name = "ID|FILE.toml")]
    pub edge_profile: Option<String>,
    /// Memory budget of each cell, e.g. 512MiB or 2GiB (K, M, G and KiB, MiB, GiB are binary;
    /// KB, MB, GB decimal): a cell estimated to need more fails before it allocates anything, and
    /// each cell's process is capped there (a cgroup of its own where one can be created, else
    /// RLIMIT_AS with a margin for mapped libraries), so one that grows past it fails as out of
    /// memory (default: 80 % of the memory available when the run starts). With --edge-profile,
    /// the cap of each cell's constrained process (default: the profile's RAM).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_cap: Option<u64>,
    /// How to cap memory: auto (a cgroup of its own per cell where one can be created, which caps
    /// resident memory; else RLIMIT_AS, which caps virtual address space), cgroup or rlimit.
    #[arg(long, value_enum, default_value_t = LimitChoice::Auto, value_name = "HOW", requires = "edge_profile")]
    pub memory_limit: LimitChoice,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LimitChoice {
    #[default]
    Auto,
    Cgroup,
    Rlimit,
}

/// The share of the memory available at the start that a cell may plan to use by default: the
/// rest is the harness's, the other process's and the estimate's error margin.
const DEFAULT_BUDGET_SHARE: f64 = 0.8;

/// The memory budget each cell's estimate is checked against before it runs, and where it comes
/// from; `None` under an edge profile, whose constrained processes are capped for real and
/// record an out-of-memory cell as not fitting the device.
pub fn memory_budget(args: &EdgeArgs, edge: Option<&Emulation>) -> Option<(u64, String)> {
    if edge.is_some() {
        return None;
    }
    if let Some(cap) = args.memory_cap {
        return Some((cap, "--memory-cap".into()));
    }
    chipbench_probe::available_memory_bytes().map(|available| {
        (
            (available as f64 * DEFAULT_BUDGET_SHARE) as u64,
            format!(
                "{:.0} % of the memory available when the run started",
                DEFAULT_BUDGET_SHARE * 100.0
            ),
        )
    })
}

/// An edge profile ready to run cells under its constraints.
pub struct Emulation {
    profile: Profile,
    notes: Vec<String>,
    /// Runs the cells.
    pub executor: Constrained,
}

impl Emulation {
    /// The emulation `--edge-profile` asks for, or `None` without it. A bad profile, an
    /// impossible memory mechanism or a host without CPUs to pin to is a usage error.
    pub fn prepare(
        args: &EdgeArgs,
        context: &JobContext,
        cell_timeout: Duration,
    ) -> anyhow::Result<Option<Emulation>> {
        let Some(wanted) = &args.edge_profile else {
            return Ok(None);
        };
        let profile = resolve_profile(wanted)?;
        let allowed = allowed_cpus().map_err(|e| UsageError(format!("--edge-profile: {e}")))?;
        let cores = profile.cores as usize;
        let cpus: Vec<usize> = allowed.iter().copied().take(cores).collect();
        let cap = args.memory_cap.unwrap_or_else(|| profile.memory_bytes());
        let limit = match args.memory_limit {
            LimitChoice::Rlimit => MemoryLimit::RlimitAs,
            LimitChoice::Cgroup => memory::find_cgroup().map_err(|e| {
                UsageError(format!(
                    "--memory-limit cgroup: no usable memory cgroup here: {e}"
                ))
            })?,
            LimitChoice::Auto => memory::find_cgroup().unwrap_or(MemoryLimit::RlimitAs),
        };
        let mut notes = vec![format!(
            "each cell ran in a process of its own (chipbench worker) with at most {cores} threads \
             (the profile's cores), pinned with sched_setaffinity to CPUs {} of this host",
            cpu_list(&cpus)
        )];
        if cpus.len() < cores {
            notes.push(format!(
                "this host lets chipbench use {} CPUs, fewer than the profile's {cores} cores: cells ran \
                 with at most {} threads",
                allowed.len(),
                cpus.len()
            ));
        }
        notes.push(format!(
            "memory capped at {} per cell by {}{}",
            format_bytes(cap as f64),
            limit.describe(),
            if args.memory_cap.is_some() {
                format!(
                    " (--memory-cap; the profile's RAM is {})",
                    format_bytes(profile.memory_bytes() as f64)
                )
            } else {
                " (the profile's whole RAM: the device's OS needs some of it too)".into()
            }
        ));
        if matches!(limit, MemoryLimit::RlimitAs) {
            notes.push(
                "RLIMIT_AS counts virtual memory, not resident memory: thread stacks, mapped \
                 libraries and allocator reservations count, so a model needs a larger cap than its \
                 peak RSS; glibc's per-thread malloc arenas are limited (MALLOC_ARENA_MAX=1) so \
                 that their 64 MiB reservations do not count"
                    .into(),
            );
        }
        notes.push(format!(
            "cores: {}; RAM: {}",
            profile.source_of("cores"),
            profile.source_of("memory_gib")
        ));
        notes.push(match (profile.active_power_w, &profile.active_power_scope) {
            (Some(watts), Some(scope)) => format!(
                "energy not estimated: this host's power says nothing about the device; the profile's \
                 typical active power is {watts} W ({scope}; {})",
                profile.source_of("active_power_w")
            ),
            _ => "energy not estimated: this host's power says nothing about the device, and no \
                  vendor publishes the profile's power"
                .into(),
        });
        let exe =
            std::env::current_exe().context("cannot find the chipbench binary to run cells")?;
        let executor = Constrained::new(
            profile.id.clone(),
            profile.memory_bytes(),
            cpus,
            cap,
            limit,
            exe,
            context.clone(),
            cell_timeout,
        );
        Ok(Some(Emulation {
            profile,
            notes,
            executor,
        }))
    }

    /// The thread count of a cell when `--threads` is not given: the profile's cores, or the CPUs
    /// this host has for them when it has fewer.
    pub fn threads(&self) -> usize {
        self.executor.cpus.len()
    }

    /// `--threads` beyond the profile's cores would not emulate the device.
    pub fn check_threads(&self, requested: &[usize]) -> Result<(), UsageError> {
        match requested.iter().find(|&&t| t > self.profile.cores as usize) {
            Some(t) => Err(UsageError(format!(
                "--threads {t}: edge profile {} has {} cores",
                self.profile.id, self.profile.cores
            ))),
            None => Ok(()),
        }
    }

    /// The targets to run — `--backend` when given, else the profile's CPU backends — and the
    /// backends to record as skipped, with the profile's GPU and NPU backends among them when
    /// `--backend` is not given: this host cannot emulate them.
    pub fn select<'a>(
        &self,
        registry: &'a [Box<dyn chipbench_core::Backend>],
        requested: &[String],
    ) -> Result<(Vec<Target<'a>>, Vec<Unavailable>), UsageError> {
        if !requested.is_empty() {
            return backends::select(registry, requested);
        }
        let cpu: Vec<String> = self.profile.cpu_backends().map(|b| b.label()).collect();
        let (targets, mut skipped) = match cpu.is_empty() {
            true => (Vec::new(), Vec::new()),
            false => backends::select(registry, &cpu)?,
        };
        skipped.extend(self.not_emulated());
        Ok((targets, skipped))
    }

    /// The profile's backends that compute on a GPU or NPU, with why they are skipped.
    fn not_emulated(&self) -> Vec<Unavailable> {
        self.profile
            .backends
            .iter()
            .filter(|b| b.runs_on != profile::Unit::Cpu)
            .map(|b| Unavailable {
                label: b.label(),
                reason: format!(
                    "runs on {}'s {}: a constrained run on this host emulates only its CPU cores and \
                     memory; measure it on the device with `chipbench remote`",
                    self.profile.name,
                    b.runs_on.label()
                ),
            })
            .collect()
    }

    /// The run's `config.edge_profile`.
    pub fn record(&self) -> EdgeEmulation {
        EdgeEmulation {
            profile: self.profile.id.clone(),
            name: self.profile.name.clone(),
            chip: self.profile.chip.clone(),
            cores: self.profile.cores as usize,
            pinned_cpus: self.executor.cpus.clone(),
            memory_bytes: self.profile.memory_bytes(),
            memory_cap_bytes: self.executor.cap,
            memory_limit: self.executor.limit.id().into(),
            label: EDGE_LABEL.into(),
            notes: self.notes.clone(),
        }
    }
}

/// `--edge-profile`: a shipped profile id, or a file holding exactly one profile.
fn resolve_profile(wanted: &str) -> anyhow::Result<Profile> {
    let chips =
        chipbench_probe::catalog::catalog().context("the built-in chip catalog is invalid")?;
    let path = Path::new(wanted);
    if wanted.ends_with(".toml") || path.is_file() {
        let mut loaded =
            profile::load(path, &chips).map_err(|e| UsageError(format!("--edge-profile {e}")))?;
        return match loaded.len() {
            1 => Ok(loaded.remove(0)),
            n => Err(UsageError(format!(
                "--edge-profile {wanted}: the file holds {n} profiles; give it exactly one"
            ))
            .into()),
        };
    }
    let shipped = profile::profiles(&chips).context("the built-in device profiles are invalid")?;
    profile::find(&shipped, wanted).cloned().ok_or_else(|| {
        let ids: Vec<&str> = shipped.iter().map(|p| p.id.as_str()).collect();
        UsageError(format!(
            "--edge-profile: no profile '{wanted}' (built in: {}; or a .toml file)",
            ids.join(", ")
        ))
        .into()
    })
}

/// A size with an optional unit: `64MiB`, `2G`, `500MB`, `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}': expected a size such as 512MiB or 2GiB"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        other => {
            return Err(format!(
                "'{text}': unknown unit '{other}' (B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    let bytes = (value * scale).round();
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("'{text}': the size must be at least one byte"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").unwrap_err().contains("512MiB"));
        assert!(
            parse_size("3 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_size("0").is_err());
    }
}
