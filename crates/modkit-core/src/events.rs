//! Change events: the kernel tells an observer (the host's `tracing` layer) of every module
//! state change, pin taken or dropped, holder link added or removed, failed init step and
//! undo run, at the one place each change is made. Events are small `Copy` values: nothing
//! is allocated to report them, and nothing at all happens when no observer is set.

use crate::errno::Errno;
use crate::kernel::{Kernel, ModId, ModState};

/// One change of the module system's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Module `module` entered `state` (`None`: freed, "gone").
    State {
        /// The module.
        module: ModId,
        /// Its new state.
        state: Option<ModState>,
    },
    /// A pin (`try_module_get`) was taken on `module`.
    PinTaken {
        /// The module pinned.
        module: ModId,
        /// The pin's id.
        pin: u64,
    },
    /// A pin on `module` was dropped (`module_put`, or freed by a forced unload).
    PinDropped {
        /// The module that was pinned.
        module: ModId,
        /// The pin's id.
        pin: u64,
    },
    /// `user` now uses a symbol of `used` (a holder link and a reference on `used`).
    HolderAdded {
        /// The module using.
        user: ModId,
        /// The module used.
        used: ModId,
    },
    /// The link from `user` to `used` was dropped (`user` was freed).
    HolderRemoved {
        /// The module that used.
        user: ModId,
        /// The module that was used.
        used: ModId,
    },
    /// Init step `step` of `module` failed with `errno`.
    InitFailed {
        /// The module.
        module: ModId,
        /// The failing step's index.
        step: usize,
        /// The error it returned.
        errno: Errno,
    },
    /// The undo of init step `step` of `module` is about to run.
    UndoRun {
        /// The module.
        module: ModId,
        /// The step undone.
        step: usize,
    },
}

/// Called with the kernel (after the change) and the event; a plain function so that the
/// kernel stays `Debug` and cheap to check.
pub type Observer = fn(&Kernel, Event);

impl Kernel {
    /// Reports `ev` to the observer, if any.
    #[inline]
    pub(crate) fn emit(&self, ev: Event) {
        if let Some(f) = self.observer {
            f(self, ev);
        }
    }
}
