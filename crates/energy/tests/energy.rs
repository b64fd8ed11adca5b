//! Energy meters against fixture sysfs trees, and the energy plan built on them.

#[path = "energy/fixtures.rs"]
mod fixtures;
#[path = "energy/meters.rs"]
mod meters;
#[path = "energy/plan.rs"]
mod plan;
