//! NVIDIA GPUs through NVML, loaded at run time (no driver, no meter — and a reason): the
//! total-energy counter where the GPU has one (Volta and newer), otherwise board power sampled
//! through the window.

use std::sync::Arc;
use std::time::Duration;

use chipbench_core::result::EnergySensor;
use nvml_wrapper::Nvml;

use crate::meter::{CounterProbe, SensorMeter};
use crate::sampler::PowerProbe;
use crate::{Domain, Error, Meter, Result, Scope};

pub const METHOD: &str = "measured:nvml";

/// NVML does not document how often its energy and power readings refresh; 100 ms is assumed
/// (the board power of recent GPUs refreshes faster), so windows span at least half a second.
pub const ASSUMED_UPDATE_PERIOD: Duration = Duration::from_millis(100);

/// The NVML meter over every NVIDIA GPU, or why there is none.
pub fn discover() -> (Option<Box<dyn Meter>>, Vec<EnergySensor>) {
    let nvml = match Nvml::init() {
        Ok(n) => Arc::new(n),
        Err(e) => {
            let reason =
                format!("absent: NVML cannot be loaded ({e}): no NVIDIA driver on this host");
            return (None, vec![sensor("-", Err(reason))]);
        }
    };
    let count = match nvml.device_count() {
        Ok(n) => n,
        Err(e) => {
            return (
                None,
                vec![sensor("-", Err(format!("NVML cannot count the GPUs: {e}")))],
            );
        }
    };
    if count == 0 {
        return (
            None,
            vec![sensor("-", Err("absent: NVML sees no GPU".into()))],
        );
    }
    let mut sensors = Vec::new();
    let mut counters: Vec<(Domain, Arc<dyn CounterProbe>)> = Vec::new();
    let mut powers: Vec<(Domain, Arc<dyn PowerProbe>)> = Vec::new();
    for index in 0..count {
        let name = nvml
            .device_by_index(index)
            .and_then(|d| d.name())
            .map(|n| format!("GPU {index} ({n})"))
            .unwrap_or_else(|_| format!("GPU {index}"));
        let domain = Domain {
            name: name.clone(),
            scope: Scope::Gpu,
            in_total: true,
        };
        let counter = NvmlCounter {
            nvml: nvml.clone(),
            index,
        };
        let power = NvmlPower {
            nvml: nvml.clone(),
            index,
        };
        if counter.read().is_ok() {
            sensors.push(sensor(&name, Ok("total energy counter (mJ)")));
            counters.push((domain, Arc::new(counter)));
        } else {
            match power.watts() {
                Ok(_) => {
                    sensors.push(sensor(
                        &name,
                        Ok("board power (mW), sampled: no energy counter on this GPU"),
                    ));
                    powers.push((domain, Arc::new(power)));
                }
                Err(e) => sensors.push(sensor(
                    &name,
                    Err(format!("neither energy nor power is readable: {e}")),
                )),
            }
        }
    }
    if counters.is_empty() && powers.is_empty() {
        return (None, sensors);
    }
    let meter = SensorMeter {
        method: METHOD,
        update_period: ASSUMED_UPDATE_PERIOD,
        counters,
        powers,
    };
    (Some(Box::new(meter)), sensors)
}

struct NvmlCounter {
    nvml: Arc<Nvml>,
    index: u32,
}

impl CounterProbe for NvmlCounter {
    fn read(&self) -> Result<u64> {
        let device = self
            .nvml
            .device_by_index(self.index)
            .map_err(|e| Error::Nvml(format!("GPU {}: {e}", self.index)))?;
        device
            .total_energy_consumption()
            .map_err(|e| Error::Nvml(format!("GPU {} total energy: {e}", self.index)))
    }

    fn joules_between(&self, start: u64, end: u64) -> Result<f64> {
        if end < start {
            return Err(Error::Nvml(format!(
                "GPU {}: the energy counter went back from {start} to {end} mJ (driver reloaded?)",
                self.index
            )));
        }
        Ok((end - start) as f64 * 1e-3)
    }
}

struct NvmlPower {
    nvml: Arc<Nvml>,
    index: u32,
}

impl PowerProbe for NvmlPower {
    fn watts(&self) -> Result<f64> {
        let device = self
            .nvml
            .device_by_index(self.index)
            .map_err(|e| Error::Nvml(format!("GPU {}: {e}", self.index)))?;
        let mw = device
            .power_usage()
            .map_err(|e| Error::Nvml(format!("GPU {} power: {e}", self.index)))?;
        Ok(mw as f64 * 1e-3)
    }
}

fn sensor(name: &str, state: std::result::Result<&str, String>) -> EnergySensor {
    EnergySensor {
        meter: "nvml".into(),
        name: name.into(),
        scope: Scope::Gpu.label().into(),
        source: match &state {
            Ok(what) => format!("libnvidia-ml.so.1: {what}"),
            Err(_) => "libnvidia-ml.so.1".into(),
        },
        readable: state.is_ok(),
        update_period_ms: state
            .is_ok()
            .then(|| ASSUMED_UPDATE_PERIOD.as_secs_f64() * 1e3),
        reason: state.err(),
    }
}
