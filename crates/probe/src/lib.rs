//! The hardware side of a result: what the host is (CPU and its ISA features, caches, clocks,
//! memory, OS, VM or container, GPUs, energy sensors), what chips users compare can do (the
//! catalog), the roofline ceilings measured on this host and projections onto catalog chips,
//! and the host's own speed checked between cells.
//!
//! Readers of sysfs and procfs take a root directory (`/` on a real host) so tests can point
//! them at fixture trees.

pub mod catalog;
pub mod ceilings;
pub mod cpu;
mod error;
pub mod gpu;
pub mod profile;
pub mod projection;
pub mod roofline;
pub mod speed;
pub mod virt;

use std::collections::BTreeMap;
use std::path::Path;

use chipbench_core::result::Host;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

pub use error::{Error, Result};

/// The memory available for new work now (Linux's MemAvailable, as sysinfo reads it), in bytes;
/// `None` where it cannot be read.
pub fn available_memory_bytes() -> Option<u64> {
    let system = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .ok()?;
    Some(system.available_memory()).filter(|&bytes| bytes > 0)
}

/// Describes this machine. Fields that cannot be read stay empty, and `provenance` says why.
pub fn host() -> Host {
    host_at(Path::new("/"))
}

/// [`host`], reading sysfs and procfs under `root`; what sysinfo and CPUID report (brand, cores,
/// memory, OS, ISA features, hypervisor) is always this machine's.
pub fn host_at(root: &Path) -> Host {
    let refresh = RefreshKind::nothing()
        .with_cpu(CpuRefreshKind::nothing().with_frequency())
        .with_memory(MemoryRefreshKind::nothing().with_ram());
    let system = System::new_with_specifics(refresh).ok();
    let cpus = system.as_ref().map(|s| s.cpus()).unwrap_or_default();
    let mut provenance = BTreeMap::new();

    let (mut frequency, frequency_note) = cpu::frequency_limits(root);
    frequency.current = cpus
        .first()
        .map(|c| c.frequency() as f64)
        .filter(|&f| f > 0.0);
    provenance.insert(
        "cpu_frequency_mhz".to_string(),
        match frequency_note {
            Some(note) => format!("current from sysinfo; base/max: {note}"),
            None => "base/max from cpufreq (kHz) or ACPI CPPC; current from sysinfo".into(),
        },
    );

    let isa_flags = cpu::detect_isa_flags();
    provenance.insert("isa_flags".into(), isa_provenance(root, &isa_flags));

    let gpus = match gpu::nvml_gpus() {
        Ok(list) => {
            provenance.insert(
                "gpus".into(),
                "NVML (NVIDIA driver library, loaded at run time)".into(),
            );
            list
        }
        Err(reason) => {
            provenance.insert("gpus".into(), format!("NVML: {reason}"));
            Vec::new()
        }
    };

    let governor = cpu::governor(root);
    let turbo = cpu::turbo(root);
    if governor.is_none() || turbo.is_none() {
        provenance.insert(
            "frequency_governor".into(),
            "not exposed: no cpufreq governor / boost control here (common in virtual machines and containers)"
                .into(),
        );
    }
    let caches = cpu::caches(root);
    if caches.is_empty() {
        provenance.insert(
            "caches".into(),
            "not exposed: no /sys/devices/system/cpu/cpu0/cache".into(),
        );
    }

    let mut host = Host {
        cpu_brand: cpus
            .first()
            .map(|c| c.brand().trim().to_string())
            .unwrap_or_default(),
        cpu_vendor: cpus
            .first()
            .map(|c| c.vendor_id().to_string())
            .unwrap_or_default(),
        arch: std::env::consts::ARCH.to_string(),
        logical_cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        physical_cores: System::physical_core_count().ok(),
        memory_bytes: system.as_ref().map(|s| s.total_memory()).unwrap_or(0),
        os: System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.to_string()),
        kernel: System::kernel_version().unwrap_or_default(),
        hostname: System::host_name().unwrap_or_default(),
        fingerprint: String::new(),
        isa_flags,
        cpu_frequency_mhz: frequency,
        caches,
        hypervisor: virt::hypervisor(root),
        container: virt::container(root),
        frequency_governor: governor,
        turbo,
        gpus,
        energy_sensors: chipbench_energy::discover_sensors(root),
        provenance,
    };
    host.fingerprint = fingerprint(&host);
    host
}

/// How the ISA flags were found, and any disagreement with the kernel's /proc/cpuinfo.
fn isa_provenance(root: &Path, flags: &[String]) -> String {
    let mut text = format!("{}; Linux /proc/cpuinfo spellings", cpu::ISA_METHOD);
    if let Ok(cpuinfo) = std::fs::read_to_string(root.join("proc/cpuinfo")) {
        let listed = cpu::cpuinfo_flags(&cpuinfo);
        let differ: Vec<&str> = cpu::TRACKED_FLAGS
            .iter()
            .filter(|f| listed.iter().any(|l| l == *f) != flags.iter().any(|d| d == *f))
            .copied()
            .collect();
        if differ.is_empty() {
            text.push_str("; agrees with /proc/cpuinfo");
        } else {
            text.push_str(&format!(
                "; differs from /proc/cpuinfo on: {}",
                differ.join(", ")
            ));
        }
    }
    text
}

/// A stable digest of what decides speed: CPU model, core counts, memory (rounded to GiB), OS,
/// kernel and architecture. Not the hostname: two identical CI runners are the same host for
/// comparison purposes.
pub fn fingerprint(host: &Host) -> String {
    let key = format!(
        "{}|{}|{}|{:?}|{}|{}|{}",
        host.cpu_brand,
        host.arch,
        host.logical_cores,
        host.physical_cores,
        (host.memory_bytes as f64 / (1u64 << 30) as f64).round(),
        host.os,
        host.kernel
    );
    // FNV-1a: stable across Rust releases, unlike std's DefaultHasher.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_this_machine() {
        let h = host();
        assert!(h.logical_cores >= 1);
        assert!(h.memory_bytes > 0);
        assert_eq!(h.fingerprint.len(), 16);
        assert_eq!(
            h.fingerprint,
            fingerprint(&h),
            "the fingerprint is deterministic"
        );
    }

    #[test]
    fn fingerprint_ignores_the_hostname_but_not_the_cpu() {
        let a = host();
        let mut b = a.clone();
        b.hostname = "elsewhere".into();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.cpu_brand.push_str(" v2");
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
