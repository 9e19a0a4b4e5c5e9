//! The host's taints as `/proc/modules` and `/proc/sys/kernel/tainted` show them (the
//! core's [`modkit_core::taint`]): an unsigned or unverifiable plugin loaded under
//! [`crate::plugin::signing::SigPolicy::Permissive`] carries `E`.

use modkit_core::taint::Taint;

use crate::Host;

impl Host {
    /// The taint letters of module `name` as `/proc/modules` prints them inside `( )`
    /// (`"E"` for a plugin loaded without a verified signature); `None` when no module
    /// has that name. Empty when it carries none.
    pub fn module_taints(&self, name: &str) -> Option<String> {
        let st = self.lock();
        let id = st.k.db.id(&modkit_core::spec::normalize_name(name))?;
        Some(st.k.taint.flags(id))
    }

    /// The host-wide taint letters, in bit order (`"E"`, `"OE"`...): what the kernel's
    /// `tainted_mask` would print.
    pub fn tainted(&self) -> String {
        let st = self.lock();
        [
            Taint::Proprietary,
            Taint::ForcedModule,
            Taint::ForcedRmmod,
            Taint::Crap,
            Taint::OutOfTree,
            Taint::Unsigned,
        ]
        .iter()
        .filter(|t| st.k.taint.test(**t))
        .map(|t| t.letter())
        .collect()
    }
}
