//! Linux powercap RAPL: the `energy_uj` counter of every package and sub-domain under
//! `/sys/class/powercap/intel-rapl:*` (AMD processors use the same interface), with wrap-around
//! undone through `max_energy_range_uj`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chipbench_core::result::EnergySensor;

use crate::meter::{FileCounter, SensorMeter};
use crate::sysfs::{entries, host_path as display_path, read_text, read_u64};
use crate::{Domain, Meter, Scope};

pub const METHOD: &str = "measured:rapl";

/// The RAPL energy status counters refresh about every millisecond (Intel SDM vol. 3B, 15.10.3;
/// AMD's RAPL MSRs likewise).
pub const UPDATE_PERIOD: Duration = Duration::from_millis(1);

const PERMISSION_HINT: &str = " (RAPL counters are readable only by root since Linux 5.10, \
CVE-2020-8694: run as root, or `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj`)";

/// The RAPL meter under `root` (`/` on a real host), and every zone looked at: readable ones,
/// and the others with the reason.
pub fn discover(root: &Path) -> (Option<Box<dyn Meter>>, Vec<EnergySensor>) {
    let class = root.join("sys/class/powercap");
    let mut sensors = Vec::new();
    if !class.is_dir() {
        sensors.push(EnergySensor {
            meter: "rapl".into(),
            name: "-".into(),
            scope: Scope::Package.label().into(),
            source: "/sys/class/powercap".into(),
            readable: false,
            update_period_ms: None,
            reason: Some(
                "absent: no /sys/class/powercap (no RAPL driver, or a virtual machine that does not \
                 pass RAPL through)"
                    .into(),
            ),
        });
        return (None, sensors);
    }
    let zones = entries(&class, "intel-rapl:");
    if zones.is_empty() {
        sensors.push(EnergySensor {
            meter: "rapl".into(),
            name: "-".into(),
            scope: Scope::Package.label().into(),
            source: "/sys/class/powercap".into(),
            readable: false,
            update_period_ms: None,
            reason: Some("absent: /sys/class/powercap has no intel-rapl zones".into()),
        });
        return (None, sensors);
    }
    let mut counters = Vec::new();
    let has_package = zones
        .iter()
        .any(|z| zone_name(z).is_some_and(|n| n.starts_with("package")));
    for zone in &zones {
        let shown = display_path(root, zone);
        let Some(raw_name) = zone_name(zone) else {
            sensors.push(unreadable(
                &zone_id(zone),
                Scope::Other,
                &shown,
                "the zone has no readable 'name'",
            ));
            continue;
        };
        let scope = scope_of(&raw_name);
        let name = qualified_name(&class, zone, &raw_name);
        let energy = zone.join("energy_uj");
        match read_u64(&energy, PERMISSION_HINT) {
            Ok(_) => {
                let in_total = match scope {
                    Scope::Package | Scope::Dram => true,
                    // psys contains the packages; it is the total only where no package is listed.
                    Scope::Platform => !has_package,
                    _ => false,
                };
                let max = read_u64(&zone.join("max_energy_range_uj"), PERMISSION_HINT).ok();
                sensors.push(EnergySensor {
                    meter: "rapl".into(),
                    name: name.clone(),
                    scope: scope.label().into(),
                    source: display_path(root, &energy),
                    readable: true,
                    update_period_ms: Some(UPDATE_PERIOD.as_secs_f64() * 1e3),
                    reason: None,
                });
                let counter = FileCounter {
                    path: energy,
                    unit_joules: 1e-6,
                    max,
                    permission_hint: PERMISSION_HINT,
                };
                counters.push((
                    Domain {
                        name,
                        scope,
                        in_total,
                    },
                    Arc::new(counter) as _,
                ));
            }
            Err(e) => sensors.push(unreadable(
                &name,
                scope,
                &display_path(root, &energy),
                &e.to_string(),
            )),
        }
    }
    let meter = (!counters.is_empty()).then(|| {
        Box::new(SensorMeter {
            method: METHOD,
            update_period: UPDATE_PERIOD,
            counters,
            powers: Vec::new(),
        }) as Box<dyn Meter>
    });
    (meter, sensors)
}

fn unreadable(name: &str, scope: Scope, source: &str, reason: &str) -> EnergySensor {
    EnergySensor {
        meter: "rapl".into(),
        name: name.into(),
        scope: scope.label().into(),
        source: source.into(),
        readable: false,
        update_period_ms: None,
        reason: Some(reason.into()),
    }
}

fn zone_name(zone: &Path) -> Option<String> {
    read_text(&zone.join("name"), PERMISSION_HINT).ok()
}

fn zone_id(zone: &Path) -> String {
    zone.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `package-0` for `intel-rapl:0`, `package-0/dram` for its sub-zone `intel-rapl:0:2`.
fn qualified_name(class: &Path, zone: &Path, name: &str) -> String {
    let id = zone_id(zone);
    match id.rsplit_once(':') {
        Some((parent, _)) if parent.contains(':') => {
            let parent_name = zone_name(&class.join(parent)).unwrap_or_else(|| parent.to_string());
            format!("{parent_name}/{name}")
        }
        _ => name.to_string(),
    }
}

fn scope_of(name: &str) -> Scope {
    match name {
        n if n.starts_with("package") => Scope::Package,
        "core" => Scope::Core,
        "uncore" => Scope::Uncore,
        "dram" => Scope::Dram,
        "psys" => Scope::Platform,
        _ => Scope::Other,
    }
}
