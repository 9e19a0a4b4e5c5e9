//! The driver core's probe rules by kernel version (`drivers/base/dd.c`), as data: what a
//! failed probe prints, the deferred-probe timeout's default, and what happens when it
//! expires. [`crate::device`] applies them.
//!
//! Sources (read with the `code` corpus):
//! - `really_probe()` (≤ 5.13) / `call_driver_probe()` (5.14+): `-EPROBE_DEFER` adds the
//!   device to `deferred_probe_pending_list` (`driver_deferred_probe_add()`); `-ENODEV` and
//!   `-ENXIO` are only `pr_debug`/`dev_dbg` ("rejects match"); any other error prints
//!   `pr_warn("%s: probe of %s failed with error %d\n", drv->name, dev_name(dev), ret)`,
//!   and since "driver: core: Log probe failure as error and with device metadata"
//!   (Nícolas F. R. A. Prado, posted 2024-03-05, merged for 6.10)
//!   `dev_err(dev, "probe with driver %s failed with error %d\n", drv->name, ret)`,
//!   whose prefix is `dev_driver_string(dev) dev_name(dev)`, the driver's name since
//!   `dev->driver` is set before the call. The error is then ignored "so that the next
//!   driver can try its luck".
//! - `driver_bound()` calls `driver_deferred_probe_del()` and
//!   `driver_deferred_probe_trigger()`: every successful probe moves the whole pending list
//!   to the active list and queues `deferred_probe_work_func()` on `deferwq`, which retries
//!   each device with `bus_probe_device()`. A probe that defers while a trigger happened
//!   during it triggers again (`deferred_trigger_count`).
//! - `deferred_probe_timeout`: the boot parameter (v5.0, 25b4e70dcce9 "driver core: allow
//!   stopping deferred probe after init", default -1: no timeout); 30 s with
//!   CONFIG_MODULES in 5.7 ("driver core: Set deferred_probe_timeout to a longer default
//!   if CONFIG_MODULES is set"); back to 0 in 5.8 ("driver core: Revert default
//!   driver_deferred_probe_timeout value to 0"); 10 s with CONFIG_MODULES from 5.19,
//!   extended by every driver registration (Saravana Kannan's "deferred_probe_timeout logic
//!   clean up" series: "driver core: Extend deferred probe timeout on driver registration",
//!   `deferred_probe_extend_timeout()`). Debian builds with CONFIG_MODULES.
//! - `deferred_probe_timeout_work_func()`: sets the timeout to 0, triggers and flushes the
//!   deferred work, then prints each device still pending, `dev_info(dev, "deferred probe
//!   pending\n")`, from 6.8 with its reason, `"deferred probe pending: %s"` or
//!   `"(reason unknown)"` (Uwe Kleine-König, "driver core: Emit reason for pending deferred
//!   probe"; the reason is what `dev_err_probe()` recorded, 5.9+).
//! - `driver_deferred_probe_check_state()` (what optional suppliers use: pinctrl, IOMMU,
//!   power domains): once the timeout is 0 after initcalls, `dev_warn(dev, "deferred probe
//!   timeout, ignoring dependency\n")` and `-ETIMEDOUT`; otherwise `-EPROBE_DEFER`. So a
//!   consumer of such a supplier that loads after the timeout fails for good.
//!
//! A bus's match returning `-EPROBE_DEFER` (4.5+, changed in 6.0) is in
//! [`crate::matchdefer`]; asynchronous probing in [`crate::asyncprobe`].
//!
//! Not modelled (and why): `defer_all_probes` around suspend, 5.0–5.6's `-ENODEV` branch of
//! `driver_deferred_probe_check_state()` ("ignoring dependency for device, assuming no
//! driver"), and `deferred_probe_timeout=` given on the command line other than through
//! the scenario's `deferred_probe_timeout` key.

use crate::errno::Errno;
use crate::kernel::{Time, SEC};
use crate::policy::{Policy, Version};

fn at_least(policy: Policy, major: u32, minor: u32) -> bool {
    match policy.version() {
        None => true,
        Some(v) => v >= Version::new(major, minor),
    }
}

/// The line a failed probe prints, or `None` for the silent errors (`-ENODEV`, `-ENXIO`)
/// and a deferral.
pub fn probe_failed_line(policy: Policy, drv: &str, dev: &str, err: Errno) -> Option<String> {
    match err {
        Errno::ENODEV | Errno::ENXIO | Errno::EPROBE_DEFER => None,
        e if at_least(policy, 6, 10) => Some(format!(
            "{drv} {dev}: probe with driver {drv} failed with error -{}",
            e.code()
        )),
        e => Some(format!(
            "{drv}: probe of {dev} failed with error -{}",
            e.code()
        )),
    }
}

/// The deferred-probe timeout in force by default: `None` when there is none (no timer,
/// no "pending" lines), `Some(0)` when it is 0 from boot on (optional suppliers are
/// ignored at once after initcalls), else the timer's length.
pub fn default_timeout(policy: Policy) -> Option<Time> {
    let Some(v) = policy.version() else {
        // modkit: the 5.19+ rule (10 s, extended by driver registrations).
        return Some(10 * SEC);
    };
    if v < Version::new(5, 7) {
        None
    } else if v < Version::new(5, 8) {
        Some(30 * SEC)
    } else if v < Version::new(5, 19) {
        Some(0)
    } else {
        Some(10 * SEC)
    }
}

/// Whether a driver registration extends a pending timeout (5.19+).
pub fn registration_extends_timeout(policy: Policy) -> bool {
    at_least(policy, 5, 19)
}

/// Whether `driver_deferred_probe_check_state()` exists (5.0+): before it, an optional
/// supplier defers like any other.
pub fn has_check_state(policy: Policy) -> bool {
    at_least(policy, 5, 0)
}

/// The line the timeout prints for a device still pending; `prefix` is
/// `dev_driver_string(dev) dev_name(dev)`.
pub fn pending_line(policy: Policy, prefix: &str, reason: Option<&str>) -> String {
    if at_least(policy, 6, 8) {
        format!(
            "{prefix}: deferred probe pending: {}",
            reason.unwrap_or("(reason unknown)")
        )
    } else {
        format!("{prefix}: deferred probe pending")
    }
}

/// The line `driver_deferred_probe_check_state()` prints when it gives up.
pub fn check_state_timeout_line(prefix: &str) -> String {
    format!("{prefix}: deferred probe timeout, ignoring dependency")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Policy {
        s.parse().unwrap()
    }

    #[test]
    fn probe_failure_text_by_era() {
        assert_eq!(
            probe_failed_line(p("linux-6.1"), "i915", "0000:00:02.0", Errno::ENOMEM).unwrap(),
            "i915: probe of 0000:00:02.0 failed with error -12"
        );
        assert_eq!(
            probe_failed_line(p("linux-6.12"), "i915", "0000:00:02.0", Errno::ENOMEM).unwrap(),
            "i915 0000:00:02.0: probe with driver i915 failed with error -12"
        );
        assert!(probe_failed_line(p("linux-6.12"), "a", "b", Errno::ENXIO).is_none());
        assert!(probe_failed_line(p("linux-4.19"), "a", "b", Errno::ENODEV).is_none());
    }

    #[test]
    fn timeout_defaults_by_era() {
        assert_eq!(default_timeout(p("linux-5.4")), None);
        assert_eq!(default_timeout(p("linux-5.7")), Some(30 * SEC));
        assert_eq!(default_timeout(p("linux-5.15")), Some(0));
        assert_eq!(default_timeout(p("linux-6.1")), Some(10 * SEC));
        assert!(!registration_extends_timeout(p("linux-5.15")));
        assert!(registration_extends_timeout(p("linux-6.1")));
    }

    #[test]
    fn pending_text_by_era() {
        assert_eq!(
            pending_line(p("linux-6.1"), "platform cam", Some("x")),
            "platform cam: deferred probe pending"
        );
        assert_eq!(
            pending_line(p("linux-6.12"), "platform cam", None),
            "platform cam: deferred probe pending: (reason unknown)"
        );
    }
}
