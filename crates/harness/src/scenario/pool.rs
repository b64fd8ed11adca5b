//! The system under test on the real clock: one thread per worker, each with a server of its own
//! (a session loaded in that thread, since sessions need not be `Send`), fed through channels.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError, channel};
use std::time::{Duration, Instant};

use super::clock::{Clock, RealClock};
use super::driver::{Completion, Sut, Work};

/// Serves a piece of work: `work.samples` samples (one inference of a batch that size) of query
/// `work.query`.
pub trait Serve {
    fn serve(&mut self, work: Work) -> Result<(), String>;
}

/// Makes worker `w`'s server, in that worker's thread.
pub type MakeServer<'a> = dyn Fn(usize) -> Result<Box<dyn Serve>, String> + Sync + 'a;

/// Worker threads serving work handed to them by the driver.
pub struct ThreadPool {
    to_workers: Vec<Sender<Work>>,
    done: Receiver<Finished>,
    clock: RealClock,
}

/// What a worker sends back: the work, the instant it finished and the error, if any.
struct Finished {
    worker: usize,
    work: Work,
    at: Instant,
    error: Option<String>,
}

/// Waits on the channel while the deadline is far, then polls it until the deadline, so a query
/// is issued within microseconds of its scheduled arrival (as `clock::wait_until`).
const SPIN: Duration = Duration::from_micros(200);

/// Starts `workers` threads, each making its server with `make`, runs `body` with the pool once
/// every server is ready, and joins the threads. The first server that cannot be made is the
/// error. The pool's clock starts when `body` does (see [`ThreadPool::restart_clock`]).
pub fn with_pool<R>(
    workers: usize,
    make: &MakeServer<'_>,
    body: impl FnOnce(&mut ThreadPool) -> R,
) -> Result<R, String> {
    std::thread::scope(|scope| {
        let (done_tx, done) = channel();
        let (ready_tx, ready) = channel();
        let mut to_workers = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (tx, rx) = channel::<Work>();
            to_workers.push(tx);
            let (done_tx, ready_tx) = (done_tx.clone(), ready_tx.clone());
            scope.spawn(move || {
                let mut server = match make(worker) {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                drop(ready_tx);
                for work in rx {
                    let error = server.serve(work).err();
                    let finished = Finished {
                        worker,
                        work,
                        at: Instant::now(),
                        error,
                    };
                    if done_tx.send(finished).is_err() {
                        return;
                    }
                }
            });
        }
        drop(ready_tx);
        let started: Result<Vec<()>, String> = ready.iter().collect();
        let mut pool = ThreadPool {
            to_workers,
            done,
            clock: RealClock::start(),
        };
        let result = started.map(|_| body(&mut pool));
        // Closing the channels ends the workers' loops; the scope joins them.
        pool.to_workers.clear();
        result
    })
}

impl ThreadPool {
    /// Starts the pool's clock afresh and returns it: the driver's time zero.
    pub fn restart_clock(&mut self) -> RealClock {
        self.clock = RealClock::start();
        self.clock
    }

    fn completion(&self, f: Finished) -> Completion {
        Completion {
            worker: f.worker,
            work: f.work,
            finished: self.clock.since_origin(f.at),
            error: f.error,
        }
    }
}

impl Sut for ThreadPool {
    fn workers(&self) -> usize {
        self.to_workers.len()
    }

    fn start(&mut self, worker: usize, work: Work) {
        // A worker's thread lives as long as the pool, so its channel is open.
        let _ = self.to_workers[worker].send(work);
    }

    fn wait(&mut self, deadline: Option<Duration>) -> Option<Completion> {
        let Some(deadline) = deadline else {
            return self.done.recv().ok().map(|f| self.completion(f));
        };
        let far = deadline.saturating_sub(self.clock.now());
        if far > SPIN {
            match self.done.recv_timeout(far - SPIN) {
                Ok(f) => return Some(self.completion(f)),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        while self.clock.now() < deadline {
            match self.done.try_recv() {
                Ok(f) => return Some(self.completion(f)),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        None
    }
}
