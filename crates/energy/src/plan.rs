//! How a run gets its energy figures: the meters readable on this host, the estimate for what
//! they do not cover, the idle baseline, and the window around a cell's timed loop.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use chipbench_core::result::{CellEnergy, EnergyDomain, EnergySensor, IdleBaseline};

use crate::estimate::{CPU_METHOD, GPU_METHOD};
use crate::{Domain, Error, EstimateModel, Meter, Reading, Result, Window};

/// A window must span this many refreshes of the slowest sensor it reads.
pub const MIN_UPDATE_PERIODS: u32 = 5;

/// Every energy sensor under `root` (`/` on a real host) and NVML, readable or not.
pub fn discover_sensors(root: &Path) -> Vec<EnergySensor> {
    discover_meters(root).1
}

fn discover_meters(root: &Path) -> (Vec<Box<dyn Meter>>, Vec<EnergySensor>) {
    let mut meters = Vec::new();
    let mut sensors = Vec::new();
    let (rapl, found) = crate::rapl::discover(root);
    sensors.extend(found);
    let rapl_present = rapl.is_some();
    meters.extend(rapl);
    for (meter, found) in [
        crate::hwmon::discover(root, rapl_present),
        crate::ina3221::discover(root),
        crate::nvml::discover(),
    ] {
        meters.extend(meter);
        sensors.extend(found);
    }
    (meters, sensors)
}

/// The meters of a run and the estimate model for what they do not cover.
pub struct EnergyPlan {
    meters: Vec<Box<dyn Meter>>,
    estimate: EstimateModel,
    idle: Option<IdleBaseline>,
}

impl fmt::Debug for EnergyPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnergyPlan")
            .field("meters", &self.meters)
            .field("estimate", &self.estimate)
            .finish()
    }
}

/// What ran inside a window, for the estimate and the per-inference figures.
#[derive(Clone, Debug, Default)]
pub struct Work {
    pub inferences: u64,
    /// CPU time of this process over the window.
    pub cpu_time: Option<Duration>,
    /// The GPU the cell ran on and how long it was busy.
    pub gpu: Option<GpuWork>,
}

#[derive(Clone, Debug)]
pub struct GpuWork {
    /// The device name the backend reports.
    pub device: String,
    pub busy: Duration,
    /// How `busy` was obtained (`device timestamps`, `host latency, an upper bound`).
    pub basis: String,
}

/// A cell's energy and the provenance text that goes with it.
#[derive(Clone, Debug)]
pub struct Closed {
    pub energy: CellEnergy,
    pub provenance: String,
}

impl EnergyPlan {
    pub fn new(meters: Vec<Box<dyn Meter>>, estimate: EstimateModel) -> Self {
        EnergyPlan {
            meters,
            estimate,
            idle: None,
        }
    }

    /// The meters readable under `root`, and every sensor looked at.
    pub fn discover(root: &Path, estimate: EstimateModel) -> (Self, Vec<EnergySensor>) {
        let (meters, sensors) = discover_meters(root);
        (EnergyPlan::new(meters, estimate), sensors)
    }

    /// The estimate model, which a cell's child process rebuilds its plan from.
    pub fn estimate(&self) -> &EstimateModel {
        &self.estimate
    }

    /// The idle baseline measured by the parent of a cell's process, which the child subtracts
    /// as the parent would.
    pub fn set_idle_baseline(&mut self, baseline: IdleBaseline) {
        self.idle = Some(baseline);
    }

    pub fn meters(&self) -> &[Box<dyn Meter>] {
        &self.meters
    }

    pub fn idle_baseline(&self) -> Option<&IdleBaseline> {
        self.idle.as_ref()
    }

    /// The shortest window that spans [`MIN_UPDATE_PERIODS`] refreshes of every meter; zero
    /// with no meter (the estimate has no refresh period).
    pub fn min_window(&self) -> Duration {
        self.meters
            .iter()
            .map(|m| m.update_period() * MIN_UPDATE_PERIODS)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Measures the idle machine for `duration` through every meter, once, before the cells;
    /// later windows subtract it. Without a meter there is nothing to measure: the estimate
    /// already counts only this process's busy time.
    pub fn measure_idle(&mut self, duration: Duration) -> IdleBaseline {
        let baseline = if self.meters.is_empty() {
            IdleBaseline {
                method: "not measured".into(),
                duration_s: 0.0,
                avg_power_w: None,
                domains: Vec::new(),
                note: Some(
                    "no energy sensor is readable here; the estimate counts only this process's busy \
                     CPU time, which has no idle share to subtract"
                        .into(),
                ),
            }
        } else {
            match self.read_idle(duration) {
                Ok(readings) => {
                    let seconds = readings
                        .iter()
                        .map(|r| r.window.as_secs_f64())
                        .fold(0.0, f64::max);
                    let total: f64 = readings.iter().map(Reading::total_joules).sum();
                    IdleBaseline {
                        method: methods(readings.iter().map(|r| r.method)),
                        duration_s: seconds,
                        avg_power_w: (seconds > 0.0).then(|| total / seconds),
                        domains: readings.iter().flat_map(energy_domains).collect(),
                        note: None,
                    }
                }
                Err(e) => IdleBaseline {
                    method: "not measured".into(),
                    duration_s: duration.as_secs_f64(),
                    avg_power_w: None,
                    domains: Vec::new(),
                    note: Some(format!("the idle window failed: {e}")),
                },
            }
        };
        self.idle = Some(baseline.clone());
        baseline
    }

    fn read_idle(&self, duration: Duration) -> Result<Vec<Reading>> {
        let windows = self
            .meters
            .iter()
            .map(|m| m.open())
            .collect::<Result<Vec<_>>>()?;
        std::thread::sleep(duration);
        windows.into_iter().map(|w| w.close()).collect()
    }

    /// Opens a window on every meter.
    pub fn open(&self) -> Result<OpenEnergy<'_>> {
        let windows = self
            .meters
            .iter()
            .map(|m| m.open())
            .collect::<Result<Vec<_>>>()?;
        Ok(OpenEnergy {
            plan: self,
            windows,
            start: Instant::now(),
        })
    }
}

/// Windows open on every meter of a plan.
pub struct OpenEnergy<'a> {
    plan: &'a EnergyPlan,
    windows: Vec<Box<dyn Window>>,
    start: Instant,
}

impl OpenEnergy<'_> {
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Closes every window and turns the readings, plus the estimate for what no meter covers,
    /// into the cell's energy.
    pub fn close(self, work: &Work) -> Result<Closed> {
        let window = self.start.elapsed();
        let readings = self
            .windows
            .into_iter()
            .map(|w| w.close())
            .collect::<Result<Vec<Reading>>>()?;
        let plan = self.plan;
        let mut domains: Vec<EnergyDomain> = readings.iter().flat_map(energy_domains).collect();
        let mut method_names: Vec<&str> = readings.iter().map(|r| r.method).collect();
        let covers_cpu = readings
            .iter()
            .flat_map(|r| &r.domains)
            .any(|(d, _)| d.scope.covers_cpu());
        let covers_gpu = readings
            .iter()
            .flat_map(|r| &r.domains)
            .any(|(d, _)| d.scope.covers_gpu());
        let mut notes = Vec::new();
        let measured = if readings.is_empty() {
            None
        } else {
            Some(format!(
                "measured: {} over the energy window ({} inferences, {:.3} s); a sensor counts every \
                 process on its domain, not only this one",
                readings.iter().map(describe).collect::<Vec<_>>().join("; "),
                work.inferences,
                window.as_secs_f64()
            ))
        };
        let mut estimated = Vec::new();
        if !covers_cpu {
            match work.cpu_time {
                Some(cpu) => {
                    let (domain, joules) = plan.estimate.cpu(cpu);
                    domains.push(energy_domain(&domain, CPU_METHOD, joules));
                    method_names.push(CPU_METHOD);
                    estimated.push(format!(
                        "CPU time of this process over the window (getrusage, {:.4} s) x {} W per busy core ({})",
                        cpu.as_secs_f64(),
                        plan.estimate.cpu_core.watts,
                        plan.estimate.cpu_core.source
                    ));
                }
                None => notes.push(
                    "CPU energy not included: no sensor covers the CPU and its CPU time is unknown"
                        .to_string(),
                ),
            }
        }
        if let Some(gpu) = work.gpu.as_ref().filter(|_| !covers_gpu) {
            match plan.estimate.gpu(&gpu.device, gpu.busy) {
                Some((domain, joules)) => {
                    domains.push(energy_domain(&domain, GPU_METHOD, joules));
                    method_names.push(GPU_METHOD);
                    let power = &plan.estimate.gpus[&gpu.device];
                    estimated.push(format!(
                        "GPU busy time ({}, {:.4} s) x {} W ({})",
                        gpu.basis,
                        gpu.busy.as_secs_f64(),
                        power.watts,
                        power.source
                    ));
                }
                None => notes.push(format!(
                    "GPU energy not included: no sensor covers '{}' and no active power is known for it",
                    gpu.device
                )),
            }
        }
        if domains.is_empty() {
            return Err(Error::NoFigure(notes.join("; ")));
        }
        let inferences = work.inferences.max(1);
        let window_s = window.as_secs_f64();
        let total: f64 = domains
            .iter()
            .filter(|d| d.in_total)
            .map(|d| d.joules)
            .sum();
        let idle_power_w = plan
            .idle
            .as_ref()
            .and_then(|idle| idle_power(idle, &domains));
        let joules_per_inference = total / inferences as f64;
        let energy = CellEnergy {
            method: methods(method_names.into_iter()),
            joules_per_inference,
            avg_power_w: if window_s > 0.0 {
                total / window_s
            } else {
                0.0
            },
            window_s,
            inferences,
            domains,
            idle_power_w,
            joules_per_inference_above_idle: idle_power_w
                .map(|w| (total - w * window_s) / inferences as f64),
        };
        let mut provenance = match (measured, estimated.is_empty()) {
            (Some(m), true) => m,
            (Some(m), false) => format!("estimated: partly — {m}; plus {}", estimated.join("; ")),
            (None, _) => format!(
                "estimated: {}; no energy sensor is readable here",
                estimated.join("; ")
            ),
        };
        for note in notes {
            provenance.push_str("; ");
            provenance.push_str(&note);
        }
        if idle_power_w.is_some() {
            provenance.push_str("; above-idle figure subtracts the idle baseline's power of the same domains over the window");
        }
        Ok(Closed { energy, provenance })
    }
}

/// Idle watts of the measured domains counted in a cell's total, where the baseline has them.
fn idle_power(idle: &IdleBaseline, domains: &[EnergyDomain]) -> Option<f64> {
    if idle.avg_power_w.is_none() || idle.duration_s <= 0.0 {
        return None;
    }
    let measured: Vec<&EnergyDomain> = domains
        .iter()
        .filter(|d| d.in_total && d.method.starts_with("measured"))
        .collect();
    if measured.is_empty() {
        return None;
    }
    let mut watts = 0.0;
    for domain in measured {
        let baseline = idle.domains.iter().find(|b| b.name == domain.name)?;
        watts += baseline.joules / idle.duration_s;
    }
    Some(watts)
}

fn describe(reading: &Reading) -> String {
    let names: Vec<&str> = reading
        .domains
        .iter()
        .map(|(d, _)| d.name.as_str())
        .collect();
    format!("{} [{}]", reading.method, names.join(", "))
}

fn energy_domains(reading: &Reading) -> Vec<EnergyDomain> {
    reading
        .domains
        .iter()
        .map(|(d, j)| energy_domain(d, reading.method, *j))
        .collect()
}

fn energy_domain(domain: &Domain, method: &str, joules: f64) -> EnergyDomain {
    EnergyDomain {
        name: domain.name.clone(),
        scope: domain.scope.label().into(),
        method: method.into(),
        joules,
        in_total: domain.in_total,
    }
}

/// `measured:rapl + estimated:gpu-busy x active-power`, each method once, in order.
fn methods<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for n in names {
        if !seen.contains(&n) {
            seen.push(n);
        }
    }
    seen.join(" + ")
}
