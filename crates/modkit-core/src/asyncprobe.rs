//! Asynchronous probing (`drivers/base/dd.c`, `kernel/module/main.c`): a driver with
//! `probe_type = PROBE_PREFER_ASYNCHRONOUS` is not probed by the task that registers it or
//! adds the device, but by an async worker, and a module's load waits for the async work
//! after the module is LIVE.
//!
//! Sources (read with the `code` corpus):
//! - Dmitry Torokhov, "driver-core: add asynchronous probing support for drivers" (v4.2,
//!   765230b5f084): `driver_allows_async_probing()`; `__driver_attach()` schedules
//!   `__driver_attach_async_helper()` with `async_schedule_dev()` for each matching unbound
//!   device and returns; `__device_attach()` probes the drivers that do not allow async
//!   probing at once and, if none bound and an async one matched (`have_async`), schedules
//!   `__device_attach_async_helper()`. The sysfs `bind` (`device_driver_attach()`) is
//!   always synchronous.
//! - `do_init_module()`: after the module is LIVE (and its KOBJ_ADD uevent),
//!   `if (!mod->async_probe_requested && (current->flags & PF_USED_ASYNC))
//!   async_synchronize_full();` (Tejun Heo, 774a1221e862, 3.8: only when the init
//!   scheduled async work); Igor Pylypiv's 67d6212afda2 (2022-01-27, "Revert "module,
//!   async: async_synchronize_full() on module init iff async is used""; release chosen:
//!   5.18, id pinned, release not) made it unconditional: every module load waits for all
//!   async work of the system, whoever scheduled it.
//!
//! Not modelled: the `async_probe` module parameter and `module.async_probe` (which skip
//! the wait), `driver_async_probe=` on the command line, `PROBE_FORCE_SYNCHRONOUS`'s
//! distinction from the default, the async domain's ordering by cookie, and
//! `wait_for_device_probe()`.

use crate::policy::{Policy, Version};

/// Whether every module load waits for all outstanding async work (5.18+), rather than
/// only a load whose init scheduled some (before).
pub fn init_waits_for_all(policy: Policy) -> bool {
    match policy.version() {
        None => false,
        Some(v) => v >= Version::new(5, 18),
    }
}

/// Whether the load of a module that just went LIVE waits for the async work in flight:
/// `scheduled` tells whether its init scheduled some (`PF_USED_ASYNC`). Under modkit only
/// the module's own async probes would matter; the model takes the pre-5.18 rule (a load
/// waits only for what its init started), which never makes one module's load wait for
/// another's probes.
pub fn load_waits(policy: Policy, scheduled: bool) -> bool {
    scheduled || init_waits_for_all(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_after_init_by_era() {
        let p = |s: &str| -> Policy { s.parse().unwrap() };
        assert!(!load_waits(p("linux-5.15"), false));
        assert!(load_waits(p("linux-5.15"), true));
        assert!(load_waits(p("linux-6.1"), false));
        assert!(!load_waits(p("modkit"), false));
        assert!(load_waits(p("modkit"), true));
    }
}
