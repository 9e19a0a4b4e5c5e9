//! `Devres<T>`: a device-managed resource (`rust/kernel/devres.rs`), a [`Revocable`] that
//! the host revokes when the device is unbound: after the driver's remove, newest first,
//! exactly once (`devres_release_all()` in `__device_release_driver()`), or at once when
//! the probe that took it fails.
//!
//! Revocation refuses new access at once and waits for the accesses in flight (guards).
//! Under the `modkit` policy the wait is bounded ([`crate::HostHandle::set_unbind_stall_after`]):
//! a guard still held at the bound is reported as a `stalled` diagnostic naming the device,
//! the driver and the resource, and the unbind goes on (the value itself lives until the
//! last guard drops, so nothing dangles). Under `linux-X.Y` the unbind waits, as the
//! kernel's `synchronize_rcu()` in `Revocable::revoke()` does.

use std::time::Duration;

use crate::revocable::{Revocable, RevocableGuard};

/// A resource managed by a device's binding: usable until the device is unbound.
///
/// ```
/// use modkit::{Device, DeviceDriver, Host, Module};
/// use std::sync::{Arc, Mutex};
///
/// let host = Host::new("modkit".parse().unwrap());
/// host.add_bus("endpoint").unwrap();
/// let slot = Arc::new(Mutex::new(None));
/// let s = slot.clone();
/// host.add_module(Module::new("echo").driver(
///     DeviceDriver::new("echo", "endpoint").matches("endpoint:echo").probe(move |ctx| {
///         *s.lock().unwrap() = Some(ctx.devm(|x: &str| x.to_string())?);
///         Ok(())
///     }),
/// )).unwrap();
/// host.modprobe("echo").unwrap();
/// host.add_device(Device::new("e0", "endpoint").modalias("endpoint:echo")).unwrap();
/// let res = slot.lock().unwrap().clone().unwrap();
/// assert_eq!((res.try_access().unwrap())("hi"), "hi");
/// host.unbind("e0").unwrap();
/// assert!(res.try_access().is_none());              // revoked by the unbind
/// ```
pub struct Devres<T> {
    pub(crate) inner: Revocable<T>,
    pub(crate) device: String,
    pub(crate) name: String,
}

impl<T> Clone for Devres<T> {
    fn clone(&self) -> Self {
        Devres {
            inner: self.inner.clone(),
            device: self.device.clone(),
            name: self.name.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Devres<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devres")
            .field("device", &self.device)
            .field("name", &self.name)
            .field("revoked", &self.inner.is_revoked())
            .finish()
    }
}

impl<T> Devres<T> {
    /// Access to the resource, or `None` once the device was unbound. The unbind waits for
    /// the guard to drop (under `modkit`, up to a bound, then reports a stall).
    pub fn try_access(&self) -> Option<RevocableGuard<T>> {
        self.inner.try_access()
    }

    /// True once the device was unbound (or the probe that took it failed).
    pub fn is_revoked(&self) -> bool {
        self.inner.is_revoked()
    }

    /// The device it belongs to.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The resource's name (what [`crate::ProbeCtx::devm_named`] gave, else the type's).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A managed resource with its type erased: what the host revokes.
pub(crate) trait Revoke: Send + Sync {
    /// Revokes; `None`: wait for every guard; `Some(d)`: at most `d`. False when guards were
    /// still held at the bound.
    fn revoke(&self, bound: Option<Duration>) -> bool;
}

impl<T: Send + Sync> Revoke for Revocable<T> {
    fn revoke(&self, bound: Option<Duration>) -> bool {
        match bound {
            None => {
                self.revoke();
                true
            }
            Some(d) => self.revoke_timeout(d).1,
        }
    }
}
