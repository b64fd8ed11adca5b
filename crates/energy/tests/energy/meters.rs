//! The sysfs meters against fixture trees: normal counters, wrap-around mid-window, permission
//! denied, missing domains, power sensors sampled through a window.

use std::time::{Duration, Instant};

use super::fixtures::{lose_root_file_access_in_this_thread, rapl_zone, write};
use chipbench_energy::{Reading, Scope, hwmon, ina3221, nvml, rapl};

const RANGE: u64 = 262_143_328_850;

fn joules(reading: &Reading, name: &str) -> f64 {
    reading
        .domains
        .iter()
        .find(|(d, _)| d.name == name)
        .map(|(_, j)| *j)
        .unwrap_or_else(|| panic!("no domain {name}"))
}

fn close_to(actual: f64, expected: f64, relative: f64) -> bool {
    (actual - expected).abs() <= expected.abs() * relative
}

#[test]
fn rapl_counts_packages_and_dram_but_not_their_parts() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let p0 = rapl_zone(r, "intel-rapl:0", "package-0", 1_000_000, Some(RANGE));
    let core = rapl_zone(r, "intel-rapl:0:0", "core", 500_000, Some(RANGE));
    let dram = rapl_zone(r, "intel-rapl:0:1", "dram", 200_000, Some(RANGE));
    let p1 = rapl_zone(r, "intel-rapl:1", "package-1", 0, Some(RANGE));

    let (meter, sensors) = rapl::discover(r);
    let meter = meter.expect("four readable zones make a meter");
    let names: Vec<&str> = sensors.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["package-0", "package-0/core", "package-0/dram", "package-1"]
    );
    assert!(
        sensors
            .iter()
            .all(|s| s.readable && s.update_period_ms == Some(1.0))
    );
    assert_eq!(
        sensors[0].source, "/sys/class/powercap/intel-rapl:0/energy_uj",
        "shown as on the host"
    );
    assert_eq!(meter.method(), "measured:rapl");

    let window = meter.open().unwrap();
    write(r, "sys/class/powercap/intel-rapl:0/energy_uj", "3000000");
    write(r, "sys/class/powercap/intel-rapl:0:0/energy_uj", "1500000");
    write(r, "sys/class/powercap/intel-rapl:0:1/energy_uj", "700000");
    write(r, "sys/class/powercap/intel-rapl:1/energy_uj", "1000000");
    let reading = window.close().unwrap();
    assert_eq!(joules(&reading, "package-0"), 2.0);
    assert_eq!(joules(&reading, "package-0/core"), 1.0);
    assert_eq!(joules(&reading, "package-0/dram"), 0.5);
    assert_eq!(joules(&reading, "package-1"), 1.0);
    assert_eq!(
        reading.total_joules(),
        3.5,
        "core is part of package-0; dram is not"
    );
    let core_domain = &reading
        .domains
        .iter()
        .find(|(d, _)| d.name == "package-0/core")
        .unwrap()
        .0;
    assert_eq!(core_domain.scope, Scope::Core);
    drop((p0, core, dram, p1));
}

#[test]
fn rapl_undoes_a_wrap_around_mid_window() {
    let root = tempfile::tempdir().unwrap();
    rapl_zone(
        root.path(),
        "intel-rapl:0",
        "package-0",
        999_000_000,
        Some(1_000_000_000),
    );
    let meter = rapl::discover(root.path()).0.unwrap();
    let window = meter.open().unwrap();
    write(
        root.path(),
        "sys/class/powercap/intel-rapl:0/energy_uj",
        "500000",
    );
    let reading = window.close().unwrap();
    assert!(
        close_to(joules(&reading, "package-0"), 1.5, 1e-12),
        "{reading:?}"
    );
}

#[test]
fn a_wrap_without_a_known_range_is_an_error_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    rapl_zone(root.path(), "intel-rapl:0", "package-0", 999_000_000, None);
    let meter = rapl::discover(root.path()).0.unwrap();
    let window = meter.open().unwrap();
    write(
        root.path(),
        "sys/class/powercap/intel-rapl:0/energy_uj",
        "500000",
    );
    let err = window.close().unwrap_err().to_string();
    assert!(
        err.contains("intel-rapl:0/energy_uj") && err.contains("wrap-around"),
        "{err}"
    );
}

#[test]
fn unreadable_rapl_counters_say_why() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let zone = rapl_zone(root.path(), "intel-rapl:0", "package-0", 1_000, Some(RANGE));
    std::fs::set_permissions(
        zone.join("energy_uj"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let path = root.path().to_path_buf();
    // Root reads mode-000 files; the discovery runs in a thread that gave that power up.
    let outcome = std::thread::spawn(move || {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 && !lose_root_file_access_in_this_thread() {
            return None;
        }
        Some(rapl::discover(&path))
    })
    .join()
    .unwrap();
    let Some((meter, sensors)) = outcome else {
        eprintln!(
            "skipped: running as root and the kernel refused to drop CAP_DAC_OVERRIDE for a thread"
        );
        return;
    };
    assert!(meter.is_none(), "no readable zone, no meter");
    assert_eq!(sensors.len(), 1);
    assert!(!sensors[0].readable);
    let reason = sensors[0].reason.as_deref().unwrap();
    assert!(
        reason.contains("permission denied") && reason.contains("CVE-2020-8694"),
        "{reason}"
    );
}

#[test]
fn missing_domains_are_listed_with_the_reason_and_the_rest_still_measured() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    rapl_zone(r, "intel-rapl:0", "package-0", 0, Some(RANGE));
    write(r, "sys/class/powercap/intel-rapl:0:0/name", "dram");
    write(r, "sys/class/powercap/intel-rapl:1/energy_uj", "5");
    let (meter, sensors) = rapl::discover(r);
    let meter = meter.expect("package-0 is readable");
    assert_eq!(meter.domains().len(), 1);
    let dram = sensors.iter().find(|s| s.name == "package-0/dram").unwrap();
    assert!(
        !dram.readable && dram.reason.as_deref().unwrap().contains("energy_uj"),
        "{dram:?}"
    );
    let nameless = sensors.iter().find(|s| s.name == "intel-rapl:1").unwrap();
    assert!(
        nameless.reason.as_deref().unwrap().contains("name"),
        "{nameless:?}"
    );

    let empty = tempfile::tempdir().unwrap();
    let (meter, sensors) = rapl::discover(empty.path());
    assert!(meter.is_none());
    assert!(
        sensors[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("absent: no /sys/class/powercap")
    );
}

#[test]
fn a_domain_that_disappears_mid_window_fails_the_close_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let zone = rapl_zone(root.path(), "intel-rapl:0", "package-0", 0, Some(RANGE));
    let meter = rapl::discover(root.path()).0.unwrap();
    let window = meter.open().unwrap();
    std::fs::remove_file(zone.join("energy_uj")).unwrap();
    let err = window.close().unwrap_err().to_string();
    assert!(err.contains("intel-rapl:0/energy_uj"), "{err}");
}

#[test]
fn hwmon_reads_energy_counters_and_samples_power_sensors() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(r, "sys/class/hwmon/hwmon0/name", "amdgpu");
    write(r, "sys/class/hwmon/hwmon0/power1_average", "30000000");
    write(r, "sys/class/hwmon/hwmon0/power1_label", "PPT");
    write(r, "sys/class/hwmon/hwmon0/update_interval", "10");
    write(r, "sys/class/hwmon/hwmon1/name", "amd_energy");
    write(r, "sys/class/hwmon/hwmon1/energy1_input", "1000000");
    write(r, "sys/class/hwmon/hwmon1/energy1_label", "Esocket0");
    write(r, "sys/class/hwmon/hwmon1/energy2_input", "0");
    write(r, "sys/class/hwmon/hwmon1/energy2_label", "Ecore000");
    write(r, "sys/class/hwmon/hwmon2/name", "nvme");
    write(r, "sys/class/hwmon/hwmon2/temp1_input", "41000");

    let (meter, sensors) = hwmon::discover(r, false);
    let meter = meter.unwrap();
    let mut names: Vec<&str> = sensors.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["amd_energy/Ecore000", "amd_energy/Esocket0", "amdgpu/PPT"]
    );
    let assumed = sensors
        .iter()
        .find(|s| s.name == "amd_energy/Esocket0")
        .unwrap();
    assert_eq!(
        assumed.update_period_ms,
        Some(1000.0),
        "no update_interval: 1 s assumed"
    );
    assert!(assumed.reason.as_deref().unwrap().contains("assumed"));
    assert_eq!(
        meter.update_period(),
        Duration::from_secs(1),
        "the slowest sensor sets the period"
    );

    let t = Instant::now();
    let window = meter.open().unwrap();
    write(r, "sys/class/hwmon/hwmon1/energy1_input", "3000000");
    write(r, "sys/class/hwmon/hwmon1/energy2_input", "1000000");
    std::thread::sleep(Duration::from_millis(150));
    let reading = window.close().unwrap();
    let seconds = t.elapsed().as_secs_f64();
    assert_eq!(joules(&reading, "amd_energy/Esocket0"), 2.0);
    assert_eq!(joules(&reading, "amd_energy/Ecore000"), 1.0);
    let gpu = joules(&reading, "amdgpu/PPT");
    assert!(
        close_to(gpu, 30.0 * seconds, 0.1),
        "{gpu} J in {seconds} s at 30 W"
    );
    let total = reading.total_joules();
    assert!(
        close_to(total, 2.0 + gpu, 1e-9),
        "cores are inside the socket: {total}"
    );

    let (meter, sensors) = hwmon::discover(r, true);
    assert_eq!(
        meter.unwrap().domains().len(),
        1,
        "with RAPL, only the GPU is read through hwmon"
    );
    let skipped = sensors
        .iter()
        .find(|s| s.name == "amd_energy/Esocket0")
        .unwrap();
    assert!(skipped.reason.as_deref().unwrap().contains("RAPL"));
}

#[test]
fn jetson_rails_are_integrated_and_only_the_board_input_counts() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let hw = "sys/class/hwmon/hwmon3";
    write(r, &format!("{hw}/name"), "ina3221");
    write(r, &format!("{hw}/update_interval"), "10");
    write(r, &format!("{hw}/in1_label"), "VDD_IN");
    write(r, &format!("{hw}/in1_input"), "5000");
    write(r, &format!("{hw}/curr1_input"), "2000");
    write(r, &format!("{hw}/in2_label"), "VDD_CPU_GPU_CV");
    write(r, &format!("{hw}/in2_input"), "5000");
    write(r, &format!("{hw}/curr2_input"), "800");
    let iio = "sys/bus/i2c/drivers/ina3221x/1-0040/iio:device0";
    write(r, &format!("{iio}/rail_name_0"), "POM_5V_GPU");
    write(r, &format!("{iio}/in_power0_input"), "3000");

    let (meter, sensors) = ina3221::discover(r);
    let meter = meter.unwrap();
    assert_eq!(sensors.len(), 3);
    assert_eq!(sensors[0].scope, "board");
    let (hwmon_meter, _) = hwmon::discover(r, false);
    assert!(hwmon_meter.is_none(), "the INA3221 is not read twice");

    let t = Instant::now();
    let window = meter.open().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let reading = window.close().unwrap();
    let seconds = t.elapsed().as_secs_f64();
    assert!(
        close_to(joules(&reading, "VDD_IN"), 10.0 * seconds, 0.1),
        "{reading:?}"
    );
    assert!(close_to(
        joules(&reading, "VDD_CPU_GPU_CV"),
        4.0 * seconds,
        0.1
    ));
    assert!(close_to(joules(&reading, "POM_5V_GPU"), 3.0 * seconds, 0.1));
    assert!(
        close_to(reading.total_joules(), joules(&reading, "VDD_IN"), 1e-9),
        "rails are inside VDD_IN"
    );
}

#[test]
fn no_jetson_no_hwmon_means_absent_with_reasons() {
    let empty = tempfile::tempdir().unwrap();
    let (meter, sensors) = ina3221::discover(empty.path());
    assert!(
        meter.is_none()
            && sensors[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("not an NVIDIA Jetson")
    );
    let (meter, sensors) = hwmon::discover(empty.path(), false);
    assert!(
        meter.is_none()
            && sensors[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("no /sys/class/hwmon")
    );
}

#[test]
fn nvml_without_a_driver_is_a_reason_not_a_failure() {
    let (meter, sensors) = nvml::discover();
    assert!(!sensors.is_empty());
    match meter {
        None => {
            assert!(
                sensors
                    .iter()
                    .all(|s| !s.readable && !s.reason.as_deref().unwrap_or("").is_empty())
            );
            eprintln!("NVML here: {}", sensors[0].reason.as_deref().unwrap());
        }
        Some(m) => {
            assert_eq!(m.method(), "measured:nvml");
            assert!(sensors.iter().any(|s| s.readable));
        }
    }
}
