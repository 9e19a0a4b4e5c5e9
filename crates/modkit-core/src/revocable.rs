//! Users in flight of a device's managed resources, and modkit's unbind that revokes them,
//! waits for them, and bounds the driver's remove callback (issue 10, item 3; seed 004's
//! hot-unplug deadlock).
//!
//! The kernel (`drivers/base/dd.c`, `__device_release_driver()`, every era): device links'
//! consumers are unbound, then `drv->remove()` (or `bus->remove()`) is called and waited for
//! without bound, then `devres_release_all()` frees the managed resources. Nothing waits for
//! code still using those resources (an ioctl in flight on a C driver's `devm` data reads
//! freed memory), and a remove callback that blocks — waiting for the GPU to go idle, with
//! an ioctl that never completes — leaves the sysfs `unbind` writer (or `rmmod`) in D state
//! for ever, holding the device lock; the hung-task detector only reports it. DRM chose not
//! to wait (`drm_dev_unplug()`'s SRCU sections only guard entry).
//!
//! Rust for Linux (`rust/kernel/revocable.rs`, `rust/kernel/devres.rs`: 0494d9c82b0c and
//! 76c01ded724b "rust: add devres abstraction", merged with `driver-core-6.14-rc1`, so
//! 6.14; docs/loader-versions.md): a
//! `Devres<T>` is a `Revocable<T>` whose `revoke()` runs from the devres callback, i.e.
//! after `remove()`, and waits for readers with `synchronize_rcu()`; a reader's
//! `try_access()` is an RCU read-side section (no sleeping), and after revocation returns
//! `None`, which drivers turn into an error: `ENXIO` (`try_access().ok_or(ENXIO)` in
//! devres.rs's own example and in nova-core's `Spec::new()`). The remove callback itself is
//! still waited for without bound.
//!
//! modkit: unbind revokes the device's resources first (new users get ENXIO), waits for the
//! users in flight to drain for at most [`DRAIN_BOUND`], then runs the remove callback on a
//! task of its own and waits for it at most [`REMOVE_BOUND`]; a callback still running then
//! is reported as `stalled` naming the device, the driver and the callback, and is
//! abandoned (detached, as a host detaches a thread it cannot join, holding a reference on
//! its module until it returns): the device ends unbound, its resources released, and the
//! run goes on. Users still in flight after the drain bound are named in a `stalled`
//! diagnostic too.

use std::collections::{BTreeMap, BTreeSet};

use crate::devres::DevId;
use crate::kernel::{Time, SEC};
use crate::policy::Policy;

/// How long modkit's unbind waits for users in flight of revoked resources.
pub const DRAIN_BOUND: Time = 5 * SEC;

/// How long modkit's unbind waits for a driver's remove callback.
pub const REMOVE_BOUND: Time = 5 * SEC;

/// Whether unbind revokes the resources and waits for their users before remove, and
/// bounds the remove callback (modkit only).
pub fn revokes_before_remove(policy: Policy) -> bool {
    policy.is_modkit()
}

/// Users in flight per resource, and the devices whose resources are revoked.
#[derive(Debug, Clone, Default)]
pub struct Users {
    /// Users in flight, per resource id ([`crate::devres::DevresTable`]).
    pub in_flight: BTreeMap<u64, u32>,
    /// Devices whose resources are revoked (an unbind under way or done).
    pub revoked: BTreeSet<DevId>,
}

impl Users {
    /// A user begins (`try_access()` succeeded).
    pub fn begin(&mut self, res: u64) {
        *self.in_flight.entry(res).or_insert(0) += 1;
    }

    /// A user ends; returns the users left on that resource.
    pub fn end(&mut self, res: u64) -> u32 {
        let n = self.in_flight.entry(res).or_insert(0);
        *n = n.saturating_sub(1);
        let left = *n;
        if left == 0 {
            self.in_flight.remove(&res);
        }
        left
    }

    /// Users in flight of any of `resources`.
    pub fn of(&self, resources: &[u64]) -> u32 {
        resources
            .iter()
            .map(|r| self.in_flight.get(r).copied().unwrap_or(0))
            .sum()
    }
}

/// The `stalled` message for a remove callback that did not return in time.
pub fn remove_stall_message(dev: &str, drv: &str, waits: &str) -> String {
    format!(
        "unbind of {dev}: the remove callback of driver {drv} has not returned after {} s ({waits}); modkit abandons it: {dev} is unbound, its resources released",
        REMOVE_BOUND / SEC
    )
}

/// The `stalled` message for users that did not drain in time.
pub fn drain_stall_message(dev: &str, n: u32, names: &str) -> String {
    format!(
        "unbind of {dev}: {n} user(s) of its revoked resources ({names}) still in flight after {} s; remove goes on without them",
        DRAIN_BOUND / SEC
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_count_up_and_down() {
        let mut u = Users::default();
        u.begin(3);
        u.begin(3);
        u.begin(4);
        assert_eq!(u.of(&[3, 4]), 3);
        assert_eq!(u.end(3), 1);
        assert_eq!(u.end(3), 0);
        assert_eq!(u.end(3), 0);
        assert_eq!(u.of(&[3]), 0);
        assert!(revokes_before_remove("modkit".parse().unwrap()));
        assert!(!revokes_before_remove("linux-6.12".parse().unwrap()));
    }
}
