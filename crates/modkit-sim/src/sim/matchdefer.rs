//! A bus's match returning -EPROBE_DEFER (`[[device]] match_defer`), in the driver core's
//! two loops: `__device_attach_driver()` (a device added or retried) and `__driver_attach()`
//! (a driver registered). The rule per era is `modkit_core::matchdefer`.

use modkit_core::device::{DevId, DrvId};
use modkit_core::matchdefer::{rule, MatchDeferRule};

use super::Sim;

impl Sim<'_> {
    /// `__device_attach()` of a device whose match defers: the drivers to probe (none when
    /// the era stops at the deferral), or `None` when its match does not defer.
    pub(super) fn attach_match_defer(&mut self, dev: DevId) -> Option<Vec<DrvId>> {
        if !self.dm.match_defers(&self.k, dev) {
            return None;
        }
        // The match defers whatever the driver: every registered driver of the bus is
        // asked (bus_for_each_drv()), the first one's answer decides.
        let on_bus = self.dm.drivers_on_bus(dev);
        if on_bus.is_empty() {
            return Some(Vec::new());
        }
        Some(match rule(self.k.policy) {
            MatchDeferRule::TakenAsMatch => on_bus,
            MatchDeferRule::DeferAndProbe => {
                self.dm.match_defer_add(dev, true);
                on_bus
            }
            MatchDeferRule::Defer => {
                self.dm.match_defer_add(dev, false);
                self.match_defer_forever(dev);
                Vec::new()
            }
        })
    }

    /// `__driver_attach()` of a device whose match defers: whether the probe runs.
    pub(super) fn driver_attach_match_defer(&mut self, dev: DevId) -> bool {
        match rule(self.k.policy) {
            MatchDeferRule::TakenAsMatch => true,
            MatchDeferRule::DeferAndProbe => {
                self.dm.match_defer_add(dev, true);
                true
            }
            MatchDeferRule::Defer => {
                self.dm.match_defer_add(dev, false);
                self.match_defer_forever(dev);
                false
            }
        }
    }

    /// modkit: a match that waits for something nothing in the scenario provides gets the
    /// `deferred_forever` diagnostic at once, as a probe's need does.
    fn match_defer_forever(&mut self, dev: DevId) {
        if !self.k.policy.is_modkit() {
            return;
        }
        let Some(key) = self.dm.devices[dev].match_defer.clone() else {
            return;
        };
        if self.devs.providers.is_none() {
            self.devs.providers = Some(super::devices::providers(self.sc, &self.dm));
        }
        let known = self.devs.providers.as_ref().expect("computed");
        if known.contains(&key) || !self.devs.reported.insert((dev, key.clone())) {
            return;
        }
        let d = self.dm.devices[dev].name.clone();
        let bus = self.dm.devices[dev].bus.clone();
        self.k.diagnose(
            modkit_core::DiagKind::DeferredForever,
            None,
            format!("{d}: the {bus} bus's match defers until {key} is there, which nothing provides: it would stay on the pending list for ever"),
            vec![d.clone(), format!("{bus} match waits for {key}"), "nothing in the scenario provides it".to_string()],
            Some(format!("add the module that provides {key}, or drop `match_defer` from {d}")),
        );
    }
}
