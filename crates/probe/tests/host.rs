//! The host probe on this machine and on fixture sysfs trees.

use std::path::Path;

use chipbench_probe::{cpu, host, host_at};

fn write(root: &Path, relative: &str, contents: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{contents}\n")).unwrap();
}

#[test]
fn isa_flags_match_proc_cpuinfo() {
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        eprintln!("skipped: no /proc/cpuinfo on this system");
        return;
    };
    let listed = cpu::cpuinfo_flags(&cpuinfo);
    let h = host();
    assert!(
        !cpu::TRACKED_FLAGS.is_empty(),
        "this architecture has tracked flags"
    );
    for flag in cpu::TRACKED_FLAGS {
        let in_cpuinfo = listed.iter().any(|l| l == flag);
        let probed = h.isa_flags.iter().any(|f| f == flag);
        assert_eq!(
            probed, in_cpuinfo,
            "'{flag}': probe says {probed}, /proc/cpuinfo says {in_cpuinfo}"
        );
    }
    assert!(
        h.provenance["isa_flags"].contains("agrees with /proc/cpuinfo"),
        "{}",
        h.provenance["isa_flags"]
    );
    let mut sorted = h.isa_flags.clone();
    sorted.sort();
    assert_eq!(sorted, h.isa_flags, "sorted, so runs diff cleanly");
}

#[test]
fn the_matrix_features_of_this_host_are_reported() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let listed = cpu::cpuinfo_flags(&cpuinfo);
    let h = host();
    for flag in [
        "avx512_vnni",
        "avx_vnni",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
        "asimddp",
        "i8mm",
    ] {
        if listed.iter().any(|l| l == flag) {
            assert!(
                h.isa_flags.iter().any(|f| f == flag),
                "the kernel lists {flag}; the probe must report it"
            );
        }
    }
    eprintln!("ISA flags here: {}", h.isa_flags.join(" "));
}

#[test]
fn reads_caches_clocks_governor_turbo_container_and_sensors_from_a_fixture_root() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let cache = "sys/devices/system/cpu/cpu0/cache";
    for (index, level, kind, size, shared) in [
        (0, 1, "Data", "48K", "0-1"),
        (1, 1, "Instruction", "32K", "0-1"),
        (2, 2, "Unified", "2048K", "0-1"),
        (3, 3, "Unified", "105M", "0-111"),
    ] {
        write(
            r,
            &format!("{cache}/index{index}/level"),
            &level.to_string(),
        );
        write(r, &format!("{cache}/index{index}/type"), kind);
        write(r, &format!("{cache}/index{index}/size"), size);
        write(r, &format!("{cache}/index{index}/shared_cpu_list"), shared);
    }
    write(
        r,
        "sys/devices/system/cpu/cpu0/cpufreq/base_frequency",
        "2000000",
    );
    write(
        r,
        "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
        "3800000",
    );
    write(
        r,
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
        "performance",
    );
    write(r, "sys/devices/system/cpu/intel_pstate/no_turbo", "1");
    write(r, ".dockerenv", "");
    write(r, "sys/class/powercap/intel-rapl:0/name", "package-0");
    write(r, "sys/class/powercap/intel-rapl:0/energy_uj", "123456");

    let h = host_at(r);
    assert_eq!(h.caches.len(), 4);
    let l3 = h.caches.iter().find(|c| c.level == 3).unwrap();
    assert_eq!(
        (l3.kind.as_str(), l3.size_bytes, l3.shared_by),
        ("unified", 105 << 20, 112)
    );
    assert_eq!(h.caches[0].kind, "data");
    assert_eq!(h.cpu_frequency_mhz.base, Some(2000.0));
    assert_eq!(h.cpu_frequency_mhz.max, Some(3800.0));
    assert_eq!(h.frequency_governor.as_deref(), Some("performance"));
    assert_eq!(h.turbo, Some(false), "no_turbo = 1");
    assert_eq!(h.container.as_deref(), Some("docker"));
    let package = h.energy_sensors.iter().find(|s| s.meter == "rapl").unwrap();
    assert!(package.readable && package.name == "package-0" && package.scope == "package");
    assert!(
        h.energy_sensors.iter().any(|s| s.meter == "nvml"),
        "NVML is always looked for"
    );
}

#[test]
fn an_empty_root_gives_reasons_not_guesses() {
    let root = tempfile::tempdir().unwrap();
    let h = host_at(root.path());
    assert!(h.caches.is_empty() && h.frequency_governor.is_none() && h.turbo.is_none());
    assert_eq!(
        (h.cpu_frequency_mhz.base, h.cpu_frequency_mhz.max),
        (None, None)
    );
    assert!(h.provenance["caches"].starts_with("not exposed"));
    assert!(h.provenance["cpu_frequency_mhz"].contains("does not publish"));
    assert!(
        h.energy_sensors
            .iter()
            .all(|s| s.readable || s.reason.is_some())
    );
    assert!(
        h.energy_sensors
            .iter()
            .any(|s| s.meter == "rapl" && !s.readable)
    );
}

#[test]
fn the_host_block_round_trips_through_json() {
    let h = host();
    let json = serde_json::to_string(&h).unwrap();
    assert!(json.contains("\"isa_flags\""));
    let back: chipbench_core::result::Host = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h);
}
