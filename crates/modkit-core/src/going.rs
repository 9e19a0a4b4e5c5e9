//! A probe with a driver whose module is GOING (issue 10): the kernel's window, modkit's
//! rule.
//!
//! `delete_module()` sets the module GOING (`try_stop_module()`, under `module_mutex`),
//! then calls its exit (kernel/module.c, kernel/module/main.c from 5.19; the same order in
//! every era modkit models). Until the exit's `driver_unregister()` reaches
//! `bus_remove_driver()` and takes the driver off its bus's list
//! (`klist_remove(&drv->p->knode_bus)`, then `driver_detach()`), the driver is still on the
//! list that `__device_attach()` walks, and nothing on the probe path looks at the module's
//! state: `bus_for_each_drv(__device_attach_driver)` → `driver_probe_device()` →
//! `__driver_probe_device()` (5.15+: `dev->p->dead || !device_is_registered(dev)`,
//! `dev->driver`) → `really_probe()` (drivers/base/dd.c takes no module reference and checks
//! no `mod->state`, 4.4 to 6.x alike). So a device added, a deferred-probe retry or a sysfs
//! `bind` in that window probes with the departing driver, and the exit's
//! `driver_unregister()` unbinds the device right after: the probe's and the remove's
//! bodies run. The end state is not always that of no probe: `driver_detach()` offers the
//! released device to no other driver, so a device that another loaded driver of the bus
//! also matches stays unbound, where modkit's refusal lets that driver bind it at once
//! (crates/modkit-sim/tests/device_properties.rs, `the_going_window_seed`).
//!
//! Under `linux-X.Y` the model does what the kernel does: such a probe is allowed (a
//! [`DiagKind::Remark`](crate::DiagKind::Remark) names it: code of a module on its way out
//! runs), and so is its remove in the exit. Under `modkit` no probe starts with a driver
//! whose module is not COMING or LIVE (the simulator and the host library leave the
//! driver out of the walk; modkit's own choice, as running new code of a module whose
//! exit has begun only to undo it at once gains nothing), and the core reports such a probe
//! as a broken invariant.

use crate::policy::Policy;

/// Whether a driver whose module is GOING may still start a probe (the kernel's window
/// between `delete_module()`'s GOING and the exit's `driver_unregister()`): under
/// `linux-X.Y` yes, under `modkit` no.
pub fn probes_while_going(policy: Policy) -> bool {
    !policy.is_modkit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_linux_probes_in_the_going_window() {
        let p = |s: &str| s.parse::<Policy>().unwrap();
        assert!(!probes_while_going(p("modkit")));
        for v in ["linux-4.4", "linux-5.15", "linux-6.1", "linux-6.12"] {
            assert!(probes_while_going(p(v)), "{v}");
        }
    }
}
