//! Procedures: the kernel's and kmod's multi-step operations as explicit state machines.
//!
//! A driver owns a stack of procedures per task. It calls [`Proc::poll`] with how the task
//! was resumed; the procedure advances until it needs something from the driver, which it
//! returns as a [`Step`]: wait on a key (with the deadline the policy chose), call a nested
//! procedure, run module code (an init step or its undo), spawn a new task, or finish.
//! Procedures never sleep and never read a clock.

use crate::errno::{Errno, Outcome};
use crate::kernel::{Kernel, ModId, Time};
use crate::load::Load;
use crate::modprobe::Modprobe;
use crate::request::Request;
use crate::unload::Unload;
use crate::waits::{TaskId, WaitInfo};

/// How a task resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// First poll of a procedure.
    Start,
    /// The key it waited on was woken.
    Woken,
    /// Its deadline passed.
    TimedOut,
    /// A nested procedure finished.
    Child(Outcome),
    /// The task it spawned has this id.
    Spawned(TaskId),
    /// Module code the driver ran finished.
    Body(BodyResult),
    /// The task was sent SIGKILL while parked in a wait [`Proc::killable_wait`] calls
    /// killable (or was about to park in one with the signal pending).
    Killed,
}

/// What a piece of module code (an init step or an undo) returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyResult {
    /// Success.
    Ok,
    /// Early success: later init steps are skipped, the module stays loaded.
    Stop,
    /// Failure with an errno.
    Fail(Errno),
    /// The init returned this positive value (1 ..= i32::MAX): later steps are skipped and
    /// the module goes live, with `do_init_module()`'s warning.
    Returned(u32),
}

/// Module code the driver must run for a procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Step `step` of module `module`'s init table.
    Init {
        /// Module.
        module: ModId,
        /// Step index.
        step: usize,
    },
    /// The undo of step `step`.
    Undo {
        /// Module.
        module: ModId,
        /// Step index.
        step: usize,
    },
}

/// What a procedure asks of its driver.
#[derive(Debug)]
pub enum Step {
    /// Finished with this outcome.
    Done(Outcome),
    /// Park until the key is woken or the deadline passes.
    Wait(WaitInfo),
    /// Run a nested procedure on this task; its outcome comes back as [`Resume::Child`].
    Call(Box<Proc>),
    /// Run module code on this task; its result comes back as [`Resume::Body`].
    Run(Body),
    /// Start a new task running `proc`; its id comes back as [`Resume::Spawned`].
    Spawn {
        /// The new task's procedure.
        proc: Box<Proc>,
        /// A label for reports.
        label: String,
    },
}

/// A procedure.
#[derive(Debug, Clone)]
pub enum Proc {
    /// Userspace `modprobe NAME`: dependencies, softdeps, then the module.
    Modprobe(Modprobe),
    /// `finit_module()` of one module: duplicate checks, symbol resolution, init.
    Load(Load),
    /// `delete_module()`.
    Unload(Unload),
    /// `request_module()`.
    Request(Request),
}

impl Proc {
    /// Advances the procedure.
    pub fn poll(&mut self, k: &mut Kernel, task: TaskId, r: Resume) -> Step {
        // A wait refused to break a pin cycle (crate::pinwait) ends with EDEADLK.
        if k.take_refusal(task) && matches!(r, Resume::Woken | Resume::TimedOut) {
            match self {
                Proc::Load(p) => return p.refused(k),
                Proc::Request(p) => return p.refused(k, task),
                _ => {}
            }
        }
        let step = match self {
            Proc::Modprobe(p) => p.poll(k, task, r),
            Proc::Load(p) => p.poll(k, task, r),
            Proc::Unload(p) => p.poll(k, task, r),
            Proc::Request(p) => p.poll(k, task, r),
        };
        let refusable = matches!(step, Step::Wait(_))
            && match self {
                Proc::Load(p) => p.refusable_wait(),
                Proc::Request(p) => p.refusable_wait(),
                _ => false,
            };
        k.set_refusable(task, refusable);
        step
    }

    /// Whether the wait this procedure just asked for ends on a fatal signal, as the
    /// policy's kernel has it ([`crate::signal`]). Drivers ask it for every
    /// [`Step::Wait`] and resume the task with [`Resume::Killed`] when it is true and
    /// SIGKILL is (or becomes) pending.
    pub fn killable_wait(&self, k: &Kernel) -> bool {
        match self {
            Proc::Modprobe(p) => p.killable_wait(),
            Proc::Load(p) => p.killable_wait(k),
            Proc::Unload(p) => p.killable_wait(),
            Proc::Request(p) => p.killable_wait(k),
        }
    }

    /// A short description for reports.
    pub fn describe(&self, k: &Kernel) -> String {
        match self {
            Proc::Modprobe(p) => format!("modprobe {}", p.target),
            Proc::Load(p) => format!("finit_module({})", k.name(p.module)),
            Proc::Unload(p) => format!("delete_module({})", p.name),
            Proc::Request(p) => format!("request_module({})", p.name),
        }
    }
}

/// Builds a wait.
pub(crate) fn wait(
    key: crate::waits::WaitKey,
    reason: String,
    target: Option<TaskId>,
    deadline: Option<Time>,
) -> Step {
    Step::Wait(WaitInfo {
        key,
        reason,
        target,
        deadline,
    })
}

impl Kernel {
    /// If `task` waiting on `target` for `reason` would close a cycle, raises a
    /// `dependency_cycle` diagnostic naming the whole chain and returns true.
    pub(crate) fn refuse_cycle(
        &mut self,
        task: TaskId,
        target: Option<TaskId>,
        reason: &str,
    ) -> bool {
        let Some(target) = target else { return false };
        let Some(cycle) = self.waits.cycle_through(task, target) else {
            return false;
        };
        let reasons: Vec<String> = cycle
            .iter()
            .map(|&t| {
                if t == task {
                    reason.to_string()
                } else {
                    self.waits
                        .get(t)
                        .map(|w| w.reason.clone())
                        .unwrap_or_default()
                }
            })
            .collect();
        let start = cycle
            .iter()
            .position(|&t| self.waits.running_module(t).is_some())
            .unwrap_or(0);
        let head = match self.waits.running_module(cycle[start]) {
            Some(m) => self.name(m).to_string(),
            None => self.waits.label(cycle[start]),
        };
        let mut chain = vec![head.clone()];
        for i in 0..cycle.len() {
            chain.push(reasons[(start + i) % cycle.len()].clone());
        }
        let module = self.waits.running_module(cycle[start]);
        // The wait refused is the one that waits for the task running an init (the edge
        // into it), whichever task closes the cycle: so the outcome does not depend on
        // which of two simultaneous waits comes last (issue 9, item 7). When that wait
        // cannot be ended cleanly (or no task of the cycle runs an init), the closing
        // wait is refused, as before.
        let into = cycle[(start + cycle.len() - 1) % cycle.len()];
        let redirect = module.is_some() && into != task && self.pinwait_refusable(into);
        let hint = match self.cycle_has_pin_wait(&cycle) {
            Some(m) => {
                let name = self.name(m).to_string();
                format!(
                    "a reference taken on {name} while it is COMING keeps its failed load from freeing it: put the reference (put_module, drop the ModuleRef) before loading {name}, or take it only once {name} is live"
                )
            }
            None => format!(
                "{head} must not wait during its init for something that needs {head} live: request it without waiting (request_module_nowait or a work item) after init, or move the shared symbols into a third module"
            ),
        };
        let msg = if redirect {
            format!(
                "waiting would close a cycle: {}; the wait of {} for {head}'s init is refused with EDEADLK",
                chain.join(" → "),
                self.waits.label(into)
            )
        } else {
            format!(
                "waiting would close a cycle: {}; refused with EDEADLK",
                chain.join(" → ")
            )
        };
        self.diagnose(
            crate::diag::DiagKind::DependencyCycle,
            module,
            msg,
            chain,
            Some(hint),
        );
        if redirect {
            self.refuse_wait_of(into);
            return false;
        }
        true
    }
}
