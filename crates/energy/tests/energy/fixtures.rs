//! Fixture sysfs trees: every meter reads from a root directory, so these build the files a
//! real kernel would expose and change them while a window is open.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Writes `contents` to `root/relative`, creating folders; atomically (write then rename), as a
/// reader may be looking at the file at the same moment.
pub fn write(root: &Path, relative: &str, contents: &str) -> PathBuf {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, format!("{contents}\n")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// A RAPL zone directory with a name, a counter and its range.
pub fn rapl_zone(
    root: &Path,
    id: &str,
    name: &str,
    energy_uj: u64,
    max_uj: Option<u64>,
) -> PathBuf {
    let dir = format!("sys/class/powercap/{id}");
    write(root, &format!("{dir}/name"), name);
    write(root, &format!("{dir}/energy_uj"), &energy_uj.to_string());
    if let Some(max) = max_uj {
        write(
            root,
            &format!("{dir}/max_energy_range_uj"),
            &max.to_string(),
        );
    }
    root.join(dir)
}

/// A thread that advances energy counters at fixed powers until dropped, like a CPU drawing
/// constant power. Each entry: (file, microjoules at start, watts).
pub struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub fn start(counters: Vec<(PathBuf, u64, f64)>) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let seconds = start.elapsed().as_secs_f64();
                for (path, base, watts) in &counters {
                    let value = base + (watts * seconds * 1e6) as u64;
                    let tmp = path.with_extension("tmp-tick");
                    std::fs::write(&tmp, format!("{value}\n")).unwrap();
                    std::fs::rename(&tmp, path).unwrap();
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        });
        Ticker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Drops, for the calling thread only, the capabilities that let root read any file, so a
/// mode-000 file gives EACCES as it does for an ordinary user. Returns false where the kernel
/// refuses (then the test cannot show the error as root).
pub fn lose_root_file_access_in_this_thread() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    const CAP_DAC_OVERRIDE: u32 = 1;
    const CAP_DAC_READ_SEARCH: u32 = 2;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset read and write only the two structs passed, sized for version 3.
    unsafe {
        if libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        ) != 0
        {
            return false;
        }
        data[0].effective &= !((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH));
        libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) == 0
    }
}
