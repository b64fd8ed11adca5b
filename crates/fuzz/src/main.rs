//! `chipbench-fuzz`: mutates seed models for a bounded time and runs each mutant through
//! chipbench's model handling ([`chipbench_fuzz::exercise`]). A panic, an allocation above the
//! limit or one input taking longer than the hang limit is a finding: the input is saved under
//! the findings folder and the exit code is 1. Fewer executions than `--min-execs` is a failure
//! too, so a fuzzer that stopped doing anything cannot pass.
//!
//!   chipbench-fuzz [--seconds N] [--execs N] [--min-execs N] [--seed N] [--findings DIR]
//!                  [--max-alloc-mib N] [--hang-seconds N] [SEED.onnx...]
//!   chipbench-fuzz --replay INPUT.onnx    runs one saved input, panicking as chipbench would
//!
//! Seeds: the optimize crate's fixture models (control flow, recurrence, custom operators,
//! misdeclared shapes), the given files, and the mutants that decode and get past shape
//! inference (kept in a bounded pool so that mutations compound).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chipbench_fuzz::{Reached, exercise, mutate::mutate};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Allocations above this many bytes are findings (a shape that asks for terabytes).
static MAX_ALLOC: AtomicUsize = AtomicUsize::new(1 << 30);
/// The input being exercised, for the allocator and the watchdog to save before aborting.
static CURRENT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);
/// An open file the input is written to on an abort.
static ABORT_FILE: AtomicI32 = AtomicI32::new(-1);
/// Where the last panic happened (`file:line`), set by the panic hook.
static PANIC_AT: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
/// Milliseconds since the start when the current execution began (0: none running).
static EXEC_STARTED_MS: AtomicU64 = AtomicU64::new(0);

struct LimitedAllocator;

// SAFETY: every call is passed on to the system allocator unchanged, unless it is over the
// limit, in which case the process ends without returning.
unsafe impl GlobalAlloc for LimitedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: LimitedAllocator = LimitedAllocator;

fn check(size: usize) {
    if size > MAX_ALLOC.load(Ordering::Relaxed) {
        abort_with("finding: an allocation above --max-alloc-mib\n");
    }
}

/// Saves the current input to the abort file and aborts, allocating nothing (it runs inside
/// the allocator and in the watchdog).
fn abort_with(message: &str) -> ! {
    let fd = ABORT_FILE.load(Ordering::SeqCst);
    let input = CURRENT.load(Ordering::SeqCst);
    let len = CURRENT_LEN.load(Ordering::SeqCst);
    // SAFETY: write(2) on our own fds; `input` points to `len` bytes the main loop keeps alive
    // while it is set.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
        if fd >= 0 && !input.is_null() {
            libc::write(fd, input.cast(), len);
        }
        libc::abort();
    }
}

struct Options {
    /// Stop after this long (default 60 s when no --execs is given)...
    seconds: Option<u64>,
    /// ...or after this many executions, whichever comes first: the same seed gives the same
    /// inputs in the same order, so a run bounded by both repeats a prefix of one checked longer.
    execs: Option<u64>,
    min_execs: u64,
    seed: u64,
    findings: PathBuf,
    hang: Duration,
    seeds: Vec<PathBuf>,
    replay: Option<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        seconds: None,
        execs: None,
        min_execs: 0,
        seed: 0,
        findings: PathBuf::from("target/fuzz-findings"),
        hang: Duration::from_secs(10),
        seeds: Vec::new(),
        replay: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let text = args.next().ok_or(format!("{name} needs a value"))?;
            text.parse().map_err(|e| format!("{name} {text}: {e}"))
        };
        match arg.as_str() {
            "--seconds" => o.seconds = Some(value("--seconds")?),
            "--min-execs" => o.min_execs = value("--min-execs")?,
            "--execs" => o.execs = Some(value("--execs")?),
            "--seed" => o.seed = value("--seed")?,
            "--max-alloc-mib" => {
                MAX_ALLOC.store((value("--max-alloc-mib")? as usize) << 20, Ordering::SeqCst)
            }
            "--hang-seconds" => o.hang = Duration::from_secs(value("--hang-seconds")?),
            "--findings" => o.findings = args.next().ok_or("--findings needs a folder")?.into(),
            "--replay" => o.replay = Some(args.next().ok_or("--replay needs a file")?.into()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => o.seeds.push(path.into()),
        }
    }
    Ok(o)
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("chipbench-fuzz: {e}");
            std::process::exit(2);
        }
    };
    if let Some(path) = &o.replay {
        let input = std::fs::read(path).unwrap_or_else(|e| {
            eprintln!("chipbench-fuzz: cannot read {}: {e}", path.display());
            std::process::exit(2);
        });
        println!("{:?}", exercise(&input));
        return;
    }
    if let Err(e) = std::fs::create_dir_all(&o.findings) {
        eprintln!(
            "chipbench-fuzz: cannot create {}: {e}",
            o.findings.display()
        );
        std::process::exit(2);
    }
    let abort_path = o.findings.join("abort-input.onnx");
    let c_path = std::ffi::CString::new(abort_path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a plain open(2) of a path we own.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o644,
        )
    };
    ABORT_FILE.store(fd, Ordering::SeqCst);

    let mut pool: Vec<Vec<u8>> = chipbench_optimize::fixtures::all()
        .into_iter()
        .map(|(_, model)| model.encode_to_vec())
        .collect();
    for path in &o.seeds {
        match std::fs::read(path) {
            Ok(bytes) => pool.push(bytes),
            Err(e) => eprintln!("chipbench-fuzz: skipping seed {}: {e}", path.display()),
        }
    }
    let seeds = pool.len();
    let start = Instant::now();
    let hang = o.hang;
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let began = EXEC_STARTED_MS.load(Ordering::SeqCst);
            let now = start.elapsed().as_millis() as u64;
            if began > 0 && now.saturating_sub(began) > hang.as_millis() as u64 {
                abort_with("finding: one input ran past --hang-seconds\n");
            }
        }
    });
    // The loop reports each panic location once, with the first input that reached it.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        *PANIC_AT.lock().unwrap_or_else(|p| p.into_inner()) = location;
    }));

    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let mut execs = 0u64;
    let mut reached: BTreeMap<Reached, u64> = BTreeMap::new();
    // Panic locations, each with the first input that reached it and how often it was hit.
    let mut findings: BTreeMap<String, (PathBuf, u64)> = BTreeMap::new();
    let seconds = match (o.seconds, o.execs) {
        (None, None) => Some(60),
        (seconds, _) => seconds,
    };
    let budget = seconds.map(Duration::from_secs);
    while o.execs.is_none_or(|n| execs < n) && budget.is_none_or(|b| start.elapsed() < b) {
        // The smaller of two picks, mostly: a suite model takes a hundred times longer than a
        // fixture, and most findings need many cheap executions, not a few big ones.
        let (x, y) = (
            rng.random_range(0..pool.len()),
            rng.random_range(0..pool.len()),
        );
        let a = if rng.random_bool(0.9) && pool[y].len() < pool[x].len() {
            y
        } else {
            x
        };
        let b = rng.random_range(0..pool.len());
        let input = mutate(&pool[a], &pool[b], &mut rng);
        CURRENT_LEN.store(input.len(), Ordering::SeqCst);
        CURRENT.store(input.as_ptr().cast_mut(), Ordering::SeqCst);
        EXEC_STARTED_MS.store(start.elapsed().as_millis().max(1) as u64, Ordering::SeqCst);
        let outcome = std::panic::catch_unwind(|| exercise(&input));
        EXEC_STARTED_MS.store(0, Ordering::SeqCst);
        CURRENT.store(std::ptr::null_mut(), Ordering::SeqCst);
        execs += 1;
        match outcome {
            Ok(level) => {
                *reached.entry(level).or_default() += 1;
                // Inputs that get past shape inference feed further mutations.
                if level >= Reached::Inferred && input.len() < (1 << 20) {
                    if pool.len() < seeds + 256 {
                        pool.push(input);
                    } else {
                        let slot = rng.random_range(seeds..pool.len());
                        pool[slot] = input;
                    }
                }
            }
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let at = std::mem::take(&mut *PANIC_AT.lock().unwrap_or_else(|p| p.into_inner()));
                let (_, hits) = findings.entry(at.clone()).or_insert_with(|| {
                    let path = o.findings.join(format!("panic-{execs}.onnx"));
                    let _ = std::fs::write(&path, &input);
                    eprintln!(
                        "finding: a panic at {at} ({message}); input saved as {}",
                        path.display()
                    );
                    (path, 0)
                });
                *hits += 1;
            }
        }
    }
    // SAFETY: closing our own fd; nothing aborts after this.
    unsafe { libc::close(fd) };
    let _ = std::fs::remove_file(&abort_path);
    let elapsed = start.elapsed().as_secs_f64();
    let levels: Vec<String> = reached.iter().map(|(k, v)| format!("{k:?} {v}")).collect();
    println!(
        "chipbench-fuzz: {execs} executions in {elapsed:.1} s ({:.0}/s, one core), {} seeds, \
         pool {}; how far inputs got: {}; findings: {}",
        execs as f64 / elapsed,
        seeds,
        pool.len(),
        levels.join(", "),
        findings.len()
    );
    for (at, (path, hits)) in &findings {
        println!(
            "  panic at {at}: {hits} inputs, first saved as {}",
            path.display()
        );
    }
    if !findings.is_empty() {
        std::process::exit(1);
    }
    if execs < o.min_execs {
        eprintln!(
            "chipbench-fuzz: {execs} executions, fewer than --min-execs {}",
            o.min_execs
        );
        std::process::exit(1);
    }
}
