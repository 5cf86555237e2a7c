//! Connection threads, reused. Starting and ending a thread costs about
//! seventeen system calls (the clone, mapping and protecting its stack and
//! std's signal stack, unmapping them again), more than the rest of a
//! WebSocket handshake. So a thread whose connection has ended waits up to
//! [`KEEP_IDLE`] for the next job before it exits, and at most [`MAX_IDLE`]
//! threads wait at once: the server stays a thread per connection, it just
//! does not pay for a new one each time.
//!
//! A job is queued first and then picked up, by a waiting thread or by one
//! started for it; when no thread can be started the job is taken back and
//! handed to the caller, who can still answer `503` on its connection.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use super::metrics::Metrics;

/// How long a thread without work waits for the next job before it exits.
pub const KEEP_IDLE: Duration = Duration::from_secs(10);

/// Most threads waiting for work at once.
pub const MAX_IDLE: usize = 64;

struct Queue<Job> {
    jobs: VecDeque<(u64, Job)>,
    next_id: u64,
    /// Threads waiting for a job.
    idle: usize,
}

/// The threads that run jobs of type `Job` (accepted connections), each
/// with `run_job`.
pub struct ThreadCache<Job> {
    queue: Mutex<Queue<Job>>,
    work: Condvar,
    stack_size: usize,
    run_job: fn(Job),
}

impl<Job> std::fmt::Debug for ThreadCache<Job> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = self.lock();
        f.debug_struct("ThreadCache")
            .field("queued", &queue.jobs.len())
            .field("idle", &queue.idle)
            .finish()
    }
}

impl<Job: Send + 'static> ThreadCache<Job> {
    /// A cache whose threads have `stack_size` bytes of stack and give each
    /// job to `run_job`.
    pub fn new(stack_size: usize, run_job: fn(Job)) -> Arc<Self> {
        Arc::new(ThreadCache {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                next_id: 0,
                idle: 0,
            }),
            work: Condvar::new(),
            stack_size,
            run_job,
        })
    }
}

impl<Job> ThreadCache<Job> {
    fn lock(&self) -> MutexGuard<'_, Queue<Job>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<Job: Send + 'static> ThreadCache<Job> {
    /// Run `job` on a waiting thread, or on a new one. When no thread can be
    /// started, the job comes back with the error, not run.
    pub fn run(self: &Arc<Self>, job: Job) -> Result<(), (Job, io::Error)> {
        let id = {
            let mut queue = self.lock();
            let id = queue.next_id;
            queue.next_id += 1;
            queue.jobs.push_back((id, job));
            // Every queued job needs a waiting thread of its own: a woken
            // thread leaves `idle` in the same step as it takes a job, so
            // counting the queue against `idle` never double-books one.
            if queue.idle >= queue.jobs.len() {
                // Wake it after letting the lock go, or it wakes only to
                // wait for the lock (two more futex calls per connection).
                drop(queue);
                self.work.notify_one();
                return Ok(());
            }
            id
        };
        let cache = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("conn".into())
            .stack_size(self.stack_size)
            .spawn(move || cache.work_loop());
        match spawned {
            Ok(_) => Ok(()),
            Err(error) => {
                let mut queue = self.lock();
                match queue.jobs.iter().position(|(queued, _)| *queued == id) {
                    Some(at) => {
                        let (_, job) = queue.jobs.remove(at).expect("the position just found");
                        Err((job, error))
                    }
                    // A thread that finished meanwhile took it: it runs.
                    None => Ok(()),
                }
            }
        }
    }

    /// A thread's life: run jobs until none comes for [`KEEP_IDLE`].
    fn work_loop(&self) {
        while let Some(job) = self.next_job() {
            (self.run_job)(job);
        }
    }

    fn next_job(&self) -> Option<Job> {
        let mut queue = self.lock();
        loop {
            if let Some((_, job)) = queue.jobs.pop_front() {
                return Some(job);
            }
            if queue.idle >= MAX_IDLE {
                return None;
            }
            queue.idle += 1;
            let (guard, waited) = self
                .work
                .wait_timeout(queue, KEEP_IDLE)
                .unwrap_or_else(|p| p.into_inner());
            queue = guard;
            queue.idle -= 1;
            if waited.timed_out() && queue.jobs.is_empty() {
                return None;
            }
        }
    }
}

/// How many connection threads this host can map. Each thread costs four
/// memory mappings (its stack and guard page, and std's signal stack and its
/// guard), and Linux caps a process's mappings at `vm.max_map_count`
/// (65,530 by default); 1,024 mappings are kept for the heap, libraries and
/// the server's own threads.
pub fn thread_budget() -> u64 {
    let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(65_530);
    threads_for_mappings(max_map_count)
}

fn threads_for_mappings(max_map_count: u64) -> u64 {
    max_map_count.saturating_sub(1024) / 4
}

/// Counts a live connection thread in `socketbox_threads`.
pub struct ThreadCount<'a>(&'a Metrics);

impl<'a> ThreadCount<'a> {
    /// Count the current thread until the guard drops.
    pub fn enter(metrics: &'a Metrics) -> Self {
        metrics.threads.fetch_add(1, Relaxed);
        ThreadCount(metrics)
    }
}

impl Drop for ThreadCount<'_> {
    fn drop(&mut self) {
        self.0.threads.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    type Task = Box<dyn FnOnce() + Send>;

    fn cache() -> Arc<ThreadCache<Task>> {
        ThreadCache::new(64 * 1024, |task: Task| task())
    }

    #[test]
    fn a_finished_thread_runs_the_next_job() {
        let cache = cache();
        let (tx, rx) = mpsc::channel();
        let first = tx.clone();
        assert!(cache
            .run(Box::new(move || first
                .send(thread::current().id())
                .unwrap()))
            .is_ok());
        let first_thread = rx.recv().unwrap();
        // Let the thread get back to waiting.
        while cache.lock().idle == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        assert!(cache
            .run(Box::new(move || tx.send(thread::current().id()).unwrap()))
            .is_ok());
        assert_eq!(rx.recv().unwrap(), first_thread);
    }

    #[test]
    fn jobs_never_wait_for_each_other() {
        // Each job blocks until all have started: they need a thread each.
        let cache = cache();
        let jobs = 8;
        let barrier = Arc::new(std::sync::Barrier::new(jobs + 1));
        for _ in 0..jobs {
            let barrier = Arc::clone(&barrier);
            assert!(cache
                .run(Box::new(move || {
                    barrier.wait();
                }))
                .is_ok());
        }
        barrier.wait();
    }

    #[test]
    fn thread_budget_leaves_room_for_the_process_mappings() {
        // Measured: with 65,530 mappings the server aborted near 16,400
        // threads; the budget stops it at 16,126 and answers 503 instead.
        assert_eq!(threads_for_mappings(65_530), 16_126);
        assert_eq!(threads_for_mappings(100), 0);
        assert!(thread_budget() > 0);
    }
}
