//! `request_module()`: the modprobe path, the name limit, the concurrency limiter of each
//! era, the usermode helper and its raw wait status; modkit merges identical requests.

use crate::diag::DiagKind;
use crate::errno::{Errno, Outcome};
use crate::kernel::{InFlight, Kernel, Time, MODPROBE_PATHS, SEC};
use crate::modprobe::Modprobe;
use crate::policy::{KmodLimiter, KMOD_BUSY_TIMEOUT_SECS, MAX_KMOD_CONCURRENT, MODULE_NAME_LEN};
use crate::proc::{wait, Proc, Resume, Step};
use crate::waits::{TaskId, WaitKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    MergeWait(u64),
    Acquire,
    SlotWait,
    Exec,
    ChildWait,
}

/// A request_module call.
#[derive(Debug, Clone)]
pub struct Request {
    /// The name or alias asked for.
    pub name: String,
    /// false: request_module_nowait (returns once modprobe is started).
    pub wait: bool,
    phase: Phase,
    leader_gen: Option<u64>,
    deadline: Option<Time>,
    slot: bool,
    child: Option<TaskId>,
}

impl Request {
    /// A request for `name`.
    pub fn new(name: &str, wait: bool) -> Self {
        Request {
            name: name.to_string(),
            wait,
            phase: Phase::Start,
            leader_gen: None,
            deadline: None,
            slot: false,
            child: None,
        }
    }

    fn finish(&mut self, k: &mut Kernel, o: Outcome) -> Step {
        if self.slot {
            self.slot = false;
            release_slot(k);
        }
        if let Some(gen) = self.leader_gen.take() {
            k.results.insert(gen, o);
            k.inflight_requests.remove(&self.name);
            k.wakes.push(WaitKey::Request(self.name.clone()));
        }
        Step::Done(o)
    }

    fn busy_message(&self, k: &mut Kernel) {
        k.printk_ratelimited("kmod_busy", "__request_module", format!(
            "request_module: modprobe {} cannot be processed, kmod busy with {} threads for more than {} seconds now",
            self.name, MAX_KMOD_CONCURRENT, KMOD_BUSY_TIMEOUT_SECS
        ));
        let msg = format!(
            "request_module({}) found all {} slots busy for {} s",
            self.name, MAX_KMOD_CONCURRENT, KMOD_BUSY_TIMEOUT_SECS
        );
        k.diagnose(DiagKind::LimitReached, None, msg, Vec::new(), None);
    }

    fn take_slot(&mut self, k: &mut Kernel) {
        k.kmod.in_use += 1;
        k.kmod.peak = k.kmod.peak.max(k.kmod.in_use);
        self.slot = true;
    }

    /// Whether the wait the request is parked in ends on SIGKILL (crate::signal).
    pub fn killable_wait(&self, k: &Kernel) -> bool {
        match self.phase {
            Phase::SlotWait => k.policy.kmod_slot_wait_killable(),
            // call_modprobe(): UMH_KILLABLE; modkit's merged request.
            Phase::ChildWait | Phase::MergeWait(_) => true,
            _ => false,
        }
    }

    /// Whether the wait the request is parked in can be refused (ended with EDEADLK)
    /// cleanly: a merged request, or the wait for its modprobe.
    pub(crate) fn refusable_wait(&self) -> bool {
        matches!(self.phase, Phase::MergeWait(_) | Phase::ChildWait)
    }

    /// The wait was refused to break a pin cycle (crate::pinwait): it ends as a killed
    /// one does, with EDEADLK.
    pub(crate) fn refused(&mut self, k: &mut Kernel, task: TaskId) -> Step {
        self.end_wait(k, task, Errno::EDEADLK, Errno::EDEADLK)
    }

    /// SIGKILL ended the wait.
    fn killed(&mut self, k: &mut Kernel, task: TaskId) -> Step {
        let modkit = k.policy.is_modkit();
        let e = if modkit {
            Errno::EINTR
        } else {
            Errno::ERESTARTSYS
        };
        self.end_wait(k, task, e, Errno::EINTR)
    }

    /// Ends the wait the request is parked in with `e` (`merged`: for a merged request).
    fn end_wait(&mut self, k: &mut Kernel, task: TaskId, e: Errno, merged: Errno) -> Step {
        let modkit = k.policy.is_modkit();
        match self.phase {
            Phase::SlotWait => {
                k.kmod.queue.retain(|&t| t != task);
                if !modkit && e == Errno::ERESTARTSYS {
                    // 4.13 – 6.3 __request_module(), after wait_event_killable_timeout().
                    k.printk_ratelimited(
                        "kmod_sigkill",
                        "__request_module",
                        format!(
                            "request_module: sigkill sent for modprobe {}, giving up",
                            self.name
                        ),
                    );
                }
                self.finish(k, Outcome::Err(e))
            }
            Phase::ChildWait => {
                // call_usermodehelper_exec(): wait_for_completion_killable() returned
                // -ERESTARTSYS; the modprobe runs on, nobody reads its status.
                if let Some(child) = self.child {
                    k.unwatch_task(child);
                    k.task_exits.remove(&child);
                }
                self.finish(k, Outcome::Err(e))
            }
            Phase::MergeWait(_) => Step::Done(Outcome::Err(merged)),
            _ => {
                debug_assert!(false, "request killed in {:?}", self.phase);
                self.finish(k, Outcome::Err(e))
            }
        }
    }

    /// Advances the request.
    pub fn poll(&mut self, k: &mut Kernel, task: TaskId, r: Resume) -> Step {
        if r == Resume::Killed {
            return self.killed(k, task);
        }
        loop {
            match self.phase {
                Phase::Start => {
                    if k.modprobe_path.is_empty() {
                        // d7d27cfc5cf0 (5.7 and its backports); before it, 0.
                        return Step::Done(if k.policy.autoload_disabled_is_error() {
                            Outcome::Err(Errno::ENOENT)
                        } else {
                            Outcome::Ok
                        });
                    }
                    if self.name.len() >= MODULE_NAME_LEN {
                        return Step::Done(Outcome::Err(Errno::ENAMETOOLONG));
                    }
                    if k.policy.is_modkit() {
                        if let Some(f) = k.inflight_requests.get(&self.name).copied() {
                            if !self.wait {
                                // request_module_nowait: the identical request in flight
                                // covers it; it does not wait (issue 9, item 7).
                                return Step::Done(Outcome::Ok);
                            }
                            let reason = format!("request_module({})", self.name);
                            if k.refuse_cycle(task, Some(f.task), &reason) {
                                return Step::Done(Outcome::Err(Errno::EDEADLK));
                            }
                            self.phase = Phase::MergeWait(f.gen);
                            return wait(
                                WaitKey::Request(self.name.clone()),
                                reason,
                                Some(f.task),
                                None,
                            );
                        }
                        let gen = k.new_gen();
                        k.inflight_requests
                            .insert(self.name.clone(), InFlight { task, gen });
                        self.leader_gen = Some(gen);
                    }
                    self.phase = Phase::Acquire;
                }
                Phase::MergeWait(gen) => {
                    if let Some(&o) = k.results.get(&gen) {
                        return Step::Done(o);
                    }
                    let target = k.inflight_requests.get(&self.name).map(|f| f.task);
                    let reason = format!("request_module({})", self.name);
                    return wait(WaitKey::Request(self.name.clone()), reason, target, None);
                }
                Phase::Acquire => match k.policy.kmod_limiter() {
                    KmodLimiter::Immediate => {
                        if k.kmod.in_use >= MAX_KMOD_CONCURRENT {
                            if k.kmod.runaway_msgs < 5 {
                                k.kmod.runaway_msgs += 1;
                                k.printk(format!(
                                    "request_module: runaway loop modprobe {}",
                                    self.name
                                ));
                            }
                            let msg = format!(
                                "request_module({}) over the limit of {} concurrent requests",
                                self.name, MAX_KMOD_CONCURRENT
                            );
                            k.diagnose(DiagKind::LimitReached, None, msg, Vec::new(), None);
                            return self.finish(k, Outcome::Err(Errno::ENOMEM));
                        }
                        self.take_slot(k);
                        self.phase = Phase::Exec;
                    }
                    KmodLimiter::Throttle => {
                        if k.kmod.in_use < MAX_KMOD_CONCURRENT {
                            self.take_slot(k);
                            self.phase = Phase::Exec;
                            continue;
                        }
                        k.printk_ratelimited("kmod_throttle", "__request_module", format!(
                            "request_module: kmod_concurrent_max (0) close to 0 (max_modprobes: {}), for module {}, throttling...",
                            MAX_KMOD_CONCURRENT, self.name
                        ));
                        self.deadline = Some(k.now + KMOD_BUSY_TIMEOUT_SECS * SEC);
                        self.phase = Phase::SlotWait;
                        return self.slot_wait();
                    }
                    KmodLimiter::Semaphore => {
                        if k.kmod.in_use < MAX_KMOD_CONCURRENT && k.kmod.queue.is_empty() {
                            self.take_slot(k);
                            self.phase = Phase::Exec;
                            continue;
                        }
                        k.kmod.queue.push_back(task);
                        self.deadline = Some(k.now + KMOD_BUSY_TIMEOUT_SECS * SEC);
                        self.phase = Phase::SlotWait;
                        return self.slot_wait();
                    }
                },
                Phase::SlotWait => {
                    let limiter = k.policy.kmod_limiter();
                    if limiter == KmodLimiter::Semaphore && k.kmod.granted.remove(&task) {
                        // up() handed us its slot: it stays counted in `in_use`.
                        self.slot = true;
                        self.phase = Phase::Exec;
                        continue;
                    }
                    if limiter == KmodLimiter::Throttle && k.kmod.in_use < MAX_KMOD_CONCURRENT {
                        self.take_slot(k);
                        self.phase = Phase::Exec;
                        continue;
                    }
                    if r == Resume::TimedOut {
                        k.kmod.queue.retain(|&t| t != task);
                        self.busy_message(k);
                        return self.finish(k, Outcome::Err(Errno::ETIME));
                    }
                    return self.slot_wait();
                }
                Phase::Exec => match r {
                    Resume::Spawned(child) => {
                        self.child = Some(child);
                        if !self.wait {
                            return self.finish(k, Outcome::Ok);
                        }
                        k.watch_task(child);
                        self.phase = Phase::ChildWait;
                        continue;
                    }
                    _ => {
                        if !MODPROBE_PATHS.contains(&k.modprobe_path.as_str()) {
                            return self.finish(k, Outcome::Err(Errno::ENOENT));
                        }
                        return Step::Spawn {
                            proc: Box::new(Proc::Modprobe(Modprobe::new(&self.name, true))),
                            label: format!("{} -q -- {}", k.modprobe_path, self.name),
                        };
                    }
                },
                Phase::ChildWait => {
                    let child = self.child.expect("spawned");
                    if let Some(o) = k.task_exits.remove(&child) {
                        let result = if k.policy.request_returns_status() {
                            match o {
                                Outcome::Ok => Outcome::Ok,
                                // The wait status of a process killed by SIGKILL.
                                Outcome::Killed => Outcome::Status(crate::signal::SIGKILL),
                                _ => Outcome::Status(256),
                            }
                        } else if o == Outcome::Killed {
                            Outcome::Err(Errno::EINTR)
                        } else {
                            o
                        };
                        return self.finish(k, result);
                    }
                    let reason = format!("request_module({})", self.name);
                    return wait(WaitKey::Task(child), reason, Some(child), None);
                }
            }
        }
    }

    fn slot_wait(&self) -> Step {
        wait(
            WaitKey::KmodSlot,
            format!("request_module({}) waits for a kmod slot", self.name),
            None,
            self.deadline,
        )
    }
}

/// Releases one request_module slot (`up()` hands it to the first waiter in the
/// semaphore era).
fn release_slot(k: &mut Kernel) {
    match k.policy.kmod_limiter() {
        KmodLimiter::Semaphore => {
            if let Some(t) = k.kmod.queue.pop_front() {
                k.kmod.granted.insert(t);
            } else {
                k.kmod.in_use -= 1;
            }
        }
        _ => k.kmod.in_use -= 1,
    }
    k.wakes.push(WaitKey::KmodSlot);
}
