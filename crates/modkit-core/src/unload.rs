//! `delete_module()`: the unload rules, the exit table, and modkit's waiting rmmod.

use crate::diag::DiagKind;
use crate::errno::{Errno, Outcome};
use crate::kernel::{Kernel, ModId, ModState, Time};
use crate::proc::{wait, Resume, Step};
use crate::waits::{TaskId, WaitKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    PinWait,
    Exit,
}

/// An unload.
#[derive(Debug, Clone)]
pub struct Unload {
    /// The name asked for.
    pub name: String,
    /// `rmmod -f` (O_TRUNC).
    pub force: bool,
    /// modkit: wait for pins to drop instead of failing.
    pub wait: bool,
    /// modkit: how long to wait for pins (None: no limit).
    pub timeout: Option<Time>,
    phase: Phase,
    module: Option<ModId>,
    deadline: Option<Time>,
    step: usize,
}

impl Unload {
    /// An unload of `name`.
    pub fn new(name: &str, force: bool, wait: bool, timeout: Option<Time>) -> Self {
        Unload {
            name: name.to_string(),
            force,
            wait,
            timeout,
            phase: Phase::Start,
            module: None,
            deadline: None,
            step: 0,
        }
    }

    fn in_use(&self, k: &mut Kernel, m: ModId) -> Step {
        let holders = k.holders(m);
        let pins = k.pins_of(m);
        let name = k.name(m).to_string();
        let mut parts = Vec::new();
        if !holders.is_empty() {
            parts.push(format!("used by {}", holders.join(", ")));
        }
        if !pins.is_empty() {
            parts.push(format!("pinned by {}", pins.join(", ")));
        }
        let refs = k.instances[m].as_ref().map(|i| i.refcount).unwrap_or(0);
        if parts.is_empty() {
            parts.push(format!("refcount {refs}"));
        }
        let msg = format!("rmmod {name} refused: {}", parts.join("; "));
        let hint = if !holders.is_empty() {
            Some(format!("unload {} first", holders.join(", ")))
        } else if !k.policy.is_modkit() {
            // delete_module() has not waited for references since 3.13 (the kernel's
            // O_NONBLOCK-less wait was removed): waiting is modkit's, not this kernel's.
            let ignored = if self.wait {
                format!(
                    " (wait = true has no effect under {}: the kernel never waits for references)",
                    k.policy
                )
            } else {
                String::new()
            };
            Some(format!(
                "close what pins {name} first, then retry the rmmod{ignored}"
            ))
        } else if self.wait {
            // It waited already and gave up: only a longer wait or a release helps.
            Some(format!(
                "close what pins {name} first, or give rmmod a longer timeout"
            ))
        } else {
            Some(format!(
                "close what pins {name} first, or rmmod with wait = true to wait for it"
            ))
        };
        k.diagnose(DiagKind::InUse, Some(m), msg, Vec::new(), hint);
        Step::Done(Outcome::Err(Errno::EWOULDBLOCK))
    }

    /// Whether the wait the unload is parked in ends on SIGKILL: only modkit's wait for
    /// pins does (delete_module() itself never waits since 3.13, and module exit code is
    /// not interrupted).
    pub fn killable_wait(&self) -> bool {
        self.phase == Phase::PinWait
    }

    /// Advances the unload.
    pub fn poll(&mut self, k: &mut Kernel, task: TaskId, r: Resume) -> Step {
        if r == Resume::Killed && self.phase == Phase::PinWait {
            if let Some(i) = self.module.and_then(|m| k.instances[m].as_mut()) {
                i.draining = false;
            }
            return Step::Done(Outcome::Err(Errno::EINTR));
        }
        loop {
            match self.phase {
                Phase::Start => {
                    let Some(m) = k.find_module(&self.name) else {
                        return Step::Done(Outcome::Err(Errno::ENOENT));
                    };
                    if k.db.spec(m).builtin {
                        return Step::Done(Outcome::Err(Errno::ENOENT));
                    }
                    self.module = Some(m);
                    let inst = k.instances[m].as_ref().expect("found module is present");
                    if !inst.holders.is_empty() {
                        return self.in_use(k, m);
                    }
                    if inst.state != ModState::Live {
                        return Step::Done(Outcome::Err(Errno::EBUSY));
                    }
                    let refcount = inst.refcount;
                    // try_force_unload(): O_TRUNC forces only with CONFIG_MODULE_FORCE_UNLOAD,
                    // and tainting (R) each time it is needed.
                    self.force &= k.config.force_unload;
                    if !k.db.spec(m).has_exit && !crate::taint::try_force_unload(k, self.force) {
                        return Step::Done(Outcome::Err(Errno::EBUSY));
                    }
                    if refcount > 0 && !self.force {
                        if self.wait && k.policy.is_modkit() {
                            if let Some(i) = k.instances[m].as_mut() {
                                i.draining = true;
                            }
                            self.deadline = self.timeout.map(|t| k.now + t);
                            self.phase = Phase::PinWait;
                            let reason = format!("rmmod {} waits for its pins to drop", k.name(m));
                            return wait(WaitKey::Pins(m), reason, None, self.deadline);
                        }
                        return self.in_use(k, m);
                    }
                    if refcount > 0 {
                        crate::taint::try_force_unload(k, self.force);
                    }
                    self.begin_exit(k, task, m);
                }
                Phase::PinWait => {
                    let m = self.module.expect("set at start");
                    let refs = k.instances[m].as_ref().map(|i| i.refcount);
                    match refs {
                        None => return Step::Done(Outcome::Err(Errno::ENOENT)),
                        Some(0) => {
                            if let Some(i) = k.instances[m].as_mut() {
                                i.draining = false;
                            }
                            if !k.holders(m).is_empty() {
                                return self.in_use(k, m);
                            }
                            self.begin_exit(k, task, m);
                        }
                        Some(_) if r == Resume::TimedOut => {
                            if let Some(i) = k.instances[m].as_mut() {
                                i.draining = false;
                            }
                            let msg = format!("rmmod {} gave up waiting for its pins", k.name(m));
                            k.diagnose(DiagKind::Timeout, Some(m), msg, Vec::new(), None);
                            return self.in_use(k, m);
                        }
                        Some(_) => {
                            let reason = format!("rmmod {} waits for its pins to drop", k.name(m));
                            return wait(WaitKey::Pins(m), reason, None, self.deadline);
                        }
                    }
                }
                Phase::Exit => {
                    let m = self.module.expect("set at start");
                    if let Some(body) = k.next_undo(m, &mut self.step) {
                        return Step::Run(body);
                    }
                    k.waits.leave_module(task, m);
                    k.free_unloaded_module(m);
                    return Step::Done(Outcome::Ok);
                }
            }
        }
    }

    fn begin_exit(&mut self, k: &mut Kernel, task: TaskId, m: ModId) {
        let has_exit = k.db.spec(m).has_exit;
        let inst = k.instances[m].as_mut().expect("present");
        inst.state = ModState::Going;
        inst.owner_task = Some(task);
        // Without an exit function a forced unload runs no teardown at all.
        self.step = if has_exit { inst.progress } else { 0 };
        if self.force {
            k.set_forced(m);
        }
        k.note_state(m);
        k.waits.enter_module(task, m);
        self.phase = Phase::Exit;
    }
}
