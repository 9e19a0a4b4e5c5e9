//! The wait-for graph: who waits on what, and on whom, so that a wait that would close a
//! cycle can be named with its whole chain, and a stalled run can list every wait.

use std::collections::{BTreeMap, BTreeSet};

use crate::kernel::ModId;

/// A task: a userspace process, a kernel thread, a work item.
pub type TaskId = u64;

/// Something a task can wait on; a wakeup of the key wakes every task waiting on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitKey {
    /// `module_wq`: woken when a module goes live, fails or is freed.
    ModuleWq,
    /// A merged or idempotent load of a module finished.
    LoadDone(ModId),
    /// A task exited.
    Task(TaskId),
    /// A completion (`complete()` / `wait_for_completion()`).
    Completion(String),
    /// A request_module slot was released.
    KmodSlot,
    /// A merged request_module finished (modkit).
    Request(String),
    /// A module's refcount dropped to zero.
    Pins(ModId),
    /// Only the deadline can end this wait (a sleep).
    Timer,
}

/// What one task is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitInfo {
    /// The key.
    pub key: WaitKey,
    /// Why, in words ("request_module(kvmgt)", "kvmgt needs i915").
    pub reason: String,
    /// The task that must act for the wait to end, when one is known.
    pub target: Option<TaskId>,
    /// Absolute deadline (ns), if bounded.
    pub deadline: Option<u64>,
}

/// The wait-for graph.
#[derive(Debug, Clone, Default)]
pub struct WaitGraph {
    waits: BTreeMap<TaskId, WaitInfo>,
    /// Task labels ("modprobe kvmgt", "event boot").
    labels: BTreeMap<TaskId, String>,
    /// The module whose init or exit each task is running, innermost last.
    running: BTreeMap<TaskId, Vec<ModId>>,
}

impl WaitGraph {
    /// Records that `task` waits.
    pub fn begin(&mut self, task: TaskId, info: WaitInfo) {
        self.waits.insert(task, info);
    }

    /// Records that `task` no longer waits.
    pub fn end(&mut self, task: TaskId) {
        self.waits.remove(&task);
    }

    /// What `task` waits for.
    pub fn get(&self, task: TaskId) -> Option<&WaitInfo> {
        self.waits.get(&task)
    }

    /// Names a task for reports.
    pub fn set_label(&mut self, task: TaskId, label: String) {
        self.labels.insert(task, label);
    }

    /// A task's label.
    pub fn label(&self, task: TaskId) -> String {
        self.labels
            .get(&task)
            .cloned()
            .unwrap_or_else(|| format!("task {task}"))
    }

    /// Marks `task` as running the init or exit of module `m`.
    pub fn enter_module(&mut self, task: TaskId, m: ModId) {
        self.running.entry(task).or_default().push(m);
    }

    /// Ends [`WaitGraph::enter_module`].
    pub fn leave_module(&mut self, task: TaskId, m: ModId) {
        if let Some(v) = self.running.get_mut(&task) {
            if let Some(pos) = v.iter().rposition(|&x| x == m) {
                v.remove(pos);
            }
        }
    }

    /// The module whose code `task` is running, if any.
    pub fn running_module(&self, task: TaskId) -> Option<ModId> {
        self.running.get(&task).and_then(|v| v.last().copied())
    }

    /// Forgets a finished task.
    pub fn forget(&mut self, task: TaskId) {
        self.waits.remove(&task);
        self.running.remove(&task);
        self.labels.remove(&task);
    }

    /// If `waiter` waiting on `target` (for `reason`) would close a cycle, returns the
    /// tasks of the cycle in wait order, starting with `waiter`.
    pub fn cycle_through(&self, waiter: TaskId, target: TaskId) -> Option<Vec<TaskId>> {
        let mut path = vec![waiter];
        let mut seen = BTreeSet::new();
        let mut cur = target;
        loop {
            if cur == waiter {
                return Some(path);
            }
            if !seen.insert(cur) {
                return None;
            }
            path.push(cur);
            cur = self.waits.get(&cur)?.target?;
        }
    }

    /// Every current wait, in task order.
    pub fn all(&self) -> impl Iterator<Item = (TaskId, &WaitInfo)> {
        self.waits.iter().map(|(t, w)| (*t, w))
    }

    /// Number of waiting tasks.
    pub fn len(&self) -> usize {
        self.waits.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(reason: &str, target: Option<TaskId>) -> WaitInfo {
        WaitInfo {
            key: WaitKey::ModuleWq,
            reason: reason.into(),
            target,
            deadline: None,
        }
    }

    #[test]
    fn finds_a_cycle_and_only_a_cycle() {
        let mut g = WaitGraph::default();
        g.begin(1, w("request_module(kvmgt)", Some(2)));
        assert_eq!(g.cycle_through(2, 1), Some(vec![2, 1]));
        assert_eq!(g.cycle_through(3, 1), None);
        g.begin(4, w("x", Some(5)));
        g.begin(5, w("y", Some(4)));
        // A cycle not through the waiter is not the waiter's cycle.
        assert_eq!(g.cycle_through(6, 4), None);
        g.end(1);
        assert_eq!(g.cycle_through(2, 1), None);
    }
}
