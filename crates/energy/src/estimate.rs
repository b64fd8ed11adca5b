//! Energy without a sensor: busy time x active power. CPU time of the process (all threads,
//! user + system) times the active power of one core, plus, where a GPU ran, its busy time
//! times its active power. Counts only this process's work, never idle or uncore power, so it
//! is a model, not a measurement, and says so in its method.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Domain, Scope};

pub const CPU_METHOD: &str = "estimated:cpu-time x active-power";
pub const GPU_METHOD: &str = "estimated:gpu-busy x active-power";

/// A power figure and where it comes from.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ActivePower {
    pub watts: f64,
    pub source: String,
}

/// Watts per busy core when no catalog entry matches the host. Rated power per core of current
/// server processors is lower (Xeon Platinum 8480+: 350 W / 56 cores = 6.25 W; EPYC 9654:
/// 360 W / 96 cores = 3.75 W); 10 W per core, the level of desktop parts at their boost power
/// limit, errs on the high side, so an estimate never flatters a model.
pub const CONSERVATIVE_WATTS_PER_CORE: f64 = 10.0;

pub fn conservative_per_core() -> ActivePower {
    ActivePower {
        watts: CONSERVATIVE_WATTS_PER_CORE,
        source: "conservative default (no catalog entry matches this CPU): 10 W per busy core, above the \
                 rated power per core of current server CPUs"
            .into(),
    }
}

/// The powers an estimate multiplies busy time by.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EstimateModel {
    pub cpu_core: ActivePower,
    /// Active power of GPUs, by the device name backends report.
    pub gpus: BTreeMap<String, ActivePower>,
}

impl EstimateModel {
    pub fn cpu_only(cpu_core: ActivePower) -> Self {
        EstimateModel {
            cpu_core,
            gpus: BTreeMap::new(),
        }
    }

    /// Joules of `cpu_time` busy core-seconds.
    pub fn cpu(&self, cpu_time: Duration) -> (Domain, f64) {
        let domain = Domain {
            name: "cpu (this process)".into(),
            scope: Scope::Core,
            in_total: true,
        };
        (domain, cpu_time.as_secs_f64() * self.cpu_core.watts)
    }

    /// Joules of a GPU busy for `busy`, or `None` when its active power is unknown.
    pub fn gpu(&self, device: &str, busy: Duration) -> Option<(Domain, f64)> {
        let power = self.gpus.get(device)?;
        let domain = Domain {
            name: format!("gpu {device}"),
            scope: Scope::Gpu,
            in_total: true,
        };
        Some((domain, busy.as_secs_f64() * power.watts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_with_busy_time() {
        let model = EstimateModel::cpu_only(ActivePower {
            watts: 5.0,
            source: "test".into(),
        });
        let (domain, joules) = model.cpu(Duration::from_millis(300));
        assert!((joules - 1.5).abs() < 1e-12);
        assert!(domain.in_total);
        assert!(model.gpu("unknown", Duration::from_secs(1)).is_none());
    }
}
