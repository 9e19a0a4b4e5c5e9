//! `delete_module()`: the unload rules, the exit table, and modkit's waiting rmmod.

use crate::diag::DiagKind;
use crate::errno::{Errno, Outcome};
use crate::kernel::{Kernel, ModId, ModState, Time};
use crate::policy::{Policy, MODULE_NAME_LEN};
use crate::proc::{wait, Resume, Step};
use crate::stable::{self, Change};
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
                    let Some(m) =
                        delete_module_name(k.policy, &self.name).and_then(|n| k.find_module(n))
                    else {
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

impl Policy {
    /// `delete_module()` refuses a name of `MODULE_NAME_LEN` bytes or more (and an empty
    /// one) with ENOENT at once (a6323bd4e611 "module: Prevent silent truncation of module
    /// name in delete_module(2)", 6.17; stable 6.16.2, 6.15.11, 6.12.43, 6.6.103, 6.1.149;
    /// modkit always). Before, it copied `MODULE_NAME_LEN - 1` bytes and looked up what it
    /// got: a longer name unloaded the module named by its first 55 bytes.
    pub fn delete_module_rejects_long_names(self) -> bool {
        match self {
            Policy::Modkit => true,
            Policy::Linux(v) => stable::has(Change::DeleteModuleNameNotTruncated, v),
        }
    }
}

/// The name `delete_module()` looks up when asked for `asked`, or `None` when it fails with
/// ENOENT before looking (kernel/module/main.c, `SYSCALL_DEFINE2(delete_module)`):
///
/// ```c
/// /* up to 6.16 */
/// if (strncpy_from_user(name, name_user, MODULE_NAME_LEN-1) < 0)
///         return -EFAULT;
/// name[MODULE_NAME_LEN-1] = '\0';
/// /* 6.17 (a6323bd4e611) */
/// len = strncpy_from_user(name, name_user, MODULE_NAME_LEN);
/// if (len == 0 || len == MODULE_NAME_LEN)
///         return -ENOENT;
/// ```
pub fn delete_module_name(policy: Policy, asked: &str) -> Option<&str> {
    let max = MODULE_NAME_LEN - 1;
    if asked.len() <= max {
        return Some(asked);
    }
    if policy.delete_module_rejects_long_names() {
        return None;
    }
    // The first 55 bytes; a cut inside a UTF-8 character names no module.
    asked.get(..max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Policy {
        s.parse().unwrap()
    }

    #[test]
    fn long_names_by_version() {
        let m55 = "m".repeat(55);
        let long = format!("{m55}_extra");
        for (pol, want) in [
            ("linux-4.4", Some(m55.as_str())),
            ("linux-6.1.148", Some(m55.as_str())),
            ("linux-6.1.149", None),
            ("linux-6.1.176", None),
            ("linux-6.6.102", Some(m55.as_str())),
            ("linux-6.6.103", None),
            ("linux-6.12.42", Some(m55.as_str())),
            ("linux-6.12.43", None),
            ("linux-6.16", Some(m55.as_str())),
            ("linux-6.16.2", None),
            ("linux-6.17", None),
            ("modkit", None),
        ] {
            assert_eq!(delete_module_name(p(pol), &long), want, "{pol}");
            assert_eq!(
                delete_module_name(p(pol), &m55),
                Some(m55.as_str()),
                "{pol}"
            );
        }
        // A cut inside a character: no module has that name.
        let cut = format!("{}é", "m".repeat(54));
        assert_eq!(delete_module_name(p("linux-6.16"), &cut), None);
        // 55 bytes with a two-byte character, then one more: cut after the character.
        let wide = format!("{}é", "m".repeat(53));
        let wider = format!("{wide}x");
        assert_eq!(
            delete_module_name(p("linux-6.16"), &wider),
            Some(wide.as_str())
        );
        assert_eq!(delete_module_name(p("linux-6.17"), &wider), None);
    }
}
