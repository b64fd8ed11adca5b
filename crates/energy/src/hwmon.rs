//! Linux hwmon: `energy*_input` counters (µJ) where a driver has them, otherwise `power*_input`
//! / `power*_average` (µW) sampled through the window. Jetson INA3221 monitors, also hwmon
//! devices, are read by [`crate::ina3221`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chipbench_core::result::EnergySensor;

use crate::meter::{CounterProbe, FileCounter, SensorMeter};
use crate::sampler::PowerProbe;
use crate::sysfs::{entries, host_path, read_text, read_u64};
use crate::{Domain, Meter, Result, Scope};

pub const METHOD: &str = "measured:hwmon";

/// hwmon has no standard refresh period; a driver that does not publish `update_interval` is
/// assumed to refresh once a second, the slow end of common drivers, so windows stay long enough.
pub const ASSUMED_UPDATE_PERIOD: Duration = Duration::from_secs(1);

const PERMISSION_HINT: &str =
    " (some hwmon energy attributes are root-only: run as root or grant read access)";

/// Drivers whose sensors are the CPU's own (they duplicate RAPL where both exist).
const CPU_DRIVERS: [&str; 3] = ["amd_energy", "zenpower", "k10temp"];
const GPU_DRIVERS: [&str; 5] = ["amdgpu", "radeon", "nouveau", "i915", "xe"];

/// The hwmon meter under `root`. With `rapl_present`, CPU-scoped sensors are listed but not
/// used, since RAPL measures the same domains.
pub fn discover(root: &Path, rapl_present: bool) -> (Option<Box<dyn Meter>>, Vec<EnergySensor>) {
    let class = root.join("sys/class/hwmon");
    let devices = entries(&class, "hwmon");
    if devices.is_empty() {
        let reason = if class.is_dir() {
            "absent: no hwmon devices"
        } else {
            "absent: no /sys/class/hwmon"
        };
        return (
            None,
            vec![sensor(
                "-",
                Scope::Other,
                "/sys/class/hwmon",
                None,
                Some(reason.into()),
            )],
        );
    }
    let mut sensors = Vec::new();
    let mut counters: Vec<(Domain, Arc<dyn CounterProbe>)> = Vec::new();
    let mut powers: Vec<(Domain, Arc<dyn PowerProbe>)> = Vec::new();
    let mut period = Duration::ZERO;
    let mut found_energy_attributes = false;
    for device in &devices {
        let driver = read_text(&device.join("name"), PERMISSION_HINT).unwrap_or_default();
        if driver == "ina3221" {
            continue;
        }
        let (update, assumed) = update_period(device);
        let channels = energy_channels(device);
        let use_power = channels.is_empty();
        let channels = if use_power {
            power_channels(device)
        } else {
            channels
        };
        for (index, path) in channels {
            found_energy_attributes = true;
            let kind = if use_power { "power" } else { "energy" };
            let label = read_text(
                &device.join(format!("{kind}{index}_label")),
                PERMISSION_HINT,
            )
            .unwrap_or_else(|_| format!("{kind}{index}"));
            let name = format!("{driver}/{label}");
            let scope = scope_of(&driver, &label);
            let shown = host_path(root, &path);
            if let Err(e) = read_u64(&path, PERMISSION_HINT) {
                sensors.push(sensor(&name, scope, &shown, None, Some(e.to_string())));
                continue;
            }
            let period_ms = Some(update.as_secs_f64() * 1e3);
            if rapl_present && CPU_DRIVERS.contains(&driver.as_str()) {
                let note = "readable, not used: RAPL measures the same CPU domains";
                sensors.push(sensor(&name, scope, &shown, period_ms, Some(note.into())));
                continue;
            }
            let note =
                assumed.then(|| "the driver publishes no update_interval; 1 s assumed".to_string());
            sensors.push(sensor(&name, scope, &shown, period_ms, note));
            period = period.max(update);
            let domain = Domain {
                name,
                scope,
                in_total: counts_in_total(scope),
            };
            if use_power {
                powers.push((domain, Arc::new(MicrowattFile(path))));
            } else {
                let counter = FileCounter {
                    path,
                    unit_joules: 1e-6,
                    max: None,
                    permission_hint: PERMISSION_HINT,
                };
                counters.push((domain, Arc::new(counter)));
            }
        }
    }
    if !found_energy_attributes {
        sensors.push(sensor(
            "-",
            Scope::Other,
            "/sys/class/hwmon",
            None,
            Some("absent: no hwmon device has energy or power attributes".into()),
        ));
    }
    if counters.is_empty() && powers.is_empty() {
        return (None, sensors);
    }
    count_everything_when_nothing_counts(&mut counters, &mut powers);
    let meter = SensorMeter {
        method: METHOD,
        update_period: period,
        counters,
        powers,
    };
    (Some(Box::new(meter)), sensors)
}

/// Watts from a file holding microwatts (hwmon `power*_input`).
pub(crate) struct MicrowattFile(pub PathBuf);

impl PowerProbe for MicrowattFile {
    fn watts(&self) -> Result<f64> {
        Ok(read_u64(&self.0, PERMISSION_HINT)? as f64 * 1e-6)
    }
}

/// The device's `update_interval` (ms), or the assumption; true when assumed.
pub(crate) fn update_period(device: &Path) -> (Duration, bool) {
    match read_u64(&device.join("update_interval"), PERMISSION_HINT) {
        Ok(ms) if ms > 0 => (Duration::from_millis(ms), false),
        _ => (ASSUMED_UPDATE_PERIOD, true),
    }
}

/// (channel number, path) of every `energyN_input`.
fn energy_channels(device: &Path) -> Vec<(u32, PathBuf)> {
    numbered(device, "energy", &["_input"])
}

/// (channel number, path) of every power channel, `powerN_input` preferred over `powerN_average`.
fn power_channels(device: &Path) -> Vec<(u32, PathBuf)> {
    let mut channels = numbered(device, "power", &["_input"]);
    for (n, path) in numbered(device, "power", &["_average"]) {
        if !channels.iter().any(|(m, _)| *m == n) {
            channels.push((n, path));
        }
    }
    channels.sort_by_key(|(n, _)| *n);
    channels
}

fn numbered(device: &Path, prefix: &str, suffixes: &[&str]) -> Vec<(u32, PathBuf)> {
    entries(device, prefix)
        .into_iter()
        .filter_map(|path| {
            let file = path.file_name()?.to_str()?.to_string();
            let rest = file.strip_prefix(prefix)?;
            let suffix = suffixes.iter().find(|s| rest.ends_with(*s))?;
            let n: u32 = rest.strip_suffix(suffix)?.parse().ok()?;
            Some((n, path))
        })
        .collect()
}

fn scope_of(driver: &str, label: &str) -> Scope {
    let label = label.to_ascii_lowercase();
    if GPU_DRIVERS.contains(&driver) || driver.contains("gpu") {
        Scope::Gpu
    } else if label.contains("pkg") || label.contains("package") || label.contains("socket") {
        Scope::Package
    } else if label.starts_with("ecore") || label.starts_with("core") {
        Scope::Core
    } else if label.contains("dram") || label.contains("mem") {
        Scope::Dram
    } else if CPU_DRIVERS.contains(&driver) {
        Scope::Package
    } else {
        Scope::Other
    }
}

fn counts_in_total(scope: Scope) -> bool {
    matches!(
        scope,
        Scope::Package | Scope::Dram | Scope::Gpu | Scope::Board
    )
}

/// Sensors of unknown scope do not add to the total next to known ones (they may overlap); but
/// when they are all there is, they are the total.
fn count_everything_when_nothing_counts(
    counters: &mut [(Domain, Arc<dyn CounterProbe>)],
    powers: &mut [(Domain, Arc<dyn PowerProbe>)],
) {
    let any = counters
        .iter()
        .map(|(d, _)| d)
        .chain(powers.iter().map(|(d, _)| d))
        .any(|d| d.in_total);
    if !any {
        counters.iter_mut().for_each(|(d, _)| d.in_total = true);
        powers.iter_mut().for_each(|(d, _)| d.in_total = true);
    }
}

fn sensor(
    name: &str,
    scope: Scope,
    source: &str,
    period_ms: Option<f64>,
    reason: Option<String>,
) -> EnergySensor {
    EnergySensor {
        meter: "hwmon".into(),
        name: name.into(),
        scope: scope.label().into(),
        source: source.into(),
        readable: period_ms.is_some(),
        update_period_ms: period_ms,
        reason,
    }
}
