//! A bus match returning `-EPROBE_DEFER` on the host ([`crate::Device::match_defer`]), in
//! the driver core's two loops: `__device_attach_driver()` (a device added or retried) and
//! `__driver_attach()` (a driver registered). The rule per era is
//! `modkit_core::matchdefer`'s (the simulator's twin is `modkit-sim`'s
//! `sim/matchdefer.rs`); sysfs `bind` treats a deferring match as a match in every era
//! (`bind_store()`: `if (dev && driver_match_device(drv, dev))`), which
//! [`HostHandle::bind`] does through `DeviceModel::bus_match`.

use modkit_core::device::{BusMatch, DevId, DevState, DrvId};
use modkit_core::matchdefer::{rule, MatchDeferRule};

use crate::host::HostHandle;

impl HostHandle {
    /// `__device_attach()` of `dev` when its match defers: the drivers to probe, in
    /// registration order (every registered driver of the bus: the match defers whatever
    /// the driver, and the first answer decides; none when the era stops at the deferral
    /// or the device is not unbound), or `None` when its match does not defer.
    pub(crate) fn attach_match_defer(&self, dev: DevId) -> Option<Vec<DrvId>> {
        let mut st = self.lock();
        if !st.devs.dm.match_defers(&st.k, dev) {
            return None;
        }
        let d = &st.devs;
        if d.dm.devices[dev].state != DevState::Unbound || d.deleting.contains(&dev) {
            return Some(Vec::new());
        }
        let on_bus: Vec<DrvId> =
            d.dm.drivers_on_bus(dev)
                .into_iter()
                .filter(|x| !d.leaving.contains(x))
                .collect();
        if on_bus.is_empty() {
            return Some(Vec::new());
        }
        let r = rule(st.k.policy);
        match r {
            MatchDeferRule::TakenAsMatch => Some(on_bus),
            MatchDeferRule::DeferAndProbe => {
                st.devs.dm.match_defer_add(dev, true);
                Some(on_bus)
            }
            MatchDeferRule::Defer => {
                st.devs.dm.match_defer_add(dev, false);
                drop(st);
                self.match_deferred(dev);
                Some(Vec::new())
            }
        }
    }

    /// `__driver_attach()` of `dev` by `drv`: whether the probe runs (true when the match
    /// does not defer; else the era's rule, which may put the device on the pending list).
    pub(crate) fn driver_attach_match_defer(&self, dev: DevId, drv: DrvId) -> bool {
        let mut st = self.lock();
        if st.devs.dm.bus_match(&st.k, drv, dev) != BusMatch::Defer {
            return true;
        }
        match rule(st.k.policy) {
            MatchDeferRule::TakenAsMatch => true,
            MatchDeferRule::DeferAndProbe => {
                st.devs.dm.match_defer_add(dev, true);
                true
            }
            MatchDeferRule::Defer => {
                st.devs.dm.match_defer_add(dev, false);
                drop(st);
                self.match_deferred(dev);
                false
            }
        }
    }

    /// A deferring match left `dev` pending without a probe: the engine's hook
    /// ([`crate::driver::Driver::on_match_deferred`]), outside the lock.
    fn match_deferred(&self, dev: DevId) {
        let hook = self.lock().devs.waits.match_hook.clone();
        if let Some(f) = hook {
            f(self, dev);
        }
    }
}
