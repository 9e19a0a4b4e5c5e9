//! Users in flight of a device's managed resources ([`HostHandle::devres_use`]), and the
//! unbind that, on the virtual clock (scenario runs, `modkit check --driver host`), follows
//! the simulator's rules word for word (`modkit_core::revocable`, the simulator's
//! `sim/unbind.rs`):
//!
//! - under `modkit`: unbind revokes the device's resources first (new users get ENXIO),
//!   waits for the users in flight at most [`DRAIN_BOUND`], then runs the driver's remove
//!   on a thread of its own and waits for it at most [`REMOVE_BOUND`]; a remove still
//!   running then is reported as `stalled` (device, driver, callback and what it waits for)
//!   and abandoned: detached (its wait no longer counts as a hang of the run), holding a
//!   reference on its module until it returns, so that `rmmod` gets EWOULDBLOCK meanwhile;
//!   the device ends unbound, its resources released;
//! - under `linux-X.Y`: remove runs on the unbinding thread and is waited for without bound
//!   (a callback that never returns leaves the run stalled, the device `removing`), then
//!   the resources are released whoever still uses them, noted as a `remark` (a C driver's
//!   use-after-free; the kernel waits for none).
//!
//! On the real clock the library keeps Rust for Linux's order (remove, then the revocation,
//! which waits for the guards: bounded by [`HostHandle::set_unbind_stall_after`] under
//! `modkit`), see `crate::probe`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use modkit_core::device::{DevId, DrvId};
use modkit_core::revocable::{
    drain_stall_message, remove_stall_message, Users, DRAIN_BOUND, REMOVE_BOUND,
};
use modkit_core::{DiagKind, Errno, Outcome, TaskId, WaitInfo, WaitKey};

use crate::devres::Revoke;
use crate::error::Error;
use crate::host::{Clock, HostHandle, State};
use crate::revocable::{Revocable, RevocableGuard};
use crate::sync::thread;

/// The unbind's share of the host's device state (behind the host's lock).
#[derive(Default)]
pub(crate) struct UnbindState {
    /// Users in flight per resource, and the devices whose resources are revoked.
    users: Users,
    /// The access gates of value-less resources (`devm_resource`), by resource id.
    gates: BTreeMap<u64, Revocable<()>>,
    /// Remove callbacks running on threads of their own (modkit, virtual clock).
    removes: BTreeSet<TaskId>,
    /// Remove callbacks abandoned at their bound, with the module reference each holds
    /// (`None` when the module was already going).
    abandoned: BTreeMap<TaskId, Option<u64>>,
    /// The run is over: abandoned callbacks still parked are let go.
    released: bool,
}

impl UnbindState {
    /// The resource `res` is being released: its access gate goes with it.
    pub(crate) fn forget_gate(&mut self, res: u64) {
        self.gates.remove(&res);
    }
}

/// The wait key of an unbind waiting for the users of `dev`'s resources to drain.
fn drain_key(dev: DevId) -> WaitKey {
    WaitKey::Completion(format!("modkit: users of the resources of device {dev}"))
}

/// The ids of the managed resources `dev` holds.
fn resources_of(st: &State, dev: DevId) -> Vec<u64> {
    st.devs.dm.devres.ids_of(dev)
}

fn users_of(st: &State, dev: DevId) -> u32 {
    st.devs.unbind.users.of(&resources_of(st, dev))
}

/// A parked task that is an abandoned remove callback: its wait is no hang of the run.
pub(crate) fn detached(st: &State, task: TaskId) -> bool {
    st.devs.unbind.abandoned.contains_key(&task)
}

/// An abandoned callback's wait ends: the run is over.
pub(crate) fn let_go(st: &State, task: TaskId) -> bool {
    st.devs.unbind.released && detached(st, task)
}

/// A use of a managed resource in flight ([`HostHandle::devres_use`]); dropping it ends
/// the use (the last one wakes an unbind waiting for the users to drain).
pub struct DevresUse {
    host: HostHandle,
    res: u64,
    dev: DevId,
    _guard: Option<RevocableGuard<()>>,
}

impl std::fmt::Debug for DevresUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevresUse")
            .field("resource", &self.res)
            .finish()
    }
}

impl Drop for DevresUse {
    fn drop(&mut self) {
        let mut st = self.host.lock();
        let left = st.devs.unbind.users.end(self.res);
        if left == 0 && users_of(&st, self.dev) == 0 {
            st.k.wakes.push(drain_key(self.dev));
            self.host.deliver(&mut st);
        }
    }
}

impl HostHandle {
    /// `try_access()` of the managed resource named `name` (a `devm_named()` or
    /// `devm_resource()` name of any bound device): a use in flight until the returned
    /// value drops, which an unbind of the device waits for (under `modkit` at most a
    /// bound; under `linux-X.Y` on the virtual clock not at all, as the kernel frees
    /// `devm` data under its users). ENXIO when no device holds such a resource or its
    /// device's resources are revoked (an unbind began), as Rust drivers turn
    /// `try_access()`'s `None` into `ENXIO`.
    pub fn devres_use(&self, name: &str) -> Result<DevresUse, Error> {
        let op = format!("use_devres({name})");
        let enxio = || Error::new(op.clone(), Outcome::Err(Errno::ENXIO));
        let mut st = self.lock();
        self.tick(&mut st);
        let found = st.devs.dm.devres.find(name);
        let Some((res, dev)) = found else {
            return Err(enxio());
        };
        if st.devs.unbind.users.revoked.contains(&dev) {
            return Err(enxio());
        }
        let guard = match st.devs.unbind.gates.get(&res) {
            Some(g) => Some(g.try_access().ok_or_else(enxio)?),
            None => None,
        };
        st.devs.unbind.users.begin(res);
        Ok(DevresUse {
            host: self.clone(),
            res,
            dev,
            _guard: guard,
        })
    }

    /// The access gate of a value-less managed resource (so that a real-clock unbind
    /// waits for its [`DevresUse`]s as for a [`crate::Devres`]'s guards).
    pub(crate) fn devres_gate(&self, st: &mut State, res: u64) -> Arc<dyn Revoke> {
        let g = Revocable::new(());
        st.devs.unbind.gates.insert(res, g.clone());
        Arc::new(g)
    }

    /// On the virtual clock, revokes `dev`'s managed values without waiting for their
    /// users (a thread blocked on a guard is off the host's books, so the clock could never
    /// move; the simulator waits for none either: a failed probe's resources go at once).
    /// False on the real clock.
    pub(crate) fn revoke_unwaited(&self, dev: DevId) -> bool {
        if self.shared.clock != Clock::Virtual {
            return false;
        }
        let values = take_values(&mut self.lock(), dev);
        for v in values {
            v.revoke(Some(Duration::ZERO));
        }
        true
    }

    /// Whether this unbind follows the simulator's bounded rules (modkit, virtual clock).
    pub(crate) fn unbind_is_bounded(&self, st: &State) -> bool {
        st.k.policy.is_modkit() && self.shared.clock == Clock::Virtual
    }

    /// The release of `dev`'s managed values after its remove on the virtual clock under
    /// `linux-X.Y`: no wait for the users in flight, a `remark` when there are some. False
    /// on the real clock (the caller revokes and waits as Rust for Linux does).
    pub(crate) fn release_unwaited(&self, dev: DevId) -> bool {
        if self.shared.clock != Clock::Virtual {
            return false;
        }
        {
            let mut st = self.lock();
            self.tick(&mut st);
            let n = users_of(&st, dev);
            if n > 0 {
                let name = st.devs.dm.devices[dev].name.clone();
                st.k.diagnose(
                    DiagKind::Remark,
                    None,
                    format!("{name}: devres_release_all() frees its managed resources while {n} user(s) are in flight (an ioctl on freed driver data; the kernel waits for none, Rust's Devres revokes after remove and waits only for RCU readers)"),
                    Vec::new(),
                    None,
                );
            }
        }
        self.revoke_unwaited(dev)
    }

    /// modkit's `__device_release_driver()` on the virtual clock, from the revocation on
    /// (the device is bound to `drv`, its consumers unbound, no callback of it runs):
    /// revoke, drain the users, then the remove on a thread of its own, bounded.
    pub(crate) fn unbind_bounded(&self, task: TaskId, dev: DevId, drv: DrvId) -> Result<(), Errno> {
        let mut st = self.lock();
        self.tick(&mut st);
        let name = st.devs.dm.devices[dev].name.clone();
        st.devs.unbind.users.revoked.insert(dev);
        // The device is ours while its users drain (device_lock()).
        st.devs.holder_set(dev, task, "unbind");
        let values = take_values(&mut st, dev);
        drop(st);
        for v in &values {
            v.revoke(Some(Duration::ZERO));
        }
        let mut st = self.lock();
        self.tick(&mut st);
        let due = st.k.now.saturating_add(DRAIN_BOUND);
        loop {
            let users = users_of(&st, dev);
            if users == 0 {
                break;
            }
            if st.k.now >= due {
                let names: Vec<String> = st
                    .devs
                    .dm
                    .devres
                    .live
                    .iter()
                    .filter(|(id, r)| {
                        r.device == dev && st.devs.unbind.users.in_flight.contains_key(id)
                    })
                    .map(|(_, r)| r.name.clone())
                    .collect();
                let m = st.devs.dm.drivers[drv].module;
                st.k.diagnose(
                    DiagKind::Stalled,
                    Some(m),
                    drain_stall_message(&name, users, &names.join(", ")),
                    vec![
                        format!("unbind of {name}"),
                        format!("{users} user(s) of {}", names.join(", ")),
                    ],
                    Some("bound the users' accesses (a Revocable section must not sleep)".into()),
                );
                break;
            }
            let info = WaitInfo {
                key: drain_key(dev),
                reason: format!(
                    "unbind of {name} waits for {users} user(s) of its revoked resources"
                ),
                target: None,
                deadline: Some(due),
            };
            let (g, r) = self.park(st, task, info, false);
            st = g;
            if r.is_none() {
                st.devs.holder_clear(dev);
                return Err(Errno::EINTR);
            }
        }
        let State { k, devs, .. } = &mut *st;
        devs.dm.remove_begin(k, dev);
        devs.holder_set(dev, task, "remove");
        let drv_name = st.devs.dm.drivers[drv].name.clone();
        let module = st.devs.dm.drivers[drv].module;
        let child = self.spawn_remove(&mut st, dev, drv, format!("remove {name} ({drv_name})"));
        if let Some(child) = child {
            let due = st.k.now.saturating_add(REMOVE_BOUND);
            loop {
                if !st.devs.unbind.removes.contains(&child) {
                    break;
                }
                if st.k.now >= due {
                    let waits =
                        st.k.waits
                            .get(child)
                            .map(|w| format!("it waits: {}", w.reason))
                            .unwrap_or_else(|| "it is still running".into());
                    st.k.diagnose(
                        DiagKind::Stalled,
                        Some(module),
                        remove_stall_message(&name, &drv_name, &waits),
                        vec![
                            format!("unbind of {name}"),
                            format!("{drv_name}'s remove callback"),
                            waits.clone(),
                        ],
                        Some(format!(
                            "{drv_name}'s remove must not wait without bound for what only userspace or the hardware can end: bound the wait, or cancel it at unbind"
                        )),
                    );
                    // Abandoned: detached, and the module's text must outlive the code that
                    // may still run: a reference until it returns (none when the module
                    // is already going: the unbind is its rmmod's).
                    let pin = st
                        .k
                        .try_module_get(module, &format!("abandoned remove callback of {name}"))
                        .ok();
                    st.devs.unbind.removes.remove(&child);
                    st.devs.unbind.abandoned.insert(child, pin);
                    break;
                }
                let info = WaitInfo {
                    key: WaitKey::Task(child),
                    reason: format!("unbind of {name} waits for its remove callback"),
                    target: Some(child),
                    deadline: Some(due),
                };
                let (g, r) = self.park(st, task, info, false);
                st = g;
                if r.is_none() {
                    return Err(Errno::EINTR);
                }
            }
        } else {
            // No thread could be started: the remove runs here, unbounded.
            drop(st);
            let _ = self.run_device_code(task, dev, drv, false);
            st = self.lock();
            if st.stalled {
                return Err(Errno::EINTR);
            }
        }
        self.tick(&mut st);
        let State { k, devs, .. } = &mut *st;
        devs.dm.remove_end(k, dev);
        devs.unbind.users.revoked.remove(&dev);
        devs.holder_clear(dev);
        k.wakes.push(crate::probe::device_lock_key(dev));
        self.deliver(&mut st);
        Ok(())
    }

    /// Starts the remove callback of `dev` on a thread of its own, as a new task.
    fn spawn_remove(
        &self,
        st: &mut State,
        dev: DevId,
        drv: DrvId,
        label: String,
    ) -> Option<TaskId> {
        let slot = self.reserve_thread(st)?;
        let task = self.new_task(st, &label);
        st.devs.unbind.removes.insert(task);
        st.devs.running_add(1);
        let h = self.clone();
        let spawned = thread::Builder::new().name(label).spawn(move || {
            let _slot = slot;
            let _ = h.run_device_code(task, dev, drv, false);
            let mut st = h.lock();
            st.devs.running_add(-1);
            if st.devs.unbind.released {
                // The run is over (its kernel may be gone): just end.
                h.finish_task(&mut st, task, None);
                return;
            }
            st.devs.unbind.removes.remove(&task);
            if let Some(Some(pin)) = st.devs.unbind.abandoned.remove(&task) {
                let _ = st.k.module_put(pin);
            }
            h.finish_task(&mut st, task, Some(Outcome::Ok));
        });
        match spawned {
            Ok(j) => {
                st.devs.push_thread(j);
                Some(task)
            }
            Err(_) => {
                st.devs.running_add(-1);
                st.devs.unbind.removes.remove(&task);
                self.finish_task(st, task, Some(Outcome::Err(Errno::ENOMEM)));
                None
            }
        }
    }

    /// At the end of a run: abandoned callbacks still parked leave the wait-for graph (they
    /// are detached, not a hang of the run).
    pub(crate) fn forget_abandoned(&self) {
        let mut st = self.lock();
        let tasks: Vec<TaskId> = st.devs.unbind.abandoned.keys().copied().collect();
        for t in tasks {
            st.k.waits.end(t);
        }
    }

    /// After the run: abandoned callbacks still parked are let go (their waits return as
    /// in a stalled run) so that their threads end.
    pub(crate) fn release_abandoned(&self) {
        let mut st = self.lock();
        st.devs.unbind.released = true;
        self.notify();
    }
}

/// Takes `dev`'s managed values out of the host's table (newest first).
fn take_values(st: &mut State, dev: DevId) -> Vec<Arc<dyn Revoke>> {
    let ids: Vec<u64> = resources_of(st, dev).into_iter().rev().collect();
    ids.iter()
        .filter_map(|id| {
            st.devs.unbind.gates.remove(id);
            st.devs.values_take(*id)
        })
        .collect()
}

impl crate::probe::Devices {
    fn holder_set(&mut self, dev: DevId, task: TaskId, what: &'static str) {
        self.holder.insert(dev, (task, what));
    }

    fn holder_clear(&mut self, dev: DevId) {
        self.holder.remove(&dev);
    }

    fn running_add(&mut self, n: isize) {
        self.running = self.running.saturating_add_signed(n);
    }

    fn push_thread(&mut self, j: thread::JoinHandle<()>) {
        self.threads.push(j);
    }

    fn values_take(&mut self, id: u64) -> Option<Arc<dyn Revoke>> {
        self.values.remove(&id).map(|(_, v)| v)
    }
}
