//! The task of a program thread: a thread that takes a reference on a module
//! ([`HostHandle::try_module_get`], [`HostHandle::symbol`]) outside any module body gets a task id of its
//! own, so that the pin is attributed to it and a later operation of the same thread is a
//! wait of that task. Then a thread that pinned a module while it was loading and then
//! loads it, while the init fails, is refused with EDEADLK and the chain instead of
//! hanging (modkit_core::pinwait): the failed load waits for the pin, the thread for the
//! load.
//!
//! A reference moved to another thread stays attributed to the thread that took it.

use std::cell::RefCell;

use modkit_core::TaskId;

use crate::host::{HostHandle, State};

crate::sync::thread_local! {
    /// (host id, task) for each host this thread has a task in.
    static THREAD_TASKS: RefCell<Vec<(u64, TaskId)>> = const { RefCell::new(Vec::new()) };
}

impl HostHandle {
    /// The task of the calling thread in this host, if it has one.
    pub(crate) fn thread_task(&self) -> Option<TaskId> {
        let id = self.shared.id;
        THREAD_TASKS.with(|v| v.borrow().iter().find(|(h, _)| *h == id).map(|(_, t)| *t))
    }

    /// The task an action of the calling thread belongs to: the module body it runs, else
    /// the thread's own task (created on first use; it never counts as runnable).
    pub(crate) fn acting_task(&self, st: &mut State) -> TaskId {
        if let Some(t) = crate::host::body_task().or_else(|| self.thread_task()) {
            return t;
        }
        let t = st.alloc_task_id();
        let current = crate::sync::thread::current();
        let name = current.name().unwrap_or("(unnamed)");
        st.k.waits.set_label(t, format!("thread {name}"));
        let id = self.shared.id;
        THREAD_TASKS.with(|v| v.borrow_mut().push((id, t)));
        t
    }
}
