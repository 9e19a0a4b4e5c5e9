//! A driver whose module is GOING: the kernel probes with it, modkit does not.
//!
//! Between `delete_module()` setting the module GOING and its exit's
//! `driver_unregister()` (`bus_remove_driver()`: `klist_remove()` from the bus's list, then
//! `driver_detach()`), the driver is still on its bus's list, and the kernel's driver core
//! looks at no module state on the way to the probe: `deferred_probe_work_func()` (or
//! `device_add()`, or sysfs `bind`) → `bus_probe_device()` → `__device_attach()` →
//! `bus_for_each_drv(__device_attach_driver)` → `driver_probe_device()` →
//! `really_probe()` (drivers/base/dd.c takes no module reference and checks no
//! `mod->state`, 4.4 to 6.x alike; a bus may, e.g. nvdimm's `nvdimm_bus_probe()` takes its
//! provider with `try_module_get()`, but the platform bus does not). So the kernel probes
//! in that window, and the exit's `driver_unregister()` unbinds the device right after:
//! the probe's and the remove's bodies run and print what they print, and the device is
//! left unbound (`driver_detach()` offers it to no other driver, even one that matches).
//! Under `linux-X.Y` the simulator does the same (the core allows it and names it in a
//! remark, `modkit_core::going`).
//!
//! Under `modkit` a driver whose module is GOING probes nothing: that is modkit's policy
//! (the host library's too, crates/modkit/src/probe.rs, h1 commit 8ab9dcf), not the
//! kernel's; the core reports such a probe under `modkit` as a broken invariant.
//!
//! Also here: a registering driver's `driver_attach()` reaching a device that another task
//! is probing (or removing) waits for the device lock, as the kernel's `__driver_attach()`
//! does (`__device_driver_lock(dev, dev->parent)` before `driver_probe_device()`, which
//! then finds the device bound, -EBUSY, and goes on to the next device). The simulator
//! used to skip such a device at once (h3's `driver_attach_waits_for_a_device_being_probed`,
//! crates/modkit-hostdriver/tests/device_differential.rs: the host, like the kernel, waits).
//! A device this very task is probing or removing (a probe whose body loads the module
//! whose driver reaches it) is still skipped: the kernel's mutex would deadlock there.
//! The registration's list (`DeviceModel::register_driver()`) holds the matching devices
//! in flight at that moment too, so after the wait a device whose probe failed (or whose
//! driver was unbound) is probed by the new driver, as `__driver_probe_device()` does when
//! `dev->driver` is NULL again; a device being deleted (`kill_device()`: `dev->p->dead`,
//! and off the bus's list) is not.

use modkit_core::device::{DevId, DevState, DrvId};
use modkit_core::ModState;

use super::devices::Cur;
use super::{Frame, Sim, TaskId};

impl Sim<'_> {
    /// Whether `drv`'s module may probe: COMING (probes inside its init) or LIVE; GOING
    /// too under `linux-X.Y` (the kernel's window before the exit's `driver_unregister()`).
    pub(super) fn module_may_probe(&self, drv: DrvId) -> bool {
        match self.k.state(self.dm.drivers[drv].module) {
            Some(ModState::Coming | ModState::Live) => true,
            Some(ModState::Going) => modkit_core::going::probes_while_going(self.k.policy),
            _ => false,
        }
    }
}

impl Sim<'_> {
    /// `__driver_attach()`'s device lock: true (and `tid` parked on the device's lock)
    /// when another task is probing or removing `dev`.
    pub(super) fn attach_waits_for_lock(&mut self, tid: TaskId, dev: DevId) -> bool {
        if !matches!(
            self.dm.devices[dev].state,
            DevState::Probing(_) | DevState::Removing(_)
        ) {
            return false;
        }
        // The frames below the running one (whose copy on the stack is stale).
        let mine = self.tasks.get(&tid).is_some_and(|t| {
            let below = &t.frames[..t.frames.len().saturating_sub(1)];
            below.iter().any(|f| match f {
                Frame::Bind(b) => match b.cur {
                    Some(Cur::Probing { dev: d, .. }) | Some(Cur::Removing(d)) => d == dev,
                    Some(Cur::RemoveWait(d, _, _)) => d == dev,
                    _ => false,
                },
                _ => false,
            })
        });
        if mine {
            return false;
        }
        self.park_on_device_lock(tid, dev);
        true
    }
}
