//! Energy meters and the energy estimate: what a cell cost in joules, measured where a sensor is
//! readable (RAPL powercap, NVML, hwmon, Jetson INA3221 rails) and otherwise estimated from CPU
//! (and GPU) busy time, always labelled with the method that produced it.
//!
//! Every sysfs reader takes the filesystem root it reads from (`/` on a real host), so tests run
//! against fixture trees.

mod error;
pub mod estimate;
pub mod hwmon;
pub mod ina3221;
mod meter;
pub mod nvml;
pub mod plan;
pub mod rapl;
mod sampler;
mod sysfs;

use std::fmt;
use std::time::Duration;

pub use error::{Error, Result};
pub use estimate::{ActivePower, EstimateModel};
pub use plan::{Closed, EnergyPlan, GpuWork, OpenEnergy, Work, discover_sensors};

/// What part of the machine a domain covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Package,
    Core,
    Uncore,
    Dram,
    /// The whole platform as RAPL `psys` sees it.
    Platform,
    Gpu,
    /// The board's input rail (everything).
    Board,
    /// One supply rail of a board.
    Rail,
    Other,
}

impl Scope {
    /// The spelling used in `run.json`.
    pub fn label(self) -> &'static str {
        match self {
            Scope::Package => "package",
            Scope::Core => "core",
            Scope::Uncore => "uncore",
            Scope::Dram => "dram",
            Scope::Platform => "platform",
            Scope::Gpu => "gpu",
            Scope::Board => "board",
            Scope::Rail => "rail",
            Scope::Other => "other",
        }
    }

    /// Whether energy in this scope includes the CPU's.
    pub fn covers_cpu(self) -> bool {
        matches!(
            self,
            Scope::Package | Scope::Core | Scope::Platform | Scope::Board
        )
    }

    /// Whether energy in this scope includes a GPU's.
    pub fn covers_gpu(self) -> bool {
        matches!(self, Scope::Gpu | Scope::Board | Scope::Platform)
    }
}

/// One thing a meter measures.
#[derive(Clone, Debug, PartialEq)]
pub struct Domain {
    /// As the sensor names it, qualified by its parent (`package-0/dram`, `amdgpu/PPT`).
    pub name: String,
    pub scope: Scope,
    /// Whether its energy adds to the total: a sub-domain contained in another one does not.
    pub in_total: bool,
}

/// Joules per domain over one window.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// `measured:rapl`, `measured:nvml`...
    pub method: &'static str,
    pub window: Duration,
    pub domains: Vec<(Domain, f64)>,
}

impl Reading {
    /// Joules of the domains that count in the total.
    pub fn total_joules(&self) -> f64 {
        self.domains
            .iter()
            .filter(|(d, _)| d.in_total)
            .map(|(_, j)| j)
            .sum()
    }
}

/// A source of energy figures: opens a window now, and the window, when closed, says how many
/// joules each domain used in between.
pub trait Meter: Send + Sync + fmt::Debug {
    /// `measured:rapl`, `measured:hwmon`...
    fn method(&self) -> &'static str;
    fn domains(&self) -> Vec<Domain>;
    /// How often the underlying sensor refreshes; a window must span several.
    fn update_period(&self) -> Duration;
    fn open(&self) -> Result<Box<dyn Window>>;
}

/// An open measurement window.
pub trait Window: Send {
    fn close(self: Box<Self>) -> Result<Reading>;
}
