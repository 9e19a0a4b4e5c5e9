//! Typed symbol handles and module references. A [`Symbol`] keeps its owner pinned, so
//! the code behind it cannot be unloaded while the handle lives: the kernel's module
//! `.text` lifetime, enforced by types. A [`ModuleRef`] is `try_module_get` /
//! `module_put` as a guard.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::host::HostHandle;

/// A type-derived CRC, as modversions derives one from a symbol's C prototype: two
/// modules agree on a symbol only if they agree on its Rust type.
pub fn crc_of<T: ?Sized + 'static>() -> u32 {
    // FNV-1a over the type's name: stable within one build of the program.
    let mut h: u32 = 0x811c_9dc5;
    for b in std::any::type_name::<T>().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A reference on a module (`try_module_get`); dropping it is `module_put`.
pub struct ModuleRef {
    pub(crate) host: HostHandle,
    pub(crate) pin: Option<u64>,
    pub(crate) module: String,
}

impl ModuleRef {
    /// The module held.
    pub fn module(&self) -> &str {
        &self.module
    }
}

impl fmt::Debug for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleRef")
            .field("module", &self.module)
            .finish()
    }
}

impl Drop for ModuleRef {
    fn drop(&mut self) {
        if let Some(pin) = self.pin.take() {
            let mut st = self.host.lock();
            self.host.tick(&mut st);
            // A pin a forced unload left dangling kept a plugin's library open.
            let dangling = st.k.dangling.contains_key(&pin);
            let _ = st.k.module_put(pin);
            self.host.deliver(&mut st);
            drop(st);
            if dangling {
                self.host.plugins_reap();
            }
        }
    }
}

/// A typed handle to an exported symbol. It derefs to the value and pins the exporting
/// module until dropped.
pub struct Symbol<T: ?Sized> {
    pub(crate) value: Arc<T>,
    pub(crate) name: String,
    pub(crate) _owner: ModuleRef,
}

impl<T: ?Sized> Symbol<T> {
    /// The symbol's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The module that exports it.
    pub fn owner(&self) -> &str {
        self._owner.module()
    }
}

impl<T: ?Sized> Deref for Symbol<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: ?Sized> fmt::Debug for Symbol<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Symbol")
            .field("name", &self.name)
            .field("owner", &self._owner.module)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_follows_the_type() {
        assert_eq!(crc_of::<fn(u32) -> u32>(), crc_of::<fn(u32) -> u32>());
        assert_ne!(crc_of::<fn(u32) -> u32>(), crc_of::<fn(u64) -> u32>());
    }
}
