//! Users in flight of a device's managed resources (`use_devres`), and modkit's unbind that
//! revokes them, waits for them to drain, and bounds the driver's remove callback (rules and
//! words in `modkit_core::revocable`).
//!
//! Under `linux-X.Y` the driver core's own order stands (sim/devices.rs, `Job::Release`):
//! remove runs on the unbinding task and is waited for without bound (a callback that never
//! returns leaves the task parked: the run's `stalled` diagnostic), then the resources are
//! released whoever still uses them (noted as a `remark`).

use modkit_core::device::{DevId, DevState};
use modkit_core::revocable::{
    drain_stall_message, remove_stall_message, DRAIN_BOUND, REMOVE_BOUND,
};
use modkit_core::{DiagKind, Errno, Outcome, Resume, TaskId, Time, WaitInfo, WaitKey};

use super::devices::{device_lock, Bind, Cur, DevStep, Job};
use super::{ActStep, Sim};

/// The wait key of an unbind waiting for the users of `dev`'s resources to drain.
fn drain_key(dev: DevId) -> WaitKey {
    WaitKey::Completion(format!("modkit: users of the resources of device {dev}"))
}

impl Sim<'_> {
    /// The ids of the resources `dev` holds.
    fn resources_of(&self, dev: DevId) -> Vec<u64> {
        self.dm.devres.ids_of(dev)
    }

    /// `use_devres = NAME`: `try_access()` of the resource; ENXIO when it is gone or
    /// revoked, else a user in flight for `dur`.
    pub(super) fn use_devres_begin(&mut self, name: &str, dur: Time) -> DevStep {
        let found = self.dm.devres.find(name);
        let Some((id, dev)) = found else {
            return DevStep::Done(Outcome::Err(Errno::ENXIO));
        };
        if self.devs.users.revoked.contains(&dev) {
            return DevStep::Done(Outcome::Err(Errno::ENXIO));
        }
        self.devs.users.begin(id);
        let due = self.k.now.saturating_add(dur);
        DevStep::Push(Bind::new([Job::Use(id, dev, due)]))
    }

    /// A user of resource `res` of `dev` ends; the unbind draining `dev` is woken when it
    /// was the last.
    pub(super) fn use_devres_end(&mut self, res: u64, dev: DevId) {
        if self.devs.users.end(res) == 0 && self.devs.users.of(&self.resources_of(dev)) == 0 {
            self.k.wakes.push(drain_key(dev));
        }
    }

    /// An abandoned remove callback returned: its reference on the module goes.
    pub(super) fn abandoned_done(&mut self, tid: TaskId) {
        if let Some(pin) = self.devs.abandoned.remove(&tid) {
            let _ = self.k.module_put(pin);
        }
    }

    /// At the end of a run: abandoned callbacks still parked are detached, not a hang of
    /// the run (their `stalled` diagnostic was raised at the bound).
    pub(super) fn forget_abandoned(&mut self) {
        for &t in self.devs.abandoned.keys() {
            self.k.waits.end(t);
        }
    }

    /// linux-X.Y: `devres_release_all()` after remove frees what users in flight still use;
    /// noted (a C driver's use-after-free), the kernel prints nothing.
    pub(super) fn note_release_in_use(&mut self, dev: DevId) {
        let n = self.devs.users.of(&self.resources_of(dev));
        if n == 0 {
            return;
        }
        let name = self.dm.devices[dev].name.clone();
        self.k.diagnose(
            DiagKind::Remark,
            None,
            format!("{name}: devres_release_all() frees its managed resources while {n} user(s) are in flight (an ioctl on freed driver data; the kernel waits for none, Rust's Devres revokes after remove and waits only for RCU readers)"),
            Vec::new(),
            None,
        );
    }

    /// modkit's `__device_release_driver()` from the revocation on: revoke, drain the
    /// users (at most [`DRAIN_BOUND`]), then the remove callback on a task of its own,
    /// waited for at most [`REMOVE_BOUND`]. `Some` when the task parks.
    pub(super) fn unbind_bounded(
        &mut self,
        tid: TaskId,
        b: &mut Bind,
        dev: DevId,
    ) -> Option<ActStep> {
        let DevState::Bound(drv) = self.dm.devices[dev].state else {
            return None;
        };
        let now = self.k.now;
        if self.devs.users.revoked.insert(dev) {
            self.devs
                .drain_due
                .insert(dev, now.saturating_add(DRAIN_BOUND));
        }
        let users = self.devs.users.of(&self.resources_of(dev));
        let due = self.devs.drain_due.get(&dev).copied().unwrap_or(now);
        if users > 0 && now < due {
            b.jobs.push_front(Job::Release(dev));
            b.cur = Some(Cur::Waiting(Job::Release(dev)));
            let name = self.dm.devices[dev].name.clone();
            self.park(
                tid,
                WaitInfo {
                    key: drain_key(dev),
                    reason: format!(
                        "unbind of {name} waits for {users} user(s) of its revoked resources"
                    ),
                    target: None,
                    deadline: Some(due),
                },
                false,
            );
            return Some(ActStep::Parked);
        }
        if self.devs.drain_due.remove(&dev).is_some() && users > 0 {
            let name = self.dm.devices[dev].name.clone();
            let names: Vec<String> = self
                .dm
                .devres
                .live
                .iter()
                .filter(|(id, r)| r.device == dev && self.devs.users.in_flight.contains_key(id))
                .map(|(_, r)| r.name.clone())
                .collect();
            self.k.diagnose(
                DiagKind::Stalled,
                Some(self.dm.drivers[drv].module),
                drain_stall_message(&name, users, &names.join(", ")),
                vec![
                    format!("unbind of {name}"),
                    format!("{users} user(s) of {}", names.join(", ")),
                ],
                Some("bound the users' accesses (a Revocable section must not sleep)".into()),
            );
        }
        self.dm.remove_begin(&mut self.k, dev)?;
        let decl = &self.sc.devices.drivers[drv];
        let frame = super::devices::remove_frame(decl, dev);
        let name = self.dm.devices[dev].name.clone();
        let label = format!("remove {name} ({})", decl.spec.name);
        let child = self.spawn_task(vec![frame], label, None, None);
        let due = now.saturating_add(REMOVE_BOUND);
        Some(self.park_on_remove(tid, b, dev, child, due))
    }

    fn park_on_remove(
        &mut self,
        tid: TaskId,
        b: &mut Bind,
        dev: DevId,
        child: TaskId,
        due: Time,
    ) -> ActStep {
        b.cur = Some(Cur::RemoveWait(dev, child, due));
        let name = self.dm.devices[dev].name.clone();
        self.park(
            tid,
            WaitInfo {
                key: WaitKey::Task(child),
                reason: format!("unbind of {name} waits for its remove callback"),
                target: Some(child),
                deadline: Some(due),
            },
            false,
        );
        ActStep::Parked
    }

    /// The wait for a remove callback ended: it returned, or it is abandoned at its bound
    /// with a `stalled` diagnostic naming it. `Some` when the task parks again.
    pub(super) fn remove_wait_end(
        &mut self,
        tid: TaskId,
        b: &mut Bind,
        dev: DevId,
        child: TaskId,
        due: Time,
        resume: Resume,
    ) -> Option<ActStep> {
        if self.tasks.contains_key(&child) {
            if resume != Resume::TimedOut && self.k.now < due {
                return Some(self.park_on_remove(tid, b, dev, child, due));
            }
            let name = self.dm.devices[dev].name.clone();
            let (drv, module) = match self.dm.devices[dev].state {
                DevState::Removing(x) => (
                    self.dm.drivers[x].name.clone(),
                    Some(self.dm.drivers[x].module),
                ),
                _ => ("?".to_string(), None),
            };
            let waits = self
                .k
                .waits
                .get(child)
                .map(|w| format!("it waits: {}", w.reason))
                .unwrap_or_else(|| "it is still running".into());
            self.k.diagnose(
                DiagKind::Stalled,
                module,
                remove_stall_message(&name, &drv, &waits),
                vec![
                    format!("unbind of {name}"),
                    format!("{drv}'s remove callback"),
                    waits.clone(),
                ],
                Some(format!(
                    "{drv}'s remove must not wait without bound for what only userspace or the hardware can end: bound the wait, or cancel it at unbind"
                )),
            );
            // Abandoned: nobody waits for it any more (a host detaches the thread it
            // cannot join); it may still end later. The module's text must outlive the code
            // that may still run: the callback holds a reference until it returns. When the
            // module is already going (the unbind is its rmmod's), no reference can be
            // taken and the task is dropped with the module.
            let pin = module.and_then(|m| {
                self.k
                    .try_module_get(m, &format!("abandoned remove callback of {name}"))
                    .ok()
            });
            match pin {
                Some(p) => {
                    self.devs.abandoned.insert(child, p);
                }
                None => {
                    self.tasks.remove(&child);
                    self.k.waits.forget(child);
                }
            }
        }
        self.dm.remove_end(&mut self.k, dev);
        self.devs.users.revoked.remove(&dev);
        self.k.wakes.push(device_lock(dev));
        None
    }
}
