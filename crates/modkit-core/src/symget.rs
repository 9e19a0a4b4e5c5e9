//! `symbol_get()` / `symbol_put()`: a module looks up another module's export at run time,
//! without importing it, and pins the owner while it holds it.
//!
//! `kernel/module/main.c` (`kernel/module.c` before 5.19), `__symbol_get()`:
//!
//! ```c
//! /* up to 6.5, and stable lines before the backport */
//! preempt_disable();
//! if (!find_symbol(&fsa) || strong_try_module_get(fsa.owner))
//!         fsa.sym = NULL;
//! preempt_enable();
//! return fsa.sym ? (void *)kernel_symbol_value(fsa.sym) : NULL;
//!
//! /* 6.6 (9011e49d54dc "modules: only allow symbol_get of EXPORT_SYMBOL_GPL modules"),
//!  * 6.5.3, 6.4.16, 6.1.53, 5.15.132, 5.10.195, 5.4.257, 4.19.295, 4.14.326 */
//! if (!find_symbol(&fsa))
//!         goto fail;
//! if (fsa.license != GPL_ONLY) {
//!         pr_warn("failing symbol_get of non-GPLONLY symbol %s.\n", symbol);
//!         goto fail;
//! }
//! if (strong_try_module_get(fsa.owner))
//!         goto fail;
//! ```
//!
//! `strong_try_module_get()` fails (-EBUSY) for an owner that is still COMING and (-ENOENT)
//! for one that is going; vmlinux's symbols have no owner and always succeed.
//! `find_symbol()` skips only UNFORMED modules. `__symbol_put()` finds the symbol again and
//! drops the owner's reference. The caller sees only NULL: what its code returns then is
//! its own choice; scenarios take -ENOENT (docs/scenario-format.md).

use crate::errno::Errno;
use crate::kernel::{Kernel, ModState};
use crate::policy::Policy;
use crate::stable::{self, Change};

impl Policy {
    /// `symbol_get()` finds only `EXPORT_SYMBOL_GPL` symbols (9011e49d54dc, 6.6 and its
    /// backports; modkit always).
    pub fn symbol_get_gpl_only(self) -> bool {
        match self {
            Policy::Modkit => true,
            Policy::Linux(v) => stable::has(Change::SymbolGetGplOnly, v),
        }
    }
}

/// The line `__symbol_get()` prints for a symbol that is not GPL-only (6.6+).
pub fn non_gpl_line(sym: &str) -> String {
    format!("failing symbol_get of non-GPLONLY symbol {sym}.")
}

impl Kernel {
    /// `symbol_get(sym)` by `holder`: pins the symbol's owner and returns the pin id, or
    /// ENOENT where the kernel returns NULL (no such symbol, a non-GPL symbol from 6.6,
    /// an owner that is not live).
    pub fn symbol_get(&mut self, sym: &str, holder: &str) -> Result<u64, Errno> {
        let Some(e) = self.symtab.get(sym) else {
            return Err(Errno::ENOENT);
        };
        let (owner, gpl_only) = (e.owner, e.gpl_only);
        if !gpl_only && self.policy.symbol_get_gpl_only() {
            self.printk(non_gpl_line(sym));
            return Err(Errno::ENOENT);
        }
        // strong_try_module_get(): COMING is -EBUSY, GOING (or gone) -ENOENT.
        match self.instances[owner].as_ref().map(|i| i.state) {
            Some(ModState::Live) => {}
            _ => return Err(Errno::ENOENT),
        }
        self.try_module_get(owner, holder)
    }

    /// `symbol_put(sym)` by `holder`: drops a pin taken by [`Kernel::symbol_get`]. EINVAL if
    /// there is none (the kernel BUG()s on a symbol it cannot find).
    pub fn symbol_put(&mut self, sym: &str, holder: &str) -> Result<(), Errno> {
        let owner = match self.symtab.get(sym) {
            Some(e) => e.owner,
            None => return Err(Errno::EINVAL),
        };
        match self.find_pin(owner, holder) {
            Some(pin) => self.module_put(pin),
            None => Err(Errno::EINVAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Policy {
        s.parse().unwrap()
    }

    #[test]
    fn gpl_only_by_version() {
        assert!(!p("linux-4.4").symbol_get_gpl_only());
        assert!(!p("linux-6.5").symbol_get_gpl_only());
        assert!(p("linux-6.5.3").symbol_get_gpl_only());
        assert!(p("linux-6.6").symbol_get_gpl_only());
        assert!(!p("linux-6.1.52").symbol_get_gpl_only());
        assert!(p("linux-6.1.176").symbol_get_gpl_only());
        assert!(p("linux-6.12.117").symbol_get_gpl_only());
        assert!(p("linux-7.2.13").symbol_get_gpl_only());
        assert!(p("modkit").symbol_get_gpl_only());
    }

    #[test]
    fn line_text() {
        assert_eq!(
            non_gpl_line("prov_plain"),
            "failing symbol_get of non-GPLONLY symbol prov_plain."
        );
    }
}
