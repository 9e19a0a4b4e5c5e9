//! debugfs's line for a name that is already there, by era (fs/debugfs/inode.c,
//! `start_creating()`), printed when a `debugfs:NAME` registration meets one still present.
//!
//! - Before 5.3 `start_creating()` turned a positive dentry into -EEXIST silently.
//! - 5.3 (driver-core-5.3-rc1): 43e23b6c0b01 "debugfs: log errors when something goes
//!   wrong" added a pr_err, and c33d442328f5 "debugfs: make error message a bit more
//!   verbose" (same merge) gave it the parent: "debugfs: Directory '%s' with parent '%s'
//!   already present!" for a directory ("File '%s' in directory '%s' already present!" for
//!   a file). Seen on real 6.1.176 and 6.12.117 (`examples/scenarios/i915-pre-table-leak.toml`).
//! - 6.17-rc1: 59200f452674 "new helper: simple_start_creating()" (Al Viro) moved the lookup
//!   into `simple_start_creating()` and kept one line for both kinds:
//!   `pr_err("'%s' already exists in '%pd'\n", name, parent)`, so "debugfs: 'i915_globals'
//!   already exists in '/'" for a directory at the root (`%pd` of the root dentry is "/").
//!   Seen on real 7.2.13. No stable backport is known; modkit applies it from 6.17.
//!
//! A `debugfs:` registration in a scenario is a directory at the debugfs root
//! (`debugfs_create_dir(name, NULL)` in the kernel driver). The modkit policy prints the
//! newest text.

use crate::policy::{Policy, Version};

/// The kernel log line for `debugfs_create_dir(name, NULL)` when `name` already exists at
/// the debugfs root, or `None` where that kernel printed nothing (before 5.3).
pub fn dir_exists_line(policy: Policy, name: &str) -> Option<String> {
    let v = match policy {
        Policy::Modkit => return Some(format!("debugfs: '{name}' already exists in '/'")),
        Policy::Linux(v) => v,
    };
    if v >= Version::new(6, 17) {
        Some(format!("debugfs: '{name}' already exists in '/'"))
    } else if v >= Version::new(5, 3) {
        Some(format!(
            "debugfs: Directory '{name}' with parent '/' already present!"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(p: &str) -> Option<String> {
        dir_exists_line(p.parse().unwrap(), "i915_globals")
    }

    #[test]
    fn eras_of_the_already_present_line() {
        assert_eq!(line("linux-5.2"), None);
        assert_eq!(line("linux-4.19.272"), None);
        let old = Some("debugfs: Directory 'i915_globals' with parent '/' already present!".into());
        assert_eq!(line("linux-5.3"), old);
        assert_eq!(line("linux-6.1.176"), old);
        assert_eq!(line("linux-6.16"), old);
        let new = Some("debugfs: 'i915_globals' already exists in '/'".to_string());
        assert_eq!(line("linux-6.17"), new);
        assert_eq!(line("linux-7.2.13"), new);
        assert_eq!(line("modkit"), new);
    }
}
