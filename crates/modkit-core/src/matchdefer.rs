//! A bus's `match()` returning `-EPROBE_DEFER` (`drivers/base/dd.c`): what
//! `__device_attach_driver()` (a device added or retried, trying the drivers of its bus)
//! and `__driver_attach()` (a driver registered, trying the devices of its bus) do with it,
//! by era. [`crate::device::DeviceModel::bus_match`] says whether a match defers; the
//! simulator applies the rule.
//!
//! Sources (read with the `code` corpus):
//! - Before 4.5 both callers did `if (!driver_match_device(drv, dev)) return 0;`: any
//!   non-zero value, -EPROBE_DEFER included, is a match and the probe runs.
//! - 656b8035b0ee "ARM: 8524/1: driver cohandle -EPROBE_DEFER from bus_type.match()"
//!   (Tomeu Vizoso, v4.5; for AMBA, whose match reads the peripheral id and needs the
//!   device's clock and power domain): `ret == -EPROBE_DEFER` →
//!   `dev_dbg(dev, "Device match requests probe deferral\n"); driver_deferred_probe_add(dev);`
//!   and then, falling through to `/* ret > 0 means positive match */`, the probe runs
//!   anyway. `ret < 0` otherwise: `dev_dbg(dev, "Bus failed to match device: %d", ret)`
//!   and that error is returned.
//! - 25e9fbf0fd38 "driver core: Don't probe devices after bus_type.match() probe
//!   deferral" (Isaac J. Manjarres, 2022-08-17, mainline 6.0, Cc stable; backported to
//!   4.9.328, 4.14.293, 4.19.258, 5.4.212, 5.10.142, 5.15.66 and 5.19.8, so
//!   `linux-5.15.N` from 66 follows 6.0's rule: `crate::stable`): `__device_attach_driver()` returns -EPROBE_DEFER after adding the device to
//!   the pending list ("Device can't match with a driver right now, so don't attempt to
//!   match or bind with other drivers on the bus"), so no probe and no further driver;
//!   `__driver_attach()` returns 0 ("Driver could not match with device, but may match
//!   with another device on the bus"): the device is skipped, the next device is tried.
//!   Later, 5.19's `dev->can_match = true` (set on this path) only feeds
//!   `fw_devlink_drivers_done()`, and "Bus failed to match device" became `return 0` in
//!   `__driver_attach()` (Isaac's v2 of the same work); neither changes this model.
//! - `bind_store()` (sysfs `bind`): `if (dev && driver_match_device(drv, dev))`: a
//!   deferring match is non-zero, so a sysfs bind probes in every era.
//!
//! Both messages are `dev_dbg()`: nothing reaches the log without dynamic debug, so no era
//! prints a line for a deferring match. modkit follows 6.0 (and its `deferred_forever`
//! check applies to the key the match waits for).

use crate::policy::{Policy, Version};

/// What a driver core does when the bus's match of a device defers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchDeferRule {
    /// Before 4.5: the non-zero value is a match; the probe runs, the device is not put on
    /// the pending list.
    TakenAsMatch,
    /// 4.5–5.19 (stable lines before their backport of 25e9fbf0fd38): the device joins
    /// the pending list and the probe runs anyway.
    DeferAndProbe,
    /// 6.0+, the stable lines from their backport, and modkit: the device joins the pending list; no probe (`__device_attach()`
    /// tries no further driver, `__driver_attach()` goes on with the next device).
    Defer,
}

/// The rule of `policy`.
pub fn rule(policy: Policy) -> MatchDeferRule {
    match policy.version() {
        None => MatchDeferRule::Defer,
        Some(v) if v < Version::new(4, 5) => MatchDeferRule::TakenAsMatch,
        Some(v) if !crate::stable::has(crate::stable::Change::MatchDeferNoProbe, v) => {
            MatchDeferRule::DeferAndProbe
        }
        Some(_) => MatchDeferRule::Defer,
    }
}

/// Whether the device joins the pending list when its match defers.
pub fn adds_to_pending(policy: Policy) -> bool {
    rule(policy) != MatchDeferRule::TakenAsMatch
}

/// Whether the probe runs when the match defers (not through sysfs `bind`, which always
/// probes).
pub fn probes_anyway(policy: Policy) -> bool {
    rule(policy) != MatchDeferRule::Defer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_by_era() {
        let p = |s: &str| -> Policy { s.parse().unwrap() };
        assert_eq!(rule(p("linux-4.4")), MatchDeferRule::TakenAsMatch);
        assert_eq!(rule(p("linux-4.5")), MatchDeferRule::DeferAndProbe);
        assert_eq!(rule(p("linux-5.19.7")), MatchDeferRule::DeferAndProbe);
        // 25e9fbf0fd38's stable backports (crate::stable).
        assert_eq!(rule(p("linux-5.19.8")), MatchDeferRule::Defer);
        assert_eq!(rule(p("linux-5.15.65")), MatchDeferRule::DeferAndProbe);
        assert_eq!(rule(p("linux-5.15.66")), MatchDeferRule::Defer);
        assert_eq!(rule(p("linux-5.10.141")), MatchDeferRule::DeferAndProbe);
        assert_eq!(rule(p("linux-5.10.142")), MatchDeferRule::Defer);
        assert_eq!(rule(p("linux-4.19.258")), MatchDeferRule::Defer);
        assert_eq!(rule(p("linux-6.0")), MatchDeferRule::Defer);
        assert_eq!(rule(p("modkit")), MatchDeferRule::Defer);
        assert!(!adds_to_pending(p("linux-4.4")));
        assert!(adds_to_pending(p("linux-5.10")));
        assert!(probes_anyway(p("linux-5.10")));
        assert!(!probes_anyway(p("linux-6.1")));
    }
}
