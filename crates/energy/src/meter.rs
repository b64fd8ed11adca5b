//! The meter most sensors fit: some energy counters read at both ends of the window, and some
//! power sensors sampled through it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sampler::{PowerProbe, Sampler, sampling_interval};
use crate::sysfs::read_u64;
use crate::{Domain, Error, Meter, Reading, Result, Window};

/// A monotonically increasing energy counter.
pub(crate) trait CounterProbe: Send + Sync {
    fn read(&self) -> Result<u64>;
    /// Joules between two readings, undoing a wrap-around where the counter's range is known.
    fn joules_between(&self, start: u64, end: u64) -> Result<f64>;
}

/// A counter in a sysfs file (`energy_uj`, `energy1_input`).
pub(crate) struct FileCounter {
    pub path: PathBuf,
    /// Joules per counter unit (1e-6 for µJ).
    pub unit_joules: f64,
    /// The largest value before the counter wraps to zero (`max_energy_range_uj`).
    pub max: Option<u64>,
    pub permission_hint: &'static str,
}

impl CounterProbe for FileCounter {
    fn read(&self) -> Result<u64> {
        read_u64(&self.path, self.permission_hint)
    }

    fn joules_between(&self, start: u64, end: u64) -> Result<f64> {
        let delta = if end >= start {
            end - start
        } else {
            // One wrap: the window is far shorter than the time a counter takes to go round
            // (RAPL package counters wrap after tens of minutes at full power).
            let max = self.max.ok_or_else(|| Error::UnknownWrap {
                path: self.path.clone(),
                start,
                end,
            })?;
            max.saturating_sub(start) + end
        };
        Ok(delta as f64 * self.unit_joules)
    }
}

/// Counters and power sensors read as one meter.
pub(crate) struct SensorMeter {
    pub method: &'static str,
    pub update_period: Duration,
    pub counters: Vec<(Domain, Arc<dyn CounterProbe>)>,
    pub powers: Vec<(Domain, Arc<dyn PowerProbe>)>,
}

impl std::fmt::Debug for SensorMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.domains_iter().map(|d| d.name.as_str()).collect();
        write!(
            f,
            "{} {:?} (updates every {:?})",
            self.method, names, self.update_period
        )
    }
}

impl SensorMeter {
    fn domains_iter(&self) -> impl Iterator<Item = &Domain> {
        self.counters
            .iter()
            .map(|(d, _)| d)
            .chain(self.powers.iter().map(|(d, _)| d))
    }
}

impl Meter for SensorMeter {
    fn method(&self) -> &'static str {
        self.method
    }

    fn domains(&self) -> Vec<Domain> {
        self.domains_iter().cloned().collect()
    }

    fn update_period(&self) -> Duration {
        self.update_period
    }

    fn open(&self) -> Result<Box<dyn Window>> {
        let sampler = if self.powers.is_empty() {
            None
        } else {
            let probes = self.powers.iter().map(|(_, p)| p.clone()).collect();
            Some(Sampler::start(
                probes,
                sampling_interval(self.update_period),
            )?)
        };
        let start = Instant::now();
        let starts = self
            .counters
            .iter()
            .map(|(_, c)| c.read())
            .collect::<Result<Vec<u64>>>()?;
        Ok(Box::new(SensorWindow {
            method: self.method,
            start,
            counters: self
                .counters
                .iter()
                .zip(starts)
                .map(|((d, c), s)| (d.clone(), c.clone(), s))
                .collect(),
            powers: self.powers.iter().map(|(d, _)| d.clone()).collect(),
            sampler,
        }))
    }
}

struct SensorWindow {
    method: &'static str,
    start: Instant,
    counters: Vec<(Domain, Arc<dyn CounterProbe>, u64)>,
    powers: Vec<Domain>,
    sampler: Option<Sampler>,
}

impl Window for SensorWindow {
    fn close(self: Box<Self>) -> Result<Reading> {
        let window = self.start.elapsed();
        let mut domains = Vec::new();
        let mut failure = None;
        for (domain, counter, start) in self.counters {
            match counter
                .read()
                .and_then(|end| counter.joules_between(start, end))
            {
                Ok(joules) => domains.push((domain, joules)),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        // Always stop the sampling thread, even when a counter failed.
        if let Some(sampler) = self.sampler {
            match sampler.finish() {
                Ok(joules) => domains.extend(self.powers.into_iter().zip(joules)),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(Reading {
                method: self.method,
                window,
                domains,
            }),
        }
    }
}
