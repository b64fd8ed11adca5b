//! The CPU beyond what sysinfo reports: the instruction-set features inference kernels pick
//! from, caches, clock limits, the frequency governor and turbo.

use std::path::Path;

use chipbench_core::result::{CpuCache, CpuFrequency};

/// The features that decide which kernels an inference engine can use, in Linux /proc/cpuinfo
/// spelling, for this build's architecture.
#[cfg(target_arch = "x86_64")]
pub const TRACKED_FLAGS: &[&str] = &[
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512cd",
    "avx512vbmi",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
];
#[cfg(target_arch = "aarch64")]
pub const TRACKED_FLAGS: &[&str] = &[
    "asimd", "asimddp", "i8mm", "bf16", "fphp", "asimdhp", "sve", "sve2",
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const TRACKED_FLAGS: &[&str] = &[];

/// How [`detect_isa_flags`] decides.
#[cfg(target_arch = "x86_64")]
pub const ISA_METHOD: &str = "std::arch::is_x86_feature_detected (CPUID plus the OS enabling the \
register state); AMX from CPUID leaf 7 EDX and XCR0 tile state, as std's AMX detection is unstable";
#[cfg(target_arch = "aarch64")]
pub const ISA_METHOD: &str = "std::arch::is_aarch64_feature_detected (the kernel's HWCAPs)";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const ISA_METHOD: &str = "no feature detection for this architecture";

/// The tracked features this CPU and OS support, sorted.
pub fn detect_isa_flags() -> Vec<String> {
    let mut flags: Vec<String> = detected().into_iter().map(String::from).collect();
    flags.sort();
    flags
}

#[cfg(target_arch = "x86_64")]
fn detected() -> Vec<&'static str> {
    use std::arch::is_x86_feature_detected as has;
    let mut found = Vec::new();
    let mut add = |yes: bool, name: &'static str| {
        if yes {
            found.push(name);
        }
    };
    add(has!("sse4.2"), "sse4_2");
    add(has!("avx"), "avx");
    add(has!("avx2"), "avx2");
    add(has!("fma"), "fma");
    add(has!("f16c"), "f16c");
    add(has!("avx512f"), "avx512f");
    add(has!("avx512bw"), "avx512bw");
    add(has!("avx512vl"), "avx512vl");
    add(has!("avx512dq"), "avx512dq");
    add(has!("avx512cd"), "avx512cd");
    add(has!("avx512vbmi"), "avx512vbmi");
    add(has!("avx512vnni"), "avx512_vnni");
    add(has!("avxvnni"), "avx_vnni");
    add(has!("avx512bf16"), "avx512_bf16");
    add(has!("avx512fp16"), "avx512_fp16");
    let amx = amx_flags();
    for name in amx {
        add(true, name);
    }
    found
}

/// AMX features CPUID announces, provided the OS enabled the tile state in XCR0 (bits 17, 18).
#[cfg(target_arch = "x86_64")]
fn amx_flags() -> Vec<&'static str> {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    if __cpuid(0).eax < 7 || !std::arch::is_x86_feature_detected!("xsave") {
        return Vec::new();
    }
    let os_saves_xcr0 = __cpuid(1).ecx & (1 << 27) != 0;
    // SAFETY: XGETBV is available: CPUID says XSAVE is supported and the OS set OSXSAVE.
    let tile_state = os_saves_xcr0 && (unsafe { xcr0() } & (0b11 << 17)) == (0b11 << 17);
    if !tile_state {
        return Vec::new();
    }
    let edx = __cpuid_count(7, 0).edx;
    [(22, "amx_bf16"), (24, "amx_tile"), (25, "amx_int8")]
        .into_iter()
        .filter(|(bit, _)| edx & (1 << bit) != 0)
        .map(|(_, name)| name)
        .collect()
}

/// Extended control register 0: which register states the OS saves and restores.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
fn xcr0() -> u64 {
    // SAFETY: XGETBV with ECX = 0 only reads XCR0; the caller checked OSXSAVE.
    unsafe { std::arch::x86_64::_xgetbv(0) }
}

#[cfg(target_arch = "aarch64")]
fn detected() -> Vec<&'static str> {
    use std::arch::is_aarch64_feature_detected as has;
    let mut found = Vec::new();
    if has!("neon") {
        found.push("asimd");
    }
    if has!("dotprod") {
        found.push("asimddp");
    }
    if has!("i8mm") {
        found.push("i8mm");
    }
    if has!("bf16") {
        found.push("bf16");
    }
    if has!("fp16") {
        // FEAT_FP16 covers scalar and vector half precision; Linux lists both.
        found.extend(["fphp", "asimdhp"]);
    }
    if has!("sve") {
        found.push("sve");
    }
    if has!("sve2") {
        found.push("sve2");
    }
    found
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detected() -> Vec<&'static str> {
    Vec::new()
}

/// The feature flags of the first processor in a /proc/cpuinfo text (`flags` on x86,
/// `Features` on ARM).
pub fn cpuinfo_flags(cpuinfo: &str) -> Vec<String> {
    cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            matches!(key.trim(), "flags" | "Features")
                .then(|| value.split_whitespace().map(String::from).collect())
        })
        .unwrap_or_default()
}

/// Caches of CPU 0 from sysfs (`cache/index*/`), smallest level first.
pub fn caches(root: &Path) -> Vec<CpuCache> {
    let dir = root.join("sys/devices/system/cpu/cpu0/cache");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut caches: Vec<CpuCache> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("index"))
        .filter_map(|e| {
            let p = e.path();
            let level = read(&p.join("level"))?.parse().ok()?;
            let kind = read(&p.join("type"))?.to_ascii_lowercase();
            let size_bytes = parse_size(&read(&p.join("size"))?)?;
            let shared_by = read(&p.join("shared_cpu_list"))
                .map(|l| count_cpu_list(&l))
                .unwrap_or(1)
                .max(1);
            Some(CpuCache {
                level,
                kind,
                size_bytes,
                shared_by,
            })
        })
        .collect();
    caches.sort_by(|a, b| (a.level, &a.kind).cmp(&(b.level, &b.kind)));
    caches
}

/// Base and maximum clock from cpufreq (or ACPI CPPC), with the reason for what is missing;
/// `current` is filled from sysinfo by the caller.
pub fn frequency_limits(root: &Path) -> (CpuFrequency, Option<String>) {
    let cpu0 = root.join("sys/devices/system/cpu/cpu0");
    let khz = |name: &str| {
        read(&cpu0.join("cpufreq").join(name))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|k| k / 1000.0)
    };
    let mhz =
        |name: &str| read(&cpu0.join("acpi_cppc").join(name)).and_then(|v| v.parse::<f64>().ok());
    let base = khz("base_frequency").or_else(|| mhz("nominal_freq"));
    let max = khz("cpuinfo_max_freq");
    let note = (base.is_none() || max.is_none()).then(|| {
        "cpufreq does not publish the base/maximum clock here (no cpufreq driver, common in virtual machines)".to_string()
    });
    (
        CpuFrequency {
            base,
            max,
            current: None,
        },
        note,
    )
}

/// The scaling governor of CPU 0.
pub fn governor(root: &Path) -> Option<String> {
    read(&root.join("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"))
}

/// Whether turbo/boost is on: intel_pstate's `no_turbo`, or cpufreq's `boost` (acpi-cpufreq,
/// amd-pstate).
pub fn turbo(root: &Path) -> Option<bool> {
    let cpu = root.join("sys/devices/system/cpu");
    if let Some(v) = read(&cpu.join("intel_pstate/no_turbo")) {
        return Some(v == "0");
    }
    read(&cpu.join("cpufreq/boost")).map(|v| v == "1")
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// `48K` -> 49152; `32M` -> 33554432.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        _ => return None,
    };
    Some(n * scale)
}

/// `0-3,8,10-11` -> 7.
fn count_cpu_list(list: &str) -> usize {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|part| match part.trim().split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_cpu_lists() {
        assert_eq!(parse_size("48K"), Some(48 * 1024));
        assert_eq!(parse_size("32768K"), Some(32 << 20));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(count_cpu_list("0-3,8,10-11"), 7);
        assert_eq!(count_cpu_list("0"), 1);
    }

    #[test]
    fn reads_arm_and_x86_cpuinfo() {
        let arm = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n";
        let flags = cpuinfo_flags(arm);
        assert!(flags.contains(&"asimddp".to_string()) && flags.contains(&"asimdhp".to_string()));
        let x86 = "processor\t: 0\nflags\t\t: fpu sse4_2 avx2 avx512_vnni amx_int8\nprocessor\t: 1\nflags\t\t: fpu\n";
        assert_eq!(
            cpuinfo_flags(x86),
            ["fpu", "sse4_2", "avx2", "avx512_vnni", "amx_int8"],
            "the first processor's"
        );
    }
}
