//! Kernel log text by era, and the lines modkit adds that no kernel prints.
//!
//! - `"%s: Unknown symbol %s (err %li)"` with `PTR_ERR(ksym)`: a symbol that is not found
//!   (`resolve_symbol()` returns NULL) printed "(err 0)" although the load failed with
//!   -ENOENT. Later kernels compute `ret = PTR_ERR(ksym) ?: -ENOENT` first and print
//!   `"(err %d)"` with it: "(err -2)". Seen: Ubuntu's 4.15.0 prints "(err 0)" (batman-adv
//!   report, 2019), the 4.14.y stable tree still had the old line in March 2021 (4.14.223's
//!   backport of ebfac7b778fa shows it as context), 4.19's kernel/module.c has the new one.
//!   The mainline commit was not found; modkit takes 4.18 as the first release with the
//!   new line (docs/loader-versions.md).
//! - `pr_warn_once()` keeps one flag per call site (a `static bool` in the macro), so
//!   "no symbol version for X" is printed once per boot, whatever X: [`Kernel::printk_once`]
//!   takes the site.
//! - A line no kernel prints (an init step that stopped early but has an undo, a call of a
//!   symbol that was not imported, a registration refused by the model) is a
//!   [`DiagKind::Remark`] under `linux-X.Y` and a log line as well under modkit:
//!   [`Kernel::remark`].

use crate::diag::DiagKind;
use crate::kernel::{Kernel, ModId};
use crate::policy::{Policy, Version};

impl Policy {
    /// "Unknown symbol X (err -2)" for a symbol not found (4.18+; modkit): the line prints
    /// the load's error. Before, it printed `PTR_ERR(NULL)`: "(err 0)".
    pub fn unknown_symbol_prints_ret(self) -> bool {
        match self {
            Policy::Modkit => true,
            Policy::Linux(v) => v >= Version::new(4, 18),
        }
    }
}

impl Kernel {
    /// `pr_warn_once`: prints `text` only if call site `site` has not printed yet in this
    /// boot (one flag per call site, not per text).
    pub fn printk_once(&mut self, site: &'static str, text: String) {
        if self.warned_once.insert(site.to_string()) {
            self.printk(text);
        }
    }

    /// A remark of the model that no kernel prints: a [`DiagKind::Remark`] diagnostic, and
    /// under the modkit policy also a log line. Under `linux-X.Y` the kernel log holds
    /// only what that kernel printed.
    pub fn remark(&mut self, module: Option<ModId>, text: String) {
        if self.policy.is_modkit() {
            self.printk(text.clone());
        }
        self.diagnose(DiagKind::Remark, module, text, Vec::new(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_symbol_era() {
        let p = |s: &str| s.parse::<Policy>().unwrap();
        assert!(!p("linux-4.4").unknown_symbol_prints_ret());
        assert!(!p("linux-4.17").unknown_symbol_prints_ret());
        assert!(!p("linux-4.14.336").unknown_symbol_prints_ret());
        assert!(p("linux-4.18").unknown_symbol_prints_ret());
        assert!(p("linux-6.1.176").unknown_symbol_prints_ret());
        assert!(p("modkit").unknown_symbol_prints_ret());
    }
}
