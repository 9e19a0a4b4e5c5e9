//! The host driver: the core behind a `Mutex` with a `Condvar`, as the kernel keeps
//! `module_mutex` and `module_wq`. Procedures are polled under the lock; module code (init
//! steps, undos) always runs outside it; waits use the deadline the core chose.
//!
//! Two clocks: [`Clock::Real`] (native programs: deadlines are real instants) and
//! [`Clock::Virtual`] (scenarios on real threads: time advances to the next deadline only
//! when every thread is parked, so a 30 s symbol wait costs nothing and a race that the
//! scenario makes simultaneous stays simultaneous).

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use modkit_core::{
    Body, BodyResult, DiagKind, Errno, Kernel, ModId, Outcome, Proc, Resume, Step, TaskId, Time,
    WaitInfo, WaitKey,
};

use crate::ctx::InitCtx;
use crate::sync::{thread, Condvar, Mutex, MutexGuard};

/// Module code the host runs: native closures, or code a driver supplies (such as
/// modkit-hostdriver's interpreted scenario actions, through [`crate::driver`]).
pub trait ModuleCode: Send + Sync {
    /// Runs init step `step`.
    fn init(&self, ctx: &mut InitCtx<'_>, step: usize) -> BodyResult;
    /// Runs the undo of step `step`.
    fn undo(&self, ctx: &mut InitCtx<'_>, step: usize);
    /// The name of step `step`, for messages.
    fn step_name(&self, step: usize) -> String;
}

/// HostHandle ids (crate::threadtask).
static NEXT_HOST_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl State {
    /// A fresh task id (not counted as runnable).
    pub(crate) fn alloc_task_id(&mut self) -> TaskId {
        let id = self.next_task;
        self.next_task += 1;
        id
    }
}

/// How the host tells time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Real time: a 30 s wait takes 30 s.
    Real,
    /// Virtual time that jumps to the next deadline whenever every thread is parked.
    Virtual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitStatus {
    Waiting,
    Woken,
    TimedOut,
    /// SIGKILL ended a killable wait (crate::signal).
    Killed,
}

#[derive(Debug, Clone)]
pub(crate) struct Parked {
    key: WaitKey,
    deadline: Option<Time>,
    pub(crate) status: WaitStatus,
    /// A fatal signal ends this wait.
    pub(crate) killable: bool,
    /// The wait has no deadline of its own.
    pub(crate) unbounded: bool,
    /// When the wait began (host clock, ns).
    pub(crate) since: Time,
    /// The watchdog has reported it.
    pub(crate) reported: bool,
}

/// Everything behind the host's mutex.
pub(crate) struct State {
    pub(crate) k: Kernel,
    pub(crate) code: Vec<Option<Arc<dyn ModuleCode>>>,
    /// Exported values by symbol name (the symbol table itself is the core's).
    pub(crate) values: HashMap<String, Arc<dyn Any + Send + Sync>>,
    next_task: TaskId,
    pub(crate) parked: BTreeMap<TaskId, Parked>,
    /// Threads that are running (not parked).
    pub(crate) runnable: usize,
    /// Tasks that a kill event can name (crate::signal): events' threads once started
    /// (by event id), the modprobes request_module started (by name).
    pub(crate) killable_tasks: crate::signal::Targets,
    /// Virtual mode: nothing can move any more.
    pub(crate) stalled: bool,
    /// Virtual mode: the clock does not go past this instant; a run that would is stopped
    /// as `stalled` with `horizon_hit` set (scenario runs bound a livelock this way).
    pub(crate) horizon: Option<Time>,
    /// The run was stopped at `horizon`.
    pub(crate) horizon_hit: bool,
    vclock: Time,
    /// A driver's own state, kept under the host's lock (crate::driver::Driver::engine).
    pub(crate) ext: Option<Box<dyn Any + Send>>,
    /// [`HostHandle::shutdown`] has run: code and values are gone, loads are refused.
    pub(crate) shut_down: bool,
    /// The owning [`crate::Host`] was dropped: loads are refused while everything is
    /// unloaded (crate::lifecycle).
    pub(crate) closing: bool,
    /// Deadlines and the watchdog (crate::watchdog).
    pub(crate) guard: crate::watchdog::Guard,
    /// OS threads the host has started and that have not ended (see [`thread_limit`]).
    pub(crate) threads_live: usize,
    /// The device model (crate::probe).
    pub(crate) devs: crate::probe::Devices,
    /// A thread could not be started because [`thread_limit`] threads were live.
    pub(crate) thread_limit_hit: bool,
    /// Devices' state changes on the virtual clock (crate::history).
    pub(crate) history: crate::history::DevHistory,
}

pub(crate) struct Shared {
    /// Distinguishes hosts in thread-local records (crate::threadtask).
    pub(crate) id: u64,
    pub(crate) state: Mutex<State>,
    pub(crate) cv: Condvar,
    start: Instant,
    pub(crate) clock: Clock,
    /// Plugins (crate::plugin): the directory and the registered shared objects.
    pub(crate) plugins: crate::plugin::Plugins,
}

/// A module host: the registry and the loader, shared by every thread of the program.
/// Cloning gives another handle to the same host.
#[derive(Clone)]
pub struct HostHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for HostHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostHandle")
            .field("clock", &self.shared.clock)
            .finish_non_exhaustive()
    }
}

impl HostHandle {
    pub(crate) fn from_kernel(mut k: Kernel, clock: Clock) -> HostHandle {
        k.observer = Some(crate::trace::emit);
        let n = k.db.len();
        let devs = crate::probe::Devices::new(k.policy);
        HostHandle {
            shared: Arc::new(Shared {
                id: NEXT_HOST_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                state: Mutex::new(State {
                    k,
                    code: vec![None; n],
                    values: HashMap::new(),
                    next_task: 1,
                    parked: BTreeMap::new(),
                    killable_tasks: Default::default(),
                    runnable: 0,
                    stalled: false,
                    horizon: None,
                    horizon_hit: false,
                    vclock: 0,
                    ext: None,
                    shut_down: false,
                    closing: false,
                    guard: Default::default(),
                    threads_live: 0,
                    thread_limit_hit: false,
                    history: Default::default(),
                    devs,
                }),
                cv: Condvar::new(),
                start: Instant::now(),
                clock,
                plugins: Default::default(),
            }),
        }
    }

    /// Locks the state; a panic elsewhere never poisons the host (module code runs
    /// outside the lock, and the core is only changed by non-panicking code).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn now(&self, st: &State) -> Time {
        match self.shared.clock {
            Clock::Real => {
                let t = self.shared.start.elapsed().as_nanos() as Time;
                t.max(st.k.now)
            }
            Clock::Virtual => st.vclock,
        }
    }

    /// Makes the kernel's clock current.
    pub(crate) fn tick(&self, st: &mut State) {
        st.k.now = self.now(st);
    }

    /// Registers a new task that is running on the calling thread or one about to start.
    pub(crate) fn new_task(&self, st: &mut State, label: &str) -> TaskId {
        let id = st.alloc_task_id();
        st.k.waits.set_label(id, label.to_string());
        st.runnable += 1;
        id
    }

    /// Delivers the core's wakeups: every task parked on a woken key becomes runnable at
    /// once (under the lock), so the virtual clock never jumps past a pending wakeup.
    pub(crate) fn deliver(&self, st: &mut State) {
        if st.k.wakes.is_empty() {
            return;
        }
        let mut keys = std::mem::take(&mut st.k.wakes);
        if keys.contains(&WaitKey::ModuleWq) {
            // modkit's probe wait (crate::probewait).
            self.module_wq_woken(st, &mut keys);
            keys.append(&mut st.k.wakes);
        }
        let mut any = false;
        let State {
            parked, runnable, ..
        } = st;
        for p in parked.values_mut() {
            if p.status == WaitStatus::Waiting && keys.contains(&p.key) {
                p.status = WaitStatus::Woken;
                *runnable += 1;
                any = true;
            }
        }
        if any {
            self.shared.cv.notify_all();
        }
    }

    /// Virtual clock: when nothing runs, jump to the earliest deadline, or declare a stall.
    fn advance(&self, st: &mut State) {
        if self.shared.clock != Clock::Virtual || st.runnable > 0 || st.stalled {
            return;
        }
        // Sampled before the clock moves (crate::history).
        let now = st.vclock;
        crate::history::note(st, now);
        let waiting = st
            .parked
            .values()
            .filter(|p| p.status == WaitStatus::Waiting);
        let next = waiting.clone().filter_map(|p| p.deadline).min();
        match next {
            Some(t) if st.horizon.is_some_and(|h| t > h) => {
                st.stalled = true;
                st.horizon_hit = true;
            }
            Some(t) => {
                st.vclock = st.vclock.max(t);
                let now = st.vclock;
                let State {
                    parked, runnable, ..
                } = st;
                for p in parked.values_mut() {
                    if p.status == WaitStatus::Waiting && p.deadline.is_some_and(|d| d <= now) {
                        p.status = WaitStatus::TimedOut;
                        *runnable += 1;
                    }
                }
            }
            None => {
                // An abandoned remove callback's wait is no hang of the run
                // (crate::unbind).
                let hung = st.parked.iter().any(|(&t, p)| {
                    p.status == WaitStatus::Waiting && !crate::unbind::detached(st, t)
                });
                if hung {
                    st.stalled = true;
                }
            }
        }
        self.shared.cv.notify_all();
    }

    /// Parks `task` until its key is woken or its deadline passes. Returns `None` when the
    /// run stalled (virtual clock only).
    pub(crate) fn park<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        task: TaskId,
        info: WaitInfo,
        killable: bool,
    ) -> (MutexGuard<'a, State>, Option<Resume>) {
        if killable && st.k.fatal_signal_pending(task) {
            return (st, Some(Resume::Killed));
        }
        // A host operation's deadline (crate::watchdog) ends the killable waits of its task.
        let op_deadline = if killable && self.shared.clock == Clock::Real {
            st.guard.deadline_of(task)
        } else {
            None
        };
        if op_deadline.is_some_and(|d| self.now(&st) >= d) {
            self.expire(&mut st, task, &info);
            return (st, Some(Resume::Killed));
        }
        let since = self.now(&st);
        st.parked.insert(
            task,
            Parked {
                key: info.key.clone(),
                deadline: info.deadline,
                status: WaitStatus::Waiting,
                killable,
                unbounded: info.deadline.is_none(),
                since,
                reported: false,
            },
        );
        let wait_info = info.clone();
        let deadline = info.deadline;
        st.k.waits.begin(task, info);
        st.runnable -= 1;
        self.advance(&mut st);
        let resume = loop {
            let status = st.parked.get(&task).map(|p| p.status);
            match status {
                Some(WaitStatus::Woken) => break Some(Resume::Woken),
                Some(WaitStatus::TimedOut) => break Some(Resume::TimedOut),
                Some(WaitStatus::Killed) => break Some(Resume::Killed),
                _ => {}
            }
            if st.stalled || crate::unbind::let_go(&st, task) {
                break None;
            }
            let wake_at = match (deadline, op_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match (self.shared.clock, wake_at) {
                (Clock::Real, Some(d)) => {
                    let now = self.now(&st);
                    let op_first = match (op_deadline, deadline) {
                        (Some(o), Some(w)) => o < w,
                        (Some(_), None) => true,
                        _ => false,
                    };
                    if op_first && op_deadline.is_some_and(|o| now >= o) {
                        // The operation's deadline came first: end the wait as SIGKILL
                        // would, and say which chain it was stuck in.
                        self.expire(&mut st, task, &wait_info);
                        st.runnable += 1;
                        break Some(Resume::Killed);
                    }
                    if now >= d {
                        if let Some(p) = st.parked.get_mut(&task) {
                            p.status = WaitStatus::TimedOut;
                        }
                        st.runnable += 1;
                        break Some(Resume::TimedOut);
                    }
                    let dur = Duration::from_nanos(d - now);
                    st = self
                        .shared
                        .cv
                        .wait_timeout(st, dur)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                _ => st = self.shared.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
            }
        };
        st.parked.remove(&task);
        if resume.is_some() {
            // A stalled wait stays in the wait-for graph for the stall report.
            st.k.waits.end(task);
        }
        if resume.is_none() {
            // Stalled: count ourselves runnable again so the books stay balanced.
            st.runnable += 1;
        }
        self.tick(&mut st);
        (st, resume)
    }

    /// Ends a task: records its exit, wakes its waiters. Returns the exit as others see
    /// it ([`Outcome::Killed`] for a task sent SIGKILL).
    pub(crate) fn finish_task(
        &self,
        st: &mut State,
        task: TaskId,
        o: Option<Outcome>,
    ) -> Option<Outcome> {
        st.killable_tasks.forget(task);
        crate::probewait::task_ended(st, task);
        let o = o.map(|o| st.k.exit_outcome(task, o));
        if let Some(o) = o {
            st.k.task_exit(task, o);
        }
        st.runnable -= 1;
        self.deliver(st);
        self.advance(st);
        self.shared.cv.notify_all();
        o
    }

    /// Wakes every thread waiting on the host's condition variable.
    pub(crate) fn notify(&self) {
        self.shared.cv.notify_all();
    }

    /// Runs a procedure to its end on the calling thread as `task`. `None`: stalled.
    pub(crate) fn drive(&self, task: TaskId, proc: Proc) -> Option<Outcome> {
        let _scope = crate::trace::TaskScope::enter(task);
        let mut st = self.lock();
        crate::probewait::proc_pushed(&mut st, task, &proc);
        let mut stack = vec![proc];
        let mut resume = Resume::Start;
        loop {
            if st.stalled {
                return None;
            }
            self.tick(&mut st);
            let top = stack.last_mut().expect("non-empty");
            let step = top.poll(&mut st.k, task, resume);
            let killable = matches!(step, Step::Wait(_)) && top.killable_wait(&st.k);
            self.deliver(&mut st);
            match step {
                Step::Done(o) => {
                    // do_init_module(): async_synchronize_full() after LIVE
                    // (crate::asyncprobe).
                    let popped = stack.pop();
                    crate::probewait::proc_popped(&mut st, task);
                    if let Some(Proc::Load(l)) = popped {
                        let (g, go_on) = self.async_synchronize_after_load(st, task, &l, o);
                        st = g;
                        if !go_on {
                            return None;
                        }
                    }
                    if stack.is_empty() {
                        return Some(o);
                    }
                    resume = Resume::Child(o);
                }
                Step::Call(p) => {
                    crate::probewait::proc_pushed(&mut st, task, &p);
                    stack.push(*p);
                    resume = Resume::Start;
                }
                Step::Wait(info) => {
                    let (g, r) = self.park(st, task, info, killable);
                    st = g;
                    resume = r?;
                }
                Step::Run(body) => {
                    let (m, step, init) = match body {
                        Body::Init { module, step } => (module, step, true),
                        Body::Undo { module, step } => (module, step, false),
                    };
                    let code = st.code.get(m).cloned().flatten();
                    drop(st);
                    let r = match code {
                        Some(code) => self.run_body(task, m, step, init, code),
                        None => BodyResult::Ok,
                    };
                    st = self.lock();
                    resume = Resume::Body(r);
                }
                Step::Spawn { proc, label } => {
                    let child = self.new_task(&mut st, &label);
                    if let Proc::Modprobe(m) = proc.as_ref() {
                        if m.quiet {
                            st.killable_tasks.add_modprobe(child, &m.target);
                        }
                    }
                    let h = self.clone();
                    let spawned = match self.reserve_thread(&mut st) {
                        Some(slot) => thread::Builder::new()
                            .name(format!("modkit-{child}"))
                            .spawn(move || {
                                let _slot = slot;
                                h.run_task(child, *proc)
                            })
                            .map(drop),
                        None => Err(std::io::Error::other("thread limit")),
                    };
                    if spawned.is_err() {
                        st.runnable -= 1;
                        st.k.task_exit(child, Outcome::Err(Errno::ENOMEM));
                    }
                    resume = Resume::Spawned(child);
                }
            }
        }
    }

    /// Reserves one of the [`thread_limit`] OS threads for a thread about to start; the
    /// slot is given back when the returned guard drops (move it into the thread). `None`
    /// at the limit: the caller treats it as a failed spawn, and the limit is recorded
    /// (`thread_limit_hit`) so that a scenario run can report it.
    pub(crate) fn reserve_thread(&self, st: &mut State) -> Option<ThreadSlot> {
        if st.threads_live >= thread_limit() {
            if !st.thread_limit_hit {
                tracing::warn!(
                    limit = thread_limit(),
                    "the host is at its limit of OS threads: a thread was not started"
                );
            }
            st.thread_limit_hit = true;
            return None;
        }
        st.threads_live += 1;
        Some(ThreadSlot { host: self.clone() })
    }

    /// A thread's whole life: drive the procedure, then end the task.
    pub(crate) fn run_task(&self, task: TaskId, proc: Proc) -> Option<Outcome> {
        let o = self.drive(task, proc);
        let mut st = self.lock();
        self.finish_task(&mut st, task, o);
        o
    }

    fn run_body(
        &self,
        task: TaskId,
        m: ModId,
        step: usize,
        init: bool,
        code: Arc<dyn ModuleCode>,
    ) -> BodyResult {
        let mut ctx = InitCtx::new(self, task, m);
        let outer = BODY_TASK.with(|c| c.replace(Some(task)));
        let r = catch_unwind(AssertUnwindSafe(|| {
            if init {
                code.init(&mut ctx, step)
            } else {
                code.undo(&mut ctx, step);
                BodyResult::Ok
            }
        }));
        BODY_TASK.with(|c| c.set(outer));
        match r {
            Ok(r) => r,
            Err(payload) => {
                let msg = panic_message(payload.as_ref());
                // A payload whose Drop panics would unwind out of here into the caller and
                // leave the module COMING with its reference: drop it under a second catch,
                // and leak the second payload rather than risk a third panic.
                if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                    std::mem::forget(again);
                }
                let mut st = self.lock();
                self.tick(&mut st);
                let name = st.k.name(m).to_string();
                let what = if init { "init step" } else { "undo of step" };
                let line = format!("{name}: {what} {} panicked: {msg}", code.step_name(step));
                st.k.printk(line.clone());
                let hint =
                    Some("the step fails with EFAULT; the completed steps are undone".into());
                st.k.diagnose(DiagKind::ModulePanic, Some(m), line, Vec::new(), hint);
                if init {
                    BodyResult::Fail(Errno::EFAULT)
                } else {
                    BodyResult::Ok
                }
            }
        }
    }

    /// Parks the calling task on a completion or a timer (scenario actions); `killable`:
    /// SIGKILL ends the wait.
    pub(crate) fn wait_on(
        &self,
        task: TaskId,
        key: WaitKey,
        reason: String,
        deadline: Option<Time>,
        killable: bool,
    ) -> Option<Resume> {
        self.wait_on_unless(task, key, reason, deadline, killable, |_| false)
            .unwrap_or(None)
    }

    /// As [`HostHandle::wait_on`], but `Err(())` without waiting when `done` holds: the check and
    /// the wait are one step under the lock, so a wake between them cannot be lost.
    pub(crate) fn wait_on_unless(
        &self,
        task: TaskId,
        key: WaitKey,
        reason: String,
        deadline: Option<Time>,
        killable: bool,
        done: impl Fn(&State) -> bool,
    ) -> Result<Option<Resume>, ()> {
        let mut st = self.lock();
        if done(&st) {
            return Err(());
        }
        self.tick(&mut st);
        let deadline = deadline.map(|d| d.max(st.k.now));
        let info = WaitInfo {
            key,
            reason,
            target: None,
            deadline,
        };
        let (_g, r) = self.park(st, task, info, killable);
        Ok(r)
    }

    /// Adds (or removes) a runnable token: a scenario's setup holds one while it spawns
    /// its threads so that the clock cannot move before all of them are counted.
    pub(crate) fn hold(&self, on: bool) {
        let mut st = self.lock();
        if on {
            st.runnable += 1;
        } else {
            st.runnable -= 1;
            self.advance(&mut st);
        }
    }

    /// Waits until no thread runs and nothing is parked (or the run stalled).
    pub(crate) fn wait_idle(&self) {
        let mut st = self.lock();
        // Abandoned remove callbacks parked for ever do not keep the run going.
        let idle = |st: &State| {
            st.parked.iter().all(|(&t, p)| {
                p.status == WaitStatus::Waiting
                    && p.deadline.is_none()
                    && crate::unbind::detached(st, t)
            })
        };
        while !(st.runnable == 0 && (idle(&st) || st.stalled)) {
            st = self.shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The parked tasks (for a stall report).
    pub(crate) fn take_kernel(&self) -> Kernel {
        let mut st = self.lock();
        let db = modkit_core::ModuleDb::new(Vec::new()).expect("empty");
        let empty = Kernel::new(db, st.k.policy);
        std::mem::replace(&mut st.k, empty)
    }

    /// The virtual clock (scenario mode).
    pub(crate) fn vclock(&self) -> Time {
        self.lock().vclock
    }

    /// The current time of the host's clock (virtual ns).
    pub fn now_ns(&self) -> u64 {
        let st = self.lock();
        self.now(&st)
    }
}

/// The most OS threads a host runs at once: every scenario actor and every modprobe that
/// `request_module` starts is a thread, and each one costs the process about four memory
/// mappings (stack, guard page, signal stack and its guard). Past the kernel's
/// `vm.max_map_count` (65,530 by default) the standard library cannot set up a new thread's
/// guard stack and aborts the whole process, so the host stops well short of it:
/// [`HOST_THREAD_CAP`], or `vm.max_map_count / 5` when that is lower.
pub fn thread_limit() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let maps = std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(65_530);
        HOST_THREAD_CAP.min(maps / 5).max(64)
    })
}

/// The cap of [`thread_limit`] (on a system with the default `vm.max_map_count`, the
/// limit itself).
pub const HOST_THREAD_CAP: usize = 10_000;

/// One of the host's [`thread_limit`] OS threads, given back on drop.
pub struct ThreadSlot {
    host: HostHandle,
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        let mut st = self.host.lock();
        st.threads_live -= 1;
    }
}

pub(crate) fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

crate::sync::thread_local! {
    /// The task whose module body (init or undo step) this thread is running, if any: an
    /// operation on the host started from inside a body (through the init context or a
    /// captured `HostHandle`) is a wait of that task, visible to the cycle check.
    static BODY_TASK: std::cell::Cell<Option<TaskId>> = const { std::cell::Cell::new(None) };
}

/// The task whose module body the calling thread runs, if any.
pub(crate) fn body_task() -> Option<TaskId> {
    BODY_TASK.with(|c| c.get())
}

/// Sets the task whose module body the calling thread runs (a driver's probe or remove,
/// crate::probe); returns the previous one.
pub(crate) fn set_body_task(t: Option<TaskId>) -> Option<TaskId> {
    BODY_TASK.with(|c| c.replace(t))
}
