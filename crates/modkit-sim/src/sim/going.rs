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

use modkit_core::device::DrvId;
use modkit_core::ModState;

use super::Sim;

impl Sim<'_> {
    /// Whether `drv`'s module may probe: COMING (probes inside its init) or LIVE.
    pub(super) fn module_may_probe(&self, drv: DrvId) -> bool {
        matches!(
            self.k.state(self.dm.drivers[drv].module),
            Some(ModState::Coming | ModState::Live)
        )
    }
}
