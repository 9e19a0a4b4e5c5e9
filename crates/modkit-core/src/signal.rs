//! Fatal signals: `kill -9` of a task, and which of the loader's waits it ends.
//!
//! A task sent SIGKILL (a `kill` event) has a fatal signal pending until it exits. The
//! kernel does not stop it where it stands: a wait in `TASK_INTERRUPTIBLE` or
//! `TASK_KILLABLE` ends at once (and any such wait the task enters later ends at once
//! too), an uninterruptible wait goes on to its normal end, and the task dies when it next
//! returns to userspace: whatever its system call returned, nobody sees it
//! ([`Outcome::Killed`]); a modprobe dies before inserting the next module of its list;
//! the wait status its parent reads is 9 (the signal number), which is what
//! `request_module()` returns for a killed modprobe (`call_usermodehelper_exec_sync()`
//! stores `kernel_wait()`'s status in `sub_info->retval`).
//!
//! The waits, per kernel (docs/loader-versions.md, "Fatal signals"):
//!
//! | wait | kernel | a fatal signal |
//! |---|---|---|
//! | duplicate load (`add_unformed_module`, 6.4+ `module_patient_check_exists`) | all | `wait_event_interruptible(module_wq, …)`: -ERESTARTSYS |
//! | idempotent `finit_module` of the same file (6.5, 9b9879fc0327) | 6.5 – 6.10 | `wait_for_completion()`: not interrupted |
//! | the same (2124d84db293, 6.11; 6.6.46, 6.10.5) | 6.11+ | `idempotent_wait_for_completion()`: -EINTR (`idem.ret` starts as -EINTR) |
//! | `resolve_symbol_wait()` (30 s) | all | `wait_event_interruptible_timeout`: ends at once, "gave up waiting for init of module" and `Unknown symbol … (err -16)` for every symbol still waited for |
//! | request_module slot, throttle (4.13 – 6.3) | | `wait_event_killable_timeout`: "request_module: sigkill sent for modprobe %s, giving up", -ERESTARTSYS |
//! | request_module slot, semaphore (6.4+) | | `down_timeout()`: not interrupted |
//! | request_module's wait for modprobe (`UMH_WAIT_PROC \| UMH_KILLABLE`) | all | `wait_for_completion_killable()`: -ERESTARTSYS; the modprobe goes on |
//! | `delete_module()` and module code (`msleep`, the exit table) | all | not interrupted |
//! | `wait_for` (modkit_rt's `wait_for_completion_killable`) | all | -ERESTARTSYS |
//!
//! modkit's own waits (merged loads and requests, an unload waiting for pins, rmmod
//! `wait = true`) end with EINTR; a failed load waiting for its pins before it frees the
//! module does not (it must not free code in use).

use std::collections::BTreeSet;

use crate::errno::Outcome;
use crate::kernel::Kernel;
use crate::policy::{DupEra, KmodLimiter, Policy};
use crate::waits::TaskId;

/// The signal number of SIGKILL: a killed process's wait status.
pub const SIGKILL: i32 = 9;

/// Tasks with a fatal signal pending.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    pending: BTreeSet<TaskId>,
}

impl Kernel {
    /// `kill(pid, SIGKILL)`: `task` has a fatal signal pending from now on. The driver
    /// ends the task's wait if [`crate::Proc::killable_wait`] says the wait is killable.
    pub fn send_sigkill(&mut self, task: TaskId) {
        self.signals.pending.insert(task);
    }

    /// `fatal_signal_pending(current)`.
    pub fn fatal_signal_pending(&self, task: TaskId) -> bool {
        self.signals.pending.contains(&task)
    }

    /// What the task's exit looks like from outside: [`Outcome::Killed`] when it was sent
    /// SIGKILL, else `o`. Forgets the pending signal; call it once, when the task ends.
    pub fn exit_outcome(&mut self, task: TaskId, o: Outcome) -> Outcome {
        if self.signals.pending.remove(&task) {
            Outcome::Killed
        } else {
            o
        }
    }
}

impl Policy {
    /// A second `finit_module()` of a file being loaded waits killably (6.11's
    /// 2124d84db293, in 6.6.46 and 6.10.5; modkit's merged load too); 6.5 – 6.10 waited
    /// in `wait_for_completion()`, which no signal ends.
    pub fn idempotent_wait_killable(self) -> bool {
        self.dup_era() != DupEra::E
    }

    /// request_module's wait for a free slot ends on a fatal signal: the 4.13 throttle's
    /// `wait_event_killable_timeout()` does, 6.4's `down_timeout()` does not (modkit's
    /// does).
    pub fn kmod_slot_wait_killable(self) -> bool {
        match self.kmod_limiter() {
            KmodLimiter::Throttle => true,
            KmodLimiter::Semaphore => self.is_modkit(),
            KmodLimiter::Immediate => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;
    use crate::spec::{ModuleDb, ModuleSpec};

    fn p(s: &str) -> Policy {
        s.parse().unwrap()
    }

    #[test]
    fn killable_waits_by_version() {
        assert!(
            p("linux-6.1").idempotent_wait_killable(),
            "era B: no idempotent wait"
        );
        assert!(!p("linux-6.5").idempotent_wait_killable());
        assert!(!p("linux-6.10").idempotent_wait_killable());
        assert!(!p("linux-6.10.4").idempotent_wait_killable());
        assert!(p("linux-6.10.5").idempotent_wait_killable());
        assert!(!p("linux-6.6.45").idempotent_wait_killable());
        assert!(p("linux-6.6.46").idempotent_wait_killable());
        assert!(p("linux-6.11").idempotent_wait_killable());
        assert!(p("modkit").idempotent_wait_killable());
        assert!(!p("linux-4.12").kmod_slot_wait_killable());
        assert!(p("linux-4.13").kmod_slot_wait_killable());
        assert!(p("linux-6.3").kmod_slot_wait_killable());
        assert!(!p("linux-6.4").kmod_slot_wait_killable());
        assert!(p("modkit").kmod_slot_wait_killable());
    }

    #[test]
    fn a_killed_task_exits_killed_once() {
        let db = ModuleDb::new(vec![ModuleSpec::new("a")]).unwrap();
        let mut k = Kernel::new(db, Policy::Modkit);
        assert!(!k.fatal_signal_pending(3));
        k.send_sigkill(3);
        assert!(k.fatal_signal_pending(3));
        assert_eq!(k.exit_outcome(3, Outcome::Ok), Outcome::Killed);
        assert!(!k.fatal_signal_pending(3));
        assert_eq!(
            k.exit_outcome(3, Outcome::Err(Errno::EBUSY)),
            Outcome::Err(Errno::EBUSY)
        );
    }
}
