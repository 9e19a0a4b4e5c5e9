//! The auxiliary bus (`drivers/base/auxiliary.c`, v5.11, 7de3697e9cbd "Add auxiliary bus
//! support"): a driver's probe splits a function off its device as an auxiliary device
//! that another module's driver binds.
//!
//! - The device is named `modname.devname.id` (`__auxiliary_device_add()`:
//!   `dev_set_name(dev, "%s.%s.%d", modname, auxdev->name, auxdev->id)`, modname being
//!   the creating module's `KBUILD_MODNAME`).
//! - A driver matches it on `modname.devname`, the name up to the last `.`
//!   (`auxiliary_match_id()`: `strncmp(name, id->name, p - name)` with `p = strrchr(name, '.')`).
//! - Its uevent announces `MODALIAS=auxiliary:modname.devname` (`auxiliary_uevent()`,
//!   `AUXILIARY_MODULE_PREFIX`), which is what udev hands to modprobe, and what
//!   `MODULE_DEVICE_TABLE(auxiliary, …)` turns into the driver module's alias.

use crate::policy::{Policy, Version};

/// The prefix of an auxiliary device's modalias (`AUXILIARY_MODULE_PREFIX`).
pub const MODALIAS_PREFIX: &str = "auxiliary:";

/// The bus's name.
pub const BUS: &str = "auxiliary";

/// Whether the policy's kernel has the auxiliary bus (5.11+; modkit has it).
pub fn bus_exists(policy: Policy) -> bool {
    match policy.version() {
        None => true,
        Some(v) => v >= Version::new(5, 11),
    }
}

/// The device name `modname.devname.id`.
pub fn device_name(modname: &str, devname: &str, id: u32) -> String {
    format!("{modname}.{devname}.{id}")
}

/// The name a driver matches on: `modname.devname` (up to the last `.`); `None` for a
/// name without a `.`.
pub fn match_name(dev_name: &str) -> Option<&str> {
    dev_name.rfind('.').map(|p| &dev_name[..p])
}

/// The uevent's `MODALIAS` value: `auxiliary:modname.devname`.
pub fn modalias(dev_name: &str) -> Option<String> {
    match_name(dev_name).map(|n| format!("{MODALIAS_PREFIX}{n}"))
}

/// Whether `dev_name` is a well-formed auxiliary device name (`a.b.N`, N a number).
pub fn valid_name(dev_name: &str) -> bool {
    let mut parts = dev_name.rsplitn(2, '.');
    let id = parts.next().unwrap_or("");
    let rest = parts.next().unwrap_or("");
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && rest.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_modaliases_follow_auxiliary_c() {
        assert_eq!(device_name("i915", "gvt", 0), "i915.gvt.0");
        assert_eq!(match_name("i915.gvt.0"), Some("i915.gvt"));
        assert_eq!(
            modalias("i915.gvt.0").as_deref(),
            Some("auxiliary:i915.gvt")
        );
        assert!(valid_name("mlx5_core.eth.3"));
        assert!(!valid_name("i915.gvt"));
        assert!(!valid_name("gvt.x"));
    }

    #[test]
    fn the_bus_appeared_in_5_11() {
        assert!(!bus_exists("linux-5.10".parse().unwrap()));
        assert!(bus_exists("linux-5.11".parse().unwrap()));
        assert!(bus_exists(Policy::Modkit));
    }
}
