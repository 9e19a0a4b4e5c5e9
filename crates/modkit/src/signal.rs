//! Kill events on real threads: SIGKILL marks the task in the core
//! (modkit_core::signal); a thread parked in a wait the core calls killable is resumed
//! with `Resume::Killed`, any other goes on until its wait ends, as in the simulator. No OS
//! signal is sent: the threads are the host's own actors, not processes.

use std::collections::BTreeMap;

use modkit_core::{Errno, Outcome, TaskId};

use crate::host::{HostHandle, WaitStatus};

/// The tasks a kill event can name.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    /// Started event threads by event id.
    events: BTreeMap<TaskId, String>,
    /// Modprobes started by request_module, by the name asked for.
    modprobes: BTreeMap<TaskId, String>,
}

/// What a kill event names.
pub(crate) enum Target<'a> {
    /// The threads of an event.
    Event(&'a str),
    /// The modprobes request_module started for a name.
    Modprobe(&'a str),
}

impl Targets {
    /// An event's thread has started its work.
    pub(crate) fn add_event(&mut self, task: TaskId, event: &str) {
        self.events.insert(task, event.to_string());
    }

    /// request_module started this modprobe.
    pub(crate) fn add_modprobe(&mut self, task: TaskId, name: &str) {
        self.modprobes.insert(task, name.to_string());
    }

    /// The task ended.
    pub(crate) fn forget(&mut self, task: TaskId) {
        self.events.remove(&task);
        self.modprobes.remove(&task);
    }
}

impl HostHandle {
    /// SIGKILL to every running task `target` names: ok, or ESRCH when there is none.
    pub(crate) fn kill(&self, target: Target<'_>) -> Outcome {
        let mut st = self.lock();
        self.tick(&mut st);
        let hit: Vec<TaskId> = match target {
            Target::Event(id) => st
                .killable_tasks
                .events
                .iter()
                .filter(|(_, e)| e.as_str() == id)
                .map(|(t, _)| *t)
                .collect(),
            Target::Modprobe(name) => st
                .killable_tasks
                .modprobes
                .iter()
                .filter(|(_, n)| n.as_str() == name)
                .map(|(t, _)| *t)
                .collect(),
        };
        let mut woke = false;
        for &t in &hit {
            st.k.send_sigkill(t);
            let state = &mut *st;
            if let Some(p) = state.parked.get_mut(&t) {
                if p.killable && p.status == WaitStatus::Waiting {
                    p.status = WaitStatus::Killed;
                    state.runnable += 1;
                    woke = true;
                }
            }
        }
        if woke {
            self.notify();
        }
        if hit.is_empty() {
            Outcome::Err(Errno::ESRCH)
        } else {
            Outcome::Ok
        }
    }
}
