//! Power sensors give watts, not joules: a thread samples them through the window and the
//! samples are integrated with the trapezoidal rule.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Something that reports instantaneous power.
pub(crate) trait PowerProbe: Send + Sync {
    fn watts(&self) -> Result<f64>;
}

/// (seconds since the window opened, watts) of one probe.
type Trace = Vec<(f64, f64)>;

/// A running sampling thread over some probes.
pub(crate) struct Sampler {
    probes: Vec<Arc<dyn PowerProbe>>,
    start: Instant,
    stop: Sender<()>,
    thread: JoinHandle<Result<Vec<Trace>>>,
}

impl Sampler {
    /// Takes the first sample of every probe now (so an unreadable sensor fails the open, not
    /// the close), then samples every `interval` until [`Sampler::finish`].
    pub(crate) fn start(probes: Vec<Arc<dyn PowerProbe>>, interval: Duration) -> Result<Sampler> {
        let start = Instant::now();
        let first = probes
            .iter()
            .map(|p| p.watts())
            .collect::<Result<Vec<f64>>>()?;
        let mut traces: Vec<Trace> = first.into_iter().map(|w| vec![(0.0, w)]).collect();
        let (stop, stopped) = mpsc::channel::<()>();
        let sampled = probes.clone();
        let thread = std::thread::Builder::new()
            .name("chipbench-power-sampler".into())
            .spawn(move || -> Result<Vec<Trace>> {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let t = start.elapsed().as_secs_f64();
                    for (probe, trace) in sampled.iter().zip(traces.iter_mut()) {
                        trace.push((t, probe.watts()?));
                    }
                }
                Ok(traces)
            })
            .map_err(|e| Error::Sampler(format!("cannot start the thread: {e}")))?;
        Ok(Sampler {
            probes,
            start,
            stop,
            thread,
        })
    }

    /// Stops the thread, takes the last sample here and now (a thread woken late on a busy
    /// machine would stretch the window), and returns the joules of every probe, in order.
    pub(crate) fn finish(self) -> Result<Vec<f64>> {
        let t = self.start.elapsed().as_secs_f64();
        let last = self
            .probes
            .iter()
            .map(|p| p.watts())
            .collect::<Result<Vec<f64>>>();
        // The thread may have ended on a read error already; its result says which.
        let _ = self.stop.send(());
        let mut traces = self
            .thread
            .join()
            .map_err(|_| Error::Sampler("the thread panicked".into()))??;
        for (trace, watts) in traces.iter_mut().zip(last?) {
            trace.retain(|(at, _)| *at <= t);
            trace.push((t, watts));
        }
        Ok(traces.iter().map(|t| integrate(t)).collect())
    }
}

/// Trapezoidal integral of power over time: joules.
pub(crate) fn integrate(trace: &[(f64, f64)]) -> f64 {
    trace
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

/// How often to sample a sensor that refreshes every `update_period`: twice per refresh, so a
/// change is seen within half a period, but no faster than every 5 ms and at least every 50 ms.
pub(crate) fn sampling_interval(update_period: Duration) -> Duration {
    (update_period / 2).clamp(Duration::from_millis(5), Duration::from_millis(50))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn integrates_a_step() {
        // 2 W for 1 s, then 4 W for 1 s, sampled at the edges and in the middle.
        let trace = [(0.0, 2.0), (1.0, 2.0), (1.0, 4.0), (2.0, 4.0)];
        assert!((integrate(&trace) - 6.0).abs() < 1e-12);
    }

    /// Reports the scripted values in turn, then repeats the last; `None` is a read error.
    struct Scripted(Mutex<Vec<Option<f64>>>);

    impl PowerProbe for Scripted {
        fn watts(&self) -> Result<f64> {
            let mut values = self.0.lock().unwrap();
            let value = if values.len() > 1 {
                values.remove(0)
            } else {
                values[0]
            };
            value.ok_or_else(|| Error::Nvml("GPU is lost".into()))
        }
    }

    #[test]
    fn a_constant_power_gives_power_times_time() {
        let probe: Arc<dyn PowerProbe> = Arc::new(Scripted(Mutex::new(vec![Some(3.0)])));
        let sampler = Sampler::start(vec![probe], Duration::from_millis(5)).unwrap();
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(100));
        let joules = sampler.finish().unwrap()[0];
        let seconds = t.elapsed().as_secs_f64();
        assert!(
            (joules - 3.0 * seconds).abs() < 3.0 * 0.02,
            "{joules} J over {seconds} s"
        );
    }

    #[test]
    fn a_read_error_during_the_window_fails_the_close() {
        let probe: Arc<dyn PowerProbe> = Arc::new(Scripted(Mutex::new(vec![Some(1.0), None])));
        let sampler = Sampler::start(vec![probe], Duration::from_millis(5)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let err = sampler.finish().unwrap_err().to_string();
        assert!(err.contains("GPU is lost"), "{err}");
    }
}
