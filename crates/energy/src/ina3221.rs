//! NVIDIA Jetson power rails, measured by the on-module INA3221 monitors: the hwmon `ina3221`
//! driver of JetPack 5 and 6 (`inN_label`, `inN_input` mV, `currN_input` mA) and the
//! `ina3221x` IIO driver of JetPack 4 (`rail_name_N`, `in_powerN_input` mW). Rails are sampled
//! through the window and integrated.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chipbench_core::result::EnergySensor;

use crate::hwmon::update_period;
use crate::meter::SensorMeter;
use crate::sampler::PowerProbe;
use crate::sysfs::{entries, host_path, read_text, read_u64};
use crate::{Domain, Meter, Result, Scope};

pub const METHOD: &str = "measured:ina3221";

const PERMISSION_HINT: &str = " (run as root or grant read access to the INA3221 attributes)";

/// The board input rails: everything the module draws (Orin/Xavier `VDD_IN`, Nano/TX2
/// `POM_5V_IN`).
const BOARD_RAILS: [&str; 2] = ["VDD_IN", "POM_5V_IN"];

/// The Jetson rail meter under `root`, or `None` (with the reason) on other machines.
pub fn discover(root: &Path) -> (Option<Box<dyn Meter>>, Vec<EnergySensor>) {
    let mut rails: Vec<(String, String, Arc<dyn PowerProbe>)> = Vec::new();
    let mut sensors = Vec::new();
    let mut period = Duration::ZERO;
    for device in entries(&root.join("sys/class/hwmon"), "hwmon") {
        if read_text(&device.join("name"), PERMISSION_HINT)
            .ok()
            .as_deref()
            != Some("ina3221")
        {
            continue;
        }
        let (update, _) = update_period(&device);
        for channel in 1..=3 {
            let Ok(label) = read_text(&device.join(format!("in{channel}_label")), PERMISSION_HINT)
            else {
                continue;
            };
            let probe = VoltAmp {
                millivolts: device.join(format!("in{channel}_input")),
                milliamps: device.join(format!("curr{channel}_input")),
            };
            let shown = host_path(root, &probe.milliamps);
            match probe.watts() {
                Ok(_) => {
                    period = period.max(update);
                    sensors.push(sensor(&label, &shown, Ok(update)));
                    rails.push((label, shown, Arc::new(probe)));
                }
                Err(e) => sensors.push(sensor(&label, &shown, Err(e.to_string()))),
            }
        }
    }
    for device in entries(&root.join("sys/bus/i2c/drivers/ina3221x"), "") {
        for iio in entries(&device, "iio:device") {
            for channel in 0..=2 {
                let Ok(label) =
                    read_text(&iio.join(format!("rail_name_{channel}")), PERMISSION_HINT)
                else {
                    continue;
                };
                let probe = MilliwattFile(iio.join(format!("in_power{channel}_input")));
                let shown = host_path(root, &probe.0);
                // The IIO driver publishes no refresh period; its default averaging refreshes
                // well within the hwmon assumption.
                let update = crate::hwmon::ASSUMED_UPDATE_PERIOD;
                match probe.watts() {
                    Ok(_) => {
                        period = period.max(update);
                        sensors.push(sensor(&label, &shown, Ok(update)));
                        rails.push((label, shown, Arc::new(probe)));
                    }
                    Err(e) => sensors.push(sensor(&label, &shown, Err(e.to_string()))),
                }
            }
        }
    }
    if sensors.is_empty() {
        let reason = "absent: no INA3221 power monitor (not an NVIDIA Jetson)";
        return (
            None,
            vec![sensor("-", "/sys/class/hwmon", Err(reason.into()))],
        );
    }
    if rails.is_empty() {
        return (None, sensors);
    }
    let has_board = rails
        .iter()
        .any(|(label, _, _)| BOARD_RAILS.contains(&label.as_str()));
    let powers = rails
        .into_iter()
        .map(|(label, _, probe)| {
            let board = BOARD_RAILS.contains(&label.as_str());
            let scope = if board { Scope::Board } else { Scope::Rail };
            // The other rails are parts of the board input; without it, they are all there is.
            (
                Domain {
                    name: label,
                    scope,
                    in_total: board || !has_board,
                },
                probe,
            )
        })
        .collect();
    let meter = SensorMeter {
        method: METHOD,
        update_period: period,
        counters: Vec::new(),
        powers,
    };
    (Some(Box::new(meter)), sensors)
}

/// Watts from a rail's bus voltage (mV) and current (mA).
struct VoltAmp {
    millivolts: PathBuf,
    milliamps: PathBuf,
}

impl PowerProbe for VoltAmp {
    fn watts(&self) -> Result<f64> {
        let mv = read_u64(&self.millivolts, PERMISSION_HINT)? as f64;
        let ma = read_u64(&self.milliamps, PERMISSION_HINT)? as f64;
        Ok(mv * ma * 1e-6)
    }
}

/// Watts from a file holding milliwatts.
struct MilliwattFile(PathBuf);

impl PowerProbe for MilliwattFile {
    fn watts(&self) -> Result<f64> {
        Ok(read_u64(&self.0, PERMISSION_HINT)? as f64 * 1e-3)
    }
}

fn sensor(label: &str, source: &str, state: std::result::Result<Duration, String>) -> EnergySensor {
    let scope = if BOARD_RAILS.contains(&label) {
        Scope::Board
    } else {
        Scope::Rail
    };
    EnergySensor {
        meter: "ina3221".into(),
        name: label.into(),
        scope: scope.label().into(),
        source: source.into(),
        readable: state.is_ok(),
        update_period_ms: state.as_ref().ok().map(|d| d.as_secs_f64() * 1e3),
        reason: state.err(),
    }
}
