//! Asynchronous probing on the host: the async probe workers in flight, and the wait of a
//! module's load for them after its init (`async_synchronize_full()` in
//! `do_init_module()`).
//!
//! The era rule is the core's ([`modkit_core::asyncprobe::load_waits`]); this file only
//! does the bookkeeping and the wait on real threads, as the simulator does in its
//! `sim/devices.rs` (`async_sync_frame`, `Job::AsyncSync`):
//!
//! - each async probe worker (`async: probe DEV`, started by [`crate::probe`] for a driver
//!   with [`crate::DeviceDriver::async_probe`]) is counted from the moment it is scheduled
//!   (under the host's lock, before the scheduling call returns) until its probes end, so a
//!   load that finishes its init right after scheduling cannot miss it;
//! - a driver registration by a module's init (the module is COMING) that schedules at
//!   least one async probe marks the module (`PF_USED_ASYNC` of the loading task);
//! - when a load has made its module LIVE and async workers are in flight, it waits if
//!   the core says so (the module's init scheduled some, or the era is 5.18+: Igor
//!   Pylypiv's 67d6212afda2 made the wait unconditional), and the wait is for every async
//!   worker in flight (`async_synchronize_full()` waits for the whole async domain). The
//!   module keeps its initial reference until the wait ends (`module_put(mod)` follows
//!   the wait in `do_init_module()`), so an `rmmod` meanwhile fails with EWOULDBLOCK
//!   (`try_stop_module()`).
//!
//! Not modelled, as in the core: the `async_probe` module parameter, and a device added
//! from an init whose async attach would also set `PF_USED_ASYNC` (the simulator marks
//! only driver registrations too).

use std::collections::BTreeSet;

use modkit_core::load::Load;
use modkit_core::{ModId, ModState, Outcome, TaskId, WaitInfo, WaitKey};

use crate::host::{HostHandle, State};
use crate::sync::MutexGuard;

/// The host's async probe bookkeeping, kept in the device state under the host's lock.
#[derive(Debug, Default)]
pub(crate) struct AsyncProbes {
    /// Async probe workers scheduled and not yet ended.
    in_flight: usize,
    /// Modules whose init (while COMING) scheduled async probes (`PF_USED_ASYNC`).
    used: BTreeSet<ModId>,
}

/// The wait key of `async_synchronize_full()`: every async probe worker has ended.
fn async_done_key() -> WaitKey {
    WaitKey::Completion("async_synchronize_full".into())
}

impl HostHandle {
    /// An async probe worker is scheduled (`async_schedule_dev()`): counted until
    /// [`HostHandle::async_probe_ended`].
    pub(crate) fn async_probe_scheduled(&self) {
        self.lock().devs.asyncs.in_flight += 1;
    }

    /// An async probe worker ended (or could not start): the last one wakes the loads
    /// waiting in `async_synchronize_full()`.
    pub(crate) fn async_probe_ended(&self) {
        let mut st = self.lock();
        let a = &mut st.devs.asyncs;
        a.in_flight = a.in_flight.saturating_sub(1);
        if a.in_flight == 0 {
            st.k.wakes.push(async_done_key());
            self.deliver(&mut st);
            self.notify();
        }
    }

    /// `driver_register()` of `module`'s driver scheduled `n` async probes: if the module
    /// is COMING (its init runs), its load is marked as having used async.
    pub(crate) fn note_async_register(st: &mut State, module: ModId, n: usize) {
        if n > 0 && st.k.state(module) == Some(ModState::Coming) {
            st.devs.asyncs.used.insert(module);
        }
    }

    /// `do_init_module()` after a load ended with `o`: when the load made its module LIVE
    /// and the era's rule says so, waits (as `task`) until no async probe worker is in
    /// flight, holding the module's initial reference meanwhile. Returns false when the
    /// run stalled during the wait (virtual clock).
    pub(crate) fn async_synchronize_after_load<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        task: TaskId,
        load: &Load,
        o: Outcome,
    ) -> (MutexGuard<'a, State>, bool) {
        let m = load.module;
        let scheduled = st.devs.asyncs.used.remove(&m);
        if !load.went_live
            || o != Outcome::Ok
            || st.devs.asyncs.in_flight == 0
            || !modkit_core::asyncprobe::load_waits(st.k.policy, scheduled)
        {
            return (st, true);
        }
        // The core's load dropped the initial reference at LIVE; do_init_module() drops it
        // only after async_synchronize_full(): take it back for the wait.
        if let Some(i) = st.k.instances[m].as_mut() {
            i.refcount += 1;
        }
        tracing::debug!(target: "modkit::device", module = %st.k.name(m), "async_synchronize_full");
        while st.devs.asyncs.in_flight > 0 {
            let info = WaitInfo {
                key: async_done_key(),
                reason: "async_synchronize_full".into(),
                target: None,
                deadline: None,
            };
            let (g, r) = self.park(st, task, info, false);
            st = g;
            if r.is_none() {
                return (st, false);
            }
        }
        self.tick(&mut st);
        if let Some(i) = st.k.instances[m].as_mut() {
            i.refcount = i.refcount.saturating_sub(1);
        }
        st.k.wake_module_wq();
        self.deliver(&mut st);
        (st, true)
    }
}
