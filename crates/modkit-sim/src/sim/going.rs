//! A driver whose module is GOING probes nothing.
//!
//! Between `delete_module()` setting the module GOING and its exit's
//! `driver_unregister()` (`bus_remove_driver()`: `klist_remove()` from the bus's list, then
//! `driver_detach()`), the driver is still on its bus's list, and the kernel's driver core
//! looks at no module state on the way to the probe: `deferred_probe_work_func()` →
//! `bus_probe_device()` → `__device_attach()` → `bus_for_each_drv(__device_attach_driver)`
//! → `driver_probe_device()` → `really_probe()` (drivers/base/dd.c takes no module
//! reference and checks no `mod->state`; a bus may, e.g. nvdimm's `nvdimm_bus_probe()`
//! takes its provider with `try_module_get()`, but the platform bus does not). So the
//! kernel can probe in that window, and the exit's `driver_unregister()` unbinds the device
//! right after. That probe runs code of a module on its way out, which the core's
//! invariant (`DeviceModel::probe_begin`) reports; the host library closes the window
//! (h1, commit 8ab9dcf, "a driver whose module is GOING probes nothing"), and the
//! simulator does the same under every policy, so that both agree: the end state is the
//! kernel's (the device unbound once the exit has run), without the probe and remove
//! bodies the kernel would run in between.
//!
//! Also here: a registering driver's `driver_attach()` reaching a device that another task
//! is probing (or removing) waits for the device lock, as the kernel's `__driver_attach()`
//! does (`__device_driver_lock(dev, dev->parent)` before `driver_probe_device()`, which
//! then finds the device bound, -EBUSY, and goes on to the next device). The simulator
//! used to skip such a device at once (h3's `driver_attach_waits_for_a_device_being_probed`,
//! crates/modkit-hostdriver/tests/device_differential.rs: the host, like the kernel, waits).
//! A device this very task is probing or removing (a probe whose body loads the module
//! whose driver reaches it) is still skipped: the kernel's mutex would deadlock there.

use modkit_core::device::{DevId, DevState, DrvId};
use modkit_core::ModState;

use super::devices::Cur;
use super::{Frame, Sim, TaskId};

impl Sim<'_> {
    /// Whether `drv`'s module may probe: COMING (probes inside its init) or LIVE.
    pub(super) fn module_may_probe(&self, drv: DrvId) -> bool {
        matches!(
            self.k.state(self.dm.drivers[drv].module),
            Some(ModState::Coming | ModState::Live)
        )
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
