//! `tracing` events for every change of the module system's state.
//!
//! The core's kernel reports each change at the one place it makes it
//! ([`modkit_core::events`]); the host installs [`emit`] as the kernel's observer, so every
//! state change (unformed, coming, live, going, gone), pin taken or dropped, holder link
//! added or removed, failed init step and undo run is one event, whichever thread or path
//! (modprobe, rmmod, a timer, shutdown) made it. Target [`TARGET`]; fields `module`,
//! `state`, `task` (the host task that made the change, when one did), `errno`, `step`,
//! `pin`, `user`, `used`. Levels: state changes and undos at INFO, failed init steps at
//! WARN, pins and holder links at DEBUG. Events are emitted under the host's lock, so a
//! subscriber must not call back into the host. With the level disabled nothing is
//! formatted or allocated: the event is a `Copy` value and the macros check the level first.

use std::cell::Cell;

use modkit_core::events::Event;
use modkit_core::kernel::Kernel;
use modkit_core::TaskId;

/// The `tracing` target of every module event.
pub const TARGET: &str = "modkit::module";

thread_local! {
    static TASK: Cell<Option<TaskId>> = const { Cell::new(None) };
}

/// While alive, events from this thread name `task`.
pub(crate) struct TaskScope(Option<TaskId>);

impl TaskScope {
    pub(crate) fn enter(task: TaskId) -> TaskScope {
        TaskScope(TASK.with(|c| c.replace(Some(task))))
    }
}

impl Drop for TaskScope {
    fn drop(&mut self) {
        TASK.with(|c| c.set(self.0));
    }
}

/// The kernel's observer: one `tracing` event per [`Event`].
pub(crate) fn emit(k: &Kernel, ev: Event) {
    let task = TASK.with(|c| c.get());
    match ev {
        Event::State { module, state } => {
            let state = state.map_or("gone", |s| s.name());
            tracing::info!(target: TARGET, module = k.name(module), state, task, "state");
        }
        Event::PinTaken { module, pin } => {
            tracing::debug!(target: TARGET, module = k.name(module), pin, task, "pin taken");
        }
        Event::PinDropped { module, pin } => {
            tracing::debug!(target: TARGET, module = k.name(module), pin, task, "pin dropped");
        }
        Event::HolderAdded { user, used } => {
            tracing::debug!(
                target: TARGET,
                module = k.name(used),
                user = k.name(user),
                task,
                "holder added"
            );
        }
        Event::HolderRemoved { user, used } => {
            tracing::debug!(
                target: TARGET,
                module = k.name(used),
                user = k.name(user),
                task,
                "holder removed"
            );
        }
        Event::InitFailed {
            module,
            step,
            errno,
        } => {
            tracing::warn!(
                target: TARGET,
                module = k.name(module),
                step = k.db.spec(module).init[step].name.as_str(),
                errno = errno.name(),
                task,
                "init failed"
            );
        }
        Event::UndoRun { module, step } => {
            tracing::info!(
                target: TARGET,
                module = k.name(module),
                step = k.db.spec(module).init[step].name.as_str(),
                task,
                "undo"
            );
        }
    }
}
