//! The boxes and the fair scheduler that hands them to connections.
//!
//! Each box lives on an OS thread of its own for its whole life: a sandbox
//! run blocks its thread, and the sandbox requires the thread that starts a
//! run to outlive it. Threads take jobs from one shared state under a mutex
//! and a condition variable; connections (async tasks) only ever hold that
//! mutex for a few pointer moves, so it never blocks the runtime.
//!
//! Fairness: the connections form a ring. A free box takes the first job of
//! the first connection in ring order that is *eligible* (has a queued job,
//! fewer jobs running than its `Assign` count, and fewer results waiting to
//! be written than its window), and that connection moves to the back of the
//! ring. So boxes go round-robin among the connections that want them, and
//! a connection asking for more cannot push the others out.
//!
//! Backpressure: a result is handed to its connection over an unbounded
//! channel, but a connection stops being eligible once `running + unsent`
//! reaches `Assign + window`, so at most that many results are ever
//! buffered for a client that does not read. A box thread never waits on a
//! client.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use evaler_sandbox::{Outcome, ProcessHandle, RunSpec, Sandbox, SandboxBox, SandboxError};
use tokio::sync::mpsc::UnboundedSender;

use super::compile::{self, CompileDone, CompileJob};
use super::test_run::{self, TestJob};
use evaler_proto::TResponse;

/// Identifies a connection for the scheduler.
pub(crate) type ConnId = u64;

/// What box threads need to know besides the job.
#[derive(Debug, Clone)]
pub(crate) struct RunContext {
    /// Stdout kept per test, KiB.
    pub output_kib: u64,
    /// Largest file written by a test or compiler, KiB.
    pub file_size_kib: u64,
    /// Bytes of compiled files read back after a compile.
    pub max_submission_bytes: usize,
}

/// One unit of work for a box.
#[derive(Debug)]
pub(crate) struct Job {
    pub ctl: Arc<ConnCtl>,
    pub work: Work,
    /// Bytes this job holds while queued (input or source).
    pub bytes: usize,
}

#[derive(Debug)]
pub(crate) enum Work {
    Compile(CompileJob),
    Test(TestJob),
}

/// A finished job, on its way to the connection.
#[derive(Debug)]
pub(crate) enum JobDone {
    Compiled(CompileDone),
    Tested(Box<TResponse>),
}

/// What is needed to answer a job whose run panicked, so the client still
/// gets one reply per request. Kept small: it is taken for every job.
enum PanicReply {
    Compile(CompileJob),
    Test { id: i64, tid: i64 },
}

impl Job {
    fn panic_reply(&self) -> PanicReply {
        match &self.work {
            Work::Compile(c) => PanicReply::Compile(CompileJob {
                id: c.id,
                seq: c.seq,
                lang: Arc::clone(&c.lang),
                code: String::new(),
            }),
            Work::Test(t) => PanicReply::Test {
                id: t.sub.id,
                tid: t.tid,
            },
        }
    }
}

impl PanicReply {
    fn into_done(self) -> JobDone {
        let msg = "internal error in the judge while running this job";
        match self {
            PanicReply::Compile(c) => JobDone::Compiled(c.failed(msg)),
            PanicReply::Test { id, tid } => {
                JobDone::Tested(Box::new(test_run::se_response(id, tid, msg)))
            }
        }
    }
}

/// A connection's handle on its running jobs, shared with box threads so
/// that closing the connection can kill them.
#[derive(Debug)]
pub(crate) struct ConnCtl {
    pub id: ConnId,
    inner: Mutex<CtlInner>,
}

#[derive(Debug, Default)]
struct CtlInner {
    cancelled: bool,
    next_key: u64,
    running: Vec<(u64, ProcessHandle)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data
    // (every critical section is a few assignments), so go on.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ConnCtl {
    fn new(id: ConnId) -> ConnCtl {
        ConnCtl {
            id,
            inner: Mutex::default(),
        }
    }

    pub fn is_cancelled(&self) -> bool {
        lock(&self.inner).cancelled
    }

    /// Runs `spec` in `b`, killable by [`ConnCtl::cancel`] from any thread.
    /// The handle is registered and the flag checked under one lock, so a
    /// cancel can never slip between start and registration.
    pub fn run(&self, b: &mut SandboxBox, spec: RunSpec) -> Result<Outcome, SandboxError> {
        // A fork of this process that still held a submission's binary open
        // for writing would make its exec fail with ETXTBSY; the sandbox
        // retries the exec until that copy is closed.
        let running = b.spawn(spec)?;
        let handle = running.handle();
        let key = {
            let mut inner = lock(&self.inner);
            if inner.cancelled {
                handle.kill();
                None
            } else {
                inner.next_key += 1;
                let key = inner.next_key;
                inner.running.push((key, handle));
                Some(key)
            }
        };
        let outcome = running.wait();
        if let Some(key) = key {
            lock(&self.inner).running.retain(|(k, _)| *k != key);
        }
        outcome
    }

    /// Marks the connection gone and kills whatever of it is running.
    pub fn cancel(&self) {
        let running = {
            let mut inner = lock(&self.inner);
            inner.cancelled = true;
            std::mem::take(&mut inner.running)
        };
        for (_, handle) in running {
            handle.kill();
        }
    }
}

/// Why a job was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// The connection's `QLen` bound.
    QueueFull { limit: usize },
    /// The connection's queued bytes.
    ConnectionBytes { limit: usize },
    /// All connections' queued bytes.
    ServerBytes { limit: usize },
    /// The connection was closed meanwhile.
    Closed,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::QueueFull { limit } => write!(
                f,
                "queue full: {limit} requests of this connection are already waiting (QLen {limit})"
            ),
            Rejected::ConnectionBytes { limit } => write!(
                f,
                "queue full: this connection's waiting requests would hold more than {limit} bytes"
            ),
            Rejected::ServerBytes { limit } => write!(
                f,
                "server busy: waiting requests of all connections would hold more than {limit} bytes; try again later"
            ),
            Rejected::Closed => f.write_str("connection closed"),
        }
    }
}

struct ConnSched {
    queue: VecDeque<Job>,
    queued_bytes: usize,
    running: usize,
    unsent: usize,
    assign: usize,
    ctl: Arc<ConnCtl>,
    done: UnboundedSender<JobDone>,
}

#[derive(Default)]
struct State {
    conns: HashMap<ConnId, ConnSched>,
    ring: VecDeque<ConnId>,
    queued_bytes: usize,
    shutdown: bool,
}

impl State {
    fn pick(&mut self, window: usize) -> Option<Job> {
        let pos = self.ring.iter().position(|id| {
            self.conns.get(id).is_some_and(|c| {
                !c.queue.is_empty()
                    && c.running < c.assign
                    && c.running + c.unsent < c.assign + window
            })
        })?;
        let id = self.ring.remove(pos)?;
        self.ring.push_back(id);
        let c = self.conns.get_mut(&id)?;
        let job = c.queue.pop_front()?;
        c.running += 1;
        c.queued_bytes -= job.bytes;
        self.queued_bytes -= job.bytes;
        Some(job)
    }
}

/// The scheduler, shared by connections and box threads.
pub(crate) struct Scheduler {
    state: Mutex<State>,
    work: Condvar,
    boxes: usize,
    window: usize,
    max_queued_per_connection: usize,
    max_queued: usize,
    ctx: RunContext,
}

impl Scheduler {
    /// Adds a connection, with the one box every connection starts with.
    pub fn register(&self, id: ConnId, done: UnboundedSender<JobDone>) -> Arc<ConnCtl> {
        let ctl = Arc::new(ConnCtl::new(id));
        let mut st = lock(&self.state);
        st.conns.insert(
            id,
            ConnSched {
                queue: VecDeque::new(),
                queued_bytes: 0,
                running: 0,
                unsent: 0,
                assign: 1,
                ctl: Arc::clone(&ctl),
                done,
            },
        );
        st.ring.push_back(id);
        if st.shutdown {
            ctl.cancel();
        }
        ctl
    }

    /// Sets how many jobs of `id` may run at once: at least 1, at most the
    /// number of boxes. Returns the value used.
    pub fn set_assign(&self, id: ConnId, count: usize) -> usize {
        let count = count.clamp(1, self.boxes.max(1));
        let mut st = lock(&self.state);
        if let Some(c) = st.conns.get_mut(&id) {
            let grew = count > c.assign;
            c.assign = count;
            drop(st);
            if grew {
                self.work.notify_all();
            }
        }
        count
    }

    /// Queues a job. `bound` is `(held, qlen)`: the connection's jobs held
    /// outside the scheduler and its queue bound; `None` skips the count
    /// check (for jobs that were already counted while held). A refused job
    /// is dropped after the lock is released.
    pub fn submit(&self, job: Job, bound: Option<(usize, usize)>) -> Result<(), Rejected> {
        let mut st = lock(&self.state);
        let server_bytes = st.queued_bytes;
        let Some(c) = st.conns.get_mut(&job.ctl.id) else {
            return Err(Rejected::Closed);
        };
        if let Some((held, qlen)) = bound {
            if c.queue.len() + held >= qlen {
                return Err(Rejected::QueueFull { limit: qlen });
            }
        }
        if c.queued_bytes + job.bytes > self.max_queued_per_connection {
            let limit = self.max_queued_per_connection;
            return Err(Rejected::ConnectionBytes { limit });
        }
        if server_bytes + job.bytes > self.max_queued {
            let limit = self.max_queued;
            return Err(Rejected::ServerBytes { limit });
        }
        c.queued_bytes += job.bytes;
        let bytes = job.bytes;
        c.queue.push_back(job);
        st.queued_bytes += bytes;
        drop(st);
        self.work.notify_one();
        Ok(())
    }

    /// Jobs of `id` waiting for a box.
    pub fn queued(&self, id: ConnId) -> usize {
        lock(&self.state)
            .conns
            .get(&id)
            .map_or(0, |c| c.queue.len())
    }

    /// `n` results of `id` were written to its socket.
    pub fn delivered(&self, id: ConnId, n: usize) {
        if n == 0 {
            return;
        }
        let mut st = lock(&self.state);
        if let Some(c) = st.conns.get_mut(&id) {
            c.unsent = c.unsent.saturating_sub(n);
            let wake = !c.queue.is_empty();
            drop(st);
            if wake {
                self.work.notify_one();
            }
        }
    }

    /// Removes a connection: its queued jobs are dropped, its running ones
    /// killed (their results are discarded when they come back).
    pub fn close(&self, id: ConnId) {
        let removed = {
            let mut st = lock(&self.state);
            let removed = st.conns.remove(&id);
            st.ring.retain(|&c| c != id);
            if let Some(c) = &removed {
                st.queued_bytes -= c.queued_bytes;
            }
            removed
        };
        if let Some(c) = removed {
            c.ctl.cancel();
            // Dropped outside the lock: a queue may hold large inputs.
            drop(c);
        }
    }

    fn next_job(&self) -> Option<Job> {
        let mut st = lock(&self.state);
        loop {
            if st.shutdown {
                return None;
            }
            if let Some(job) = st.pick(self.window) {
                return Some(job);
            }
            st = self
                .work
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Waits up to `d` for shutdown; true if it happened.
    fn wait_shutdown(&self, d: Duration) -> bool {
        let st = lock(&self.state);
        if st.shutdown {
            return true;
        }
        let (st, _) = self
            .work
            .wait_timeout(st, d)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.shutdown
    }

    fn finish(&self, id: ConnId, done: JobDone) {
        let mut st = lock(&self.state);
        if let Some(c) = st.conns.get_mut(&id) {
            c.running = c.running.saturating_sub(1);
            if c.done.send(done).is_ok() {
                c.unsent += 1;
            }
        }
    }

    /// Stops handing out jobs and kills everything running.
    pub fn shutdown(&self) {
        let ctls: Vec<Arc<ConnCtl>> = {
            let mut st = lock(&self.state);
            st.shutdown = true;
            st.conns.values().map(|c| Arc::clone(&c.ctl)).collect()
        };
        for ctl in ctls {
            ctl.cancel();
        }
        self.work.notify_all();
    }
}

/// The box threads. Dropping the pool stops them (after their current
/// job, which is killed); [`Pool::join`] also waits for them.
pub(crate) struct Pool {
    pub scheduler: Arc<Scheduler>,
    threads: Vec<JoinHandle<()>>,
    uids: Vec<u32>,
}

impl Pool {
    /// Opens `boxes` boxes (blocking, a few milliseconds each) and starts a
    /// thread for each.
    pub fn start(
        sandbox: &Sandbox,
        boxes: usize,
        window: usize,
        max_queued_per_connection: usize,
        max_queued: usize,
        ctx: RunContext,
    ) -> Result<Pool, super::JudgeError> {
        let mut opened = Vec::with_capacity(boxes);
        for index in 0..boxes {
            let b = sandbox
                .open_box()
                .map_err(|source| super::JudgeError::Box {
                    index: index + 1,
                    total: boxes,
                    source,
                })?;
            opened.push(b);
        }
        let uids = opened.iter().map(SandboxBox::uid).collect();
        let scheduler = Arc::new(Scheduler {
            state: Mutex::default(),
            work: Condvar::new(),
            boxes,
            window: window.max(1),
            max_queued_per_connection,
            max_queued,
            ctx,
        });
        let mut pool = Pool {
            scheduler,
            threads: Vec::with_capacity(boxes),
            uids,
        };
        for (index, b) in opened.into_iter().enumerate() {
            let scheduler = Arc::clone(&pool.scheduler);
            let sandbox = sandbox.clone();
            let thread = std::thread::Builder::new()
                .name(format!("evaler-box-{index}"))
                .spawn(move || box_thread(&scheduler, &sandbox, b))?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Host uids of the boxes (for checks that nothing survived a run).
    pub fn uids(&self) -> &[u32] {
        &self.uids
    }

    /// Stops the threads and waits for them (blocking).
    pub fn join(mut self) {
        self.scheduler.shutdown();
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.scheduler.shutdown();
    }
}

/// Life of one box: take a job, run it, hand the result over; replace the
/// box if the sandbox failed in a way that may have left it dirty.
fn box_thread(scheduler: &Scheduler, sandbox: &Sandbox, first: SandboxBox) {
    let mut current = Some(first);
    loop {
        let b = match current.as_mut() {
            Some(b) => b,
            None => match sandbox.open_box() {
                Ok(b) => current.insert(b),
                Err(e) => {
                    tracing::error!(error = %e, "cannot reopen a box; retrying in 1 s");
                    if scheduler.wait_shutdown(Duration::from_secs(1)) {
                        return;
                    }
                    continue;
                }
            },
        };
        let Some(job) = scheduler.next_job() else {
            return;
        };
        let conn = job.ctl.id;
        let fallback = job.panic_reply();
        let ctx = &scheduler.ctx;
        let (done, healthy) = match catch_unwind(AssertUnwindSafe(|| execute(b, job, ctx))) {
            Ok(result) => result,
            Err(_) => {
                tracing::error!("a judge job panicked; replacing its box");
                (fallback.into_done(), false)
            }
        };
        if !healthy {
            current = None;
        }
        scheduler.finish(conn, done);
    }
}

/// Runs one job. The flag says whether the box is known to be clean.
fn execute(b: &mut SandboxBox, job: Job, ctx: &RunContext) -> (JobDone, bool) {
    let Job { ctl, work, .. } = job;
    match work {
        Work::Compile(c) => {
            let (done, healthy) = compile::run(b, &ctl, c, ctx);
            (JobDone::Compiled(done), healthy)
        }
        Work::Test(t) => {
            let (response, healthy) = test_run::run(b, &ctl, t, ctx);
            (JobDone::Tested(Box::new(response)), healthy)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    fn scheduler(boxes: usize, window: usize) -> Scheduler {
        Scheduler {
            state: Mutex::default(),
            work: Condvar::new(),
            boxes,
            window,
            max_queued_per_connection: 1000,
            max_queued: 1500,
            ctx: RunContext {
                output_kib: 1,
                file_size_kib: 1,
                max_submission_bytes: 1,
            },
        }
    }

    fn job(ctl: &Arc<ConnCtl>, bytes: usize) -> Job {
        Job {
            ctl: Arc::clone(ctl),
            work: Work::Compile(CompileJob::for_tests(ctl.id as i64)),
            bytes,
        }
    }

    fn pick(s: &Scheduler) -> Option<ConnId> {
        lock(&s.state).pick(s.window).map(|j| j.ctl.id)
    }

    #[test]
    fn round_robin_respects_assign() {
        let s = scheduler(4, 100);
        let (tx, _rx) = unbounded_channel();
        let a = s.register(1, tx.clone());
        let b = s.register(2, tx);
        for _ in 0..10 {
            s.submit(job(&a, 1), Some((0, 100))).unwrap();
        }
        for _ in 0..2 {
            s.submit(job(&b, 1), Some((0, 100))).unwrap();
        }
        assert_eq!(s.set_assign(1, 3), 3);
        assert_eq!(s.set_assign(2, 99), 4, "capped by the boxes");
        // a, b, a, b, a: then b is empty and a is at its Assign count.
        let order: Vec<_> = std::iter::from_fn(|| pick(&s)).collect();
        assert_eq!(order, [1, 2, 1, 2, 1]);
        // A finished job of a frees one of its slots.
        s.finish(1, JobDone::Compiled(CompileJob::for_tests(1).failed("x")));
        assert_eq!(pick(&s), Some(1));
        assert_eq!(pick(&s), None);
    }

    #[test]
    fn unread_results_stop_a_connection_not_others() {
        let s = scheduler(2, 1);
        let (tx, _rx) = unbounded_channel();
        let a = s.register(1, tx.clone());
        let b = s.register(2, tx);
        for _ in 0..5 {
            s.submit(job(&a, 1), None).unwrap();
            s.submit(job(&b, 1), None).unwrap();
        }
        let done = |id| JobDone::Compiled(CompileJob::for_tests(id).failed("x"));
        // Assign 1 + window 1: a may have two results unread, then it stops.
        for _ in 0..2 {
            assert_eq!(pick(&s), Some(1));
            s.finish(1, done(1));
            assert_eq!(pick(&s), Some(2));
            s.finish(2, done(2));
            s.delivered(2, 1);
        }
        assert_eq!(pick(&s), Some(2), "a has unread results, b goes on");
        s.finish(2, done(2));
        s.delivered(2, 1);
        assert_eq!(pick(&s), Some(2));
        s.delivered(1, 2);
        assert_eq!(pick(&s), Some(1));
    }

    #[test]
    fn bounds_and_close() {
        let s = scheduler(1, 10);
        let (tx, _rx) = unbounded_channel();
        let a = s.register(1, tx.clone());
        let b = s.register(2, tx);
        s.submit(job(&a, 10), Some((1, 3))).unwrap();
        assert!(matches!(
            s.submit(job(&a, 10), Some((2, 3))),
            Err(Rejected::QueueFull { limit: 3 })
        ));
        assert!(matches!(
            s.submit(job(&a, 991), Some((0, 10))),
            Err(Rejected::ConnectionBytes { .. })
        ));
        s.submit(job(&a, 900), None).unwrap();
        assert!(matches!(
            s.submit(job(&b, 600), None),
            Err(Rejected::ServerBytes { .. })
        ));
        assert_eq!(s.queued(1), 2);
        s.close(1);
        assert!(a.is_cancelled());
        assert_eq!(lock(&s.state).queued_bytes, 0);
        s.submit(job(&b, 600), None).unwrap();
        assert!(matches!(s.submit(job(&a, 1), None), Err(Rejected::Closed)));
        assert_eq!(pick(&s), Some(2));
    }
}
