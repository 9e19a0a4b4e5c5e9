//! Pins and the wait-for graph (issue 9, item 7): under modkit a failed load waits for the
//! pins taken while its module was COMING before it frees the module (modkit never frees
//! code someone holds). A task that took such a pin and then waits for that very load
//! (`request_module`, modprobe, a merged load) would wait for ever: the load waits for the
//! pin, the pin holder waits for the load. This file records which task took each pin, so
//! that the failed load's wait names a target, and refuses the pin holder's wait with
//! EDEADLK and the whole chain when the cycle closes, whichever side waits last.
//!
//! Linux does not wait for pins: `do_init_module()`'s failure path (`fail:` label,
//! `kernel/module/main.c`, every version in the range) sets GOING, drops the initial
//! reference and calls `free_module()` whatever the refcount; the pin is then dangling
//! (reported as `freed_while_pinned`). So under `linux-X.Y` none of this applies.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::DiagKind;
use crate::kernel::{Kernel, ModId};
use crate::waits::{TaskId, WaitKey};

/// Which task took each pin, and the waits refused to break a pin cycle.
#[derive(Debug, Clone, Default)]
pub struct PinWaits {
    /// Pin id → the task that took it (drivers record it with [`Kernel::set_pin_task`]).
    tasks: BTreeMap<u64, TaskId>,
    /// Tasks whose current wait was refused: woken, their procedure ends with EDEADLK.
    refused: BTreeSet<TaskId>,
    /// Tasks parked in a wait their procedure can end cleanly with EDEADLK (a merged
    /// load or request, a wait for a module going away, a request's wait for modprobe).
    refusable: BTreeSet<TaskId>,
}

impl Kernel {
    /// Records that `task` took `pin` (a `get_module` action, `try_module_get` on the
    /// host): the task is the one that must drop it.
    pub fn set_pin_task(&mut self, pin: u64, task: TaskId) {
        self.pinwait.tasks.insert(pin, task);
    }

    /// Forgets the task of a pin that was put.
    pub(crate) fn forget_pin_task(&mut self, pin: u64) {
        self.pinwait.tasks.remove(&pin);
    }

    /// The tasks holding pins on `m`, in pin order.
    pub fn pin_tasks(&self, m: ModId) -> Vec<TaskId> {
        let mut v: Vec<TaskId> = self
            .pins
            .iter()
            .filter(|(_, p)| p.module == m)
            .filter_map(|(id, _)| self.pinwait.tasks.get(id).copied())
            .collect();
        v.dedup();
        v
    }

    /// Records whether the wait `task` is about to park in can be refused
    /// ([`crate::proc::Proc::poll`] calls it after every poll).
    pub(crate) fn set_refusable(&mut self, task: TaskId, yes: bool) {
        if yes {
            self.pinwait.refusable.insert(task);
        } else {
            self.pinwait.refusable.remove(&task);
        }
    }

    /// Whether `task` is parked in a wait that can be refused.
    pub(crate) fn pinwait_refusable(&self, task: TaskId) -> bool {
        self.pinwait.refusable.contains(&task) && self.waits.get(task).is_some()
    }

    /// Refuses the wait `task` is parked in: it is woken and its procedure ends with
    /// EDEADLK.
    pub(crate) fn refuse_wait_of(&mut self, task: TaskId) {
        if let Some(key) = self.waits.get(task).map(|w| w.key.clone()) {
            self.pinwait.refused.insert(task);
            self.wakes.push(key);
        }
    }

    /// Whether `task`'s wait was refused to break a pin cycle (and forgets it): its
    /// procedure must end with EDEADLK.
    pub(crate) fn take_refusal(&mut self, task: TaskId) -> bool {
        self.pinwait.refused.remove(&task)
    }

    /// The failed load of `m` on `task` is about to wait for the pins on `m` (modkit).
    /// Returns the target of that wait: a task holding a pin, preferring one whose waits
    /// lead back to `task`. When such a cycle exists, the wait in it that waits for `task`
    /// (the pin holder's load or request) is refused: it is woken and ends with EDEADLK,
    /// and a `dependency_cycle` diagnostic names the chain. The failed load itself waits
    /// on: once the refused task drops its pin, the module is freed.
    pub(crate) fn pin_wait_target(
        &mut self,
        task: TaskId,
        m: ModId,
        reason: &str,
    ) -> Option<TaskId> {
        let holders = self.pin_tasks(m);
        for &h in &holders {
            if h == task {
                continue;
            }
            let Some(cycle) = self.waits.cycle_through(task, h) else {
                continue;
            };
            // The last task of the cycle waits for `task`: that is the wait to refuse.
            let victim = *cycle.last().expect("a cycle has a task besides the waiter");
            let name = self.name(m).to_string();
            let mut chain = vec![format!("{} (load of {name})", self.waits.label(task))];
            chain.push(reason.to_string());
            for &t in &cycle[1..] {
                let w = self
                    .waits
                    .get(t)
                    .map(|w| w.reason.clone())
                    .unwrap_or_default();
                chain.push(format!("{}: {w}", self.waits.label(t)));
            }
            let msg = format!(
                "waiting would close a cycle: {}; the wait of {} is refused with EDEADLK",
                chain.join(" → "),
                self.waits.label(victim)
            );
            let hint = format!(
                "a reference taken on {name} while it is COMING keeps its failed load from freeing it: put the reference (put_module, drop the ModuleRef) before loading {name}, or take it only once {name} is live"
            );
            self.diagnose(DiagKind::DependencyCycle, Some(m), msg, chain, Some(hint));
            self.refuse_wait_of(victim);
            return Some(h);
        }
        holders.into_iter().find(|&h| h != task)
    }

    /// Whether the cycle `waiter` would close by waiting on `target` passes through a
    /// failed load waiting for pins (its fix is about the pin, not about an init's wait).
    pub(crate) fn cycle_has_pin_wait(&self, cycle: &[TaskId]) -> Option<ModId> {
        cycle
            .iter()
            .find_map(|&t| match self.waits.get(t).map(|w| &w.key) {
                Some(WaitKey::Pins(m)) => Some(*m),
                _ => None,
            })
    }
}
