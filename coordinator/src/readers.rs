//! The reader threads: where reads whose cost grows with a sweep run (tables, effects,
//! lists, a trial with its epochs, exports).
//!
//! They run off tokio's async workers and at a lower CPU priority (10 nice steps below
//! the coordinator's on Linux, set once per thread, since a thread cannot raise its
//! priority back): on a machine with few cores a table of a 100,000-trial sweep takes a
//! core for a tenth of a second, and at equal priority `Lease` and the reports queued
//! behind it. Reads wait
//! in a bounded queue ([`QUEUE`]); a full queue refuses the read at once
//! (`RESOURCE_EXHAUSTED`) rather than holding memory for it. An export streams for as
//! long as its client reads, so each has a thread of its own, at most [`EXPORTS`] at a
//! time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use tonic::Status;

/// Reads waiting for a reader thread before new ones are refused.
pub const QUEUE: usize = 1024;

/// Exports streaming at once before a new one is refused.
pub const EXPORTS: usize = 16;

/// How much lower than the coordinator's the reader threads' priority is, in nice
/// steps (a nice value is at most 19).
pub const NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A pool of low-priority threads for reads.
pub struct Readers {
    jobs: SyncSender<Job>,
    exports: Arc<AtomicUsize>,
}

/// The calling thread's nice value (Linux; elsewhere 0).
fn nice_of_this_thread() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and getpriority take plain integers and touch no memory of
        // ours. (A nice value of -1 reads the same as an error, which is harmless here:
        // the thread is then lowered from -1.)
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// Lowers the calling thread's CPU priority by [`NICE`] steps, to at most 19 (Linux;
/// elsewhere nothing).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let target = (nice_of_this_thread() + NICE).min(19);
        // SAFETY: setpriority and gettid take plain integers and touch no memory of
        // ours; a failure (which lowering never is for an unprivileged thread) only
        // leaves the priority as it was.
        unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, target);
        }
    }
}

fn work(jobs: Arc<Mutex<Receiver<Job>>>) {
    lower_priority();
    loop {
        // The lock is held only to take a job, never while running one.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

impl Readers {
    /// Starts `threads` reader threads (at least one).
    pub fn start(threads: usize) -> std::io::Result<Readers> {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("reader-{n}"))
                .spawn(move || work(rx))?;
        }
        Ok(Readers {
            jobs: tx,
            exports: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// As many reader threads as the machine has cores, 2 to 8.
    pub fn for_this_machine() -> std::io::Result<Readers> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Readers::start(cores.clamp(2, 8))
    }

    /// Runs `f` on a reader thread and returns its answer; refused at once when
    /// [`QUEUE`] reads are already waiting.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Status> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have gone (its client hung up): nothing to answer.
            let _ = tx.send(f());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Status::resource_exhausted(format!(
                    "the coordinator is busy: {QUEUE} reads are waiting; try again"
                )));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Status::internal("the reader threads are gone"));
            }
        }
        rx.await
            .map_err(|_| Status::internal("a read failed before it answered"))
    }

    /// Runs a long read (an export that streams for as long as its client reads) on a
    /// low-priority thread of its own; refused at once when [`EXPORTS`] are running.
    pub fn spawn_stream(&self, f: impl FnOnce() + Send + 'static) -> Result<(), Status> {
        let running = self.exports.clone();
        if running.fetch_add(1, Ordering::SeqCst) >= EXPORTS {
            running.fetch_sub(1, Ordering::SeqCst);
            return Err(Status::resource_exhausted(format!(
                "the coordinator is busy: {EXPORTS} exports are streaming; try again when \
                 one ends"
            )));
        }
        let done = running.clone();
        std::thread::Builder::new()
            .name("export".into())
            .spawn(move || {
                /// Counts the export as ended however `f` ends.
                struct Ended(Arc<AtomicUsize>);
                impl Drop for Ended {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _ended = Ended(done);
                lower_priority();
                f();
            })
            .map(|_| ())
            .map_err(|e| {
                running.fetch_sub(1, Ordering::SeqCst);
                Status::internal(format!("cannot start an export thread: {e}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_run_on_low_priority_threads_and_answer() {
        // Threads inherit their creator's nice value: the readers are NICE below it.
        let ours = nice_of_this_thread();
        let readers = Readers::start(2).unwrap();
        let (name, nice) = readers
            .run(|| {
                let name = std::thread::current().name().map(str::to_owned);
                (name, nice_of_this_thread())
            })
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("reader-"));
        if cfg!(target_os = "linux") {
            assert_eq!(nice, (ours + NICE).min(19));
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let readers = Readers::start(1).unwrap();
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        // One read holds the only thread; QUEUE more fill the queue.
        let blocked = readers.run(move || {
            started.send(()).unwrap();
            held.recv().ok()
        });
        let mut waiting = Vec::new();
        let mut blocked = Box::pin(blocked);
        // Polling once queues the first job; the thread then takes it.
        assert!(futures_poll_once(&mut blocked).await);
        running
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        for _ in 0..QUEUE {
            let mut f = Box::pin(readers.run(|| ()));
            assert!(futures_poll_once(&mut f).await);
            waiting.push(f);
        }
        let refused = readers.run(|| ()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("1024 reads are waiting"),
            "{}",
            refused.message()
        );
        hold.send(()).unwrap();
        assert_eq!(blocked.await.unwrap(), Some(()));
        for f in waiting {
            f.await.unwrap();
        }
    }

    /// Polls `f` once; true if it is still pending.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> bool {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut *f).poll(cx).is_pending())
        })
        .await
    }

    #[tokio::test]
    async fn exports_are_bounded_and_counted_when_they_end() {
        let readers = Readers::start(1).unwrap();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        for _ in 0..EXPORTS {
            let wait = wait.clone();
            readers
                .spawn_stream(move || {
                    let _ = wait.lock().unwrap().recv();
                })
                .unwrap();
        }
        let refused = readers.spawn_stream(|| ()).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        for _ in 0..EXPORTS {
            release.send(()).unwrap();
        }
        // Once they have ended, a new one starts.
        let started = std::time::Instant::now();
        loop {
            match readers.spawn_stream(|| ()) {
                Ok(()) => break,
                Err(_) if started.elapsed() < std::time::Duration::from_secs(10) => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}
