//! How the host opens, looks into and closes plugin libraries. [`System`] is the dynamic
//! loader (`dlopen(RTLD_NOW | RTLD_LOCAL)`, `dlsym`, `dlclose`, and `RTLD_NOLOAD` to see
//! whether a closed library is still mapped); model tests (tests/plugin_model.rs) give the
//! host a fake through [`crate::Host::with_plugin_loader`], so that shuttle explores the
//! real load/unload logic of `loader.rs` without a real `dlopen` under its scheduler.

use std::ffi::{c_void, CString};
use std::path::Path;

/// Opens, looks into and closes plugin libraries.
///
/// # Safety
/// [`DynLoader::symbol`] must return the address of a live [`super::RawDescriptor`] (or
/// null) for [`super::DESCRIPTOR_SYMBOL`], valid, with everything it points to, until the
/// handle is closed.
pub unsafe trait DynLoader: Send + Sync + 'static {
    /// Opens the library at `path`: a non-zero handle, or the loader's message.
    fn open(&self, path: &Path) -> Result<usize, String>;
    /// The address of `symbol` in the open library `handle`, or null.
    fn symbol(&self, handle: usize, symbol: &str) -> *const c_void;
    /// Closes a handle [`DynLoader::open`] returned (once).
    fn close(&self, handle: usize);
    /// After the last close: whether the library at `path` is still mapped.
    fn still_mapped(&self, path: &Path) -> bool;
    /// The `key=value` entries of the file's `.modinfo` section, read without loading it.
    fn modinfo(&self, path: &Path) -> Result<Vec<(String, String)>, String> {
        let data = std::fs::read(path).map_err(|e| e.to_string())?;
        super::elf::modinfo(&data)
    }
}

/// The system's dynamic loader.
pub struct System;

fn cpath(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "path contains a NUL byte".to_string())
}

fn dlerror_msg() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string owned by libc.
    let p = unsafe { libc::dlerror() };
    if p.is_null() {
        "unknown dlopen error".into()
    } else {
        // SAFETY: non-null, NUL-terminated, valid until the next dl call on this thread.
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned()
    }
}

// SAFETY: dlsym returns the address of the symbol in the mapped library, valid until the
// library is closed; the descriptor symbol is the plugin's descriptor static.
unsafe impl DynLoader for System {
    fn open(&self, path: &Path) -> Result<usize, String> {
        let c = cpath(path)?;
        // SAFETY: a valid C string; RTLD_LOCAL keeps the plugin's symbols out of the
        // global namespace, RTLD_NOW resolves everything before any plugin code runs.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if h.is_null() {
            Err(dlerror_msg())
        } else {
            Ok(h as usize)
        }
    }

    fn symbol(&self, handle: usize, symbol: &str) -> *const c_void {
        let Ok(c) = CString::new(symbol) else {
            return std::ptr::null();
        };
        // SAFETY: `handle` is a live handle from `open`; the name is a valid C string.
        unsafe { libc::dlsym(handle as *mut c_void, c.as_ptr()) }
    }

    fn close(&self, handle: usize) {
        // SAFETY: the handle came from `open` and the caller closes it once.
        unsafe { libc::dlclose(handle as *mut c_void) };
    }

    fn still_mapped(&self, path: &Path) -> bool {
        let Ok(c) = cpath(path) else {
            return false;
        };
        // SAFETY: RTLD_NOLOAD only looks the library up; a non-null handle is closed
        // again at once to keep the count balanced.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
        if h.is_null() {
            return false;
        }
        // SAFETY: `h` came from the RTLD_NOLOAD dlopen above.
        unsafe { libc::dlclose(h) };
        true
    }
}
