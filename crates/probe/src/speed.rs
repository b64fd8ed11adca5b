//! The host's own speed, checked between cells with a fixed kernel on one thread: small f32
//! matmuls held in L1, whose time follows the core's clock and the contention for the core (a
//! neighbour on the sibling hyperthread, a throttled VM). A benchmark run records a check before
//! its first cell and after each cell, so that a comparison can tell a host that ran slower from
//! code that runs slower.
//!
//! A memory kernel was tried too and left out: reads of 16 and 64 MiB varied by 5-12 % from one
//! check to the next on an idle 2-core VM, unrelated to how fast the cells ran; the compute
//! kernel varies by 0.4 %.

use std::hint::black_box;
use std::time::Instant;

use chipbench_core::result::SpeedCheck;

const N: usize = 64;
const MATMULS: usize = 16;
/// 31 timings and their lower quartile: measured on an idle 2-core VM over 40 checks between
/// cache-thrashing work, the quartile varied by 0.4 % (sd), the median by 0.7-2 % (an interrupt
/// lands in many timings) and the minimum by 0.35 % but it misses a neighbour that takes the
/// core now and then.
const REPEATS: usize = 31;

/// The kernel's buffers, allocated once per run so a check allocates nothing.
pub struct SpeedProbe {
    started: Instant,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl Default for SpeedProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl SpeedProbe {
    pub fn new() -> Self {
        let fill = |seed: usize| -> Vec<f32> {
            (0..N * N)
                .map(|i| ((i * 7 + seed) % 13) as f32 / 13.0)
                .collect()
        };
        SpeedProbe {
            started: Instant::now(),
            a: fill(1),
            b: fill(2),
            c: vec![0.0; N * N],
        }
    }

    /// One check, labelled with the number of cells measured before it.
    pub fn check(&mut self, before_cell: usize) -> SpeedCheck {
        clean_vector_state();
        let at_s = self.started.elapsed().as_secs_f64();
        let mut times = [0.0; REPEATS];
        for time in &mut times {
            let t = Instant::now();
            for _ in 0..MATMULS {
                matmul(black_box(&self.a), black_box(&self.b), &mut self.c);
            }
            black_box(&self.c);
            *time = t.elapsed().as_secs_f64() * 1e3;
        }
        times.sort_by(f64::total_cmp);
        SpeedCheck {
            before_cell,
            at_s,
            kernel_ms: times[REPEATS / 4],
        }
    }
}

/// Backends' AVX kernels may return with the upper halves of the vector registers dirty; the
/// SSE code of the kernels then runs several times slower (measured here: 4x after a tract
/// cell), which would be the process's state, not the host's speed.
fn clean_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        #[target_feature(enable = "avx")]
        fn zero_upper() {
            std::arch::x86_64::_mm256_zeroupper();
        }
        // SAFETY: the CPU has AVX (checked above).
        unsafe { zero_upper() }
    }
}

/// c = a x b, i-k-j order so the inner loop vectorises.
fn matmul(a: &[f32], b: &[f32], c: &mut [f32]) {
    c.fill(0.0);
    for i in 0..N {
        for k in 0..N {
            let aik = a[i * N + k];
            let row = &b[k * N..(k + 1) * N];
            for (out, &bkj) in c[i * N..(i + 1) * N].iter_mut().zip(row) {
                *out += aik * bkj;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matmul_is_a_matmul() {
        let mut c = vec![0.0; N * N];
        let identity: Vec<f32> = (0..N * N)
            .map(|i| if i / N == i % N { 1.0 } else { 0.0 })
            .collect();
        let a: Vec<f32> = (0..N * N).map(|i| i as f32).collect();
        matmul(&a, &identity, &mut c);
        assert_eq!(c, a);
    }

    #[test]
    fn checks_are_positive_timed_and_labelled() {
        let mut probe = SpeedProbe::new();
        let first = probe.check(0);
        let second = probe.check(3);
        assert_eq!((first.before_cell, second.before_cell), (0, 3));
        assert!(second.at_s >= first.at_s);
        for c in [&first, &second] {
            assert!(c.kernel_ms > 0.0 && c.kernel_ms < 1000.0, "{c:?}");
        }
    }
}
