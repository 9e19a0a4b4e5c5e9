//! The system-call layer of the module tools: `finit_module(2)`, `init_module(2)`,
//! `delete_module(2)` and `memfd_create(2)`, each returning the kernel's errno on failure.
//! Everything else the tools need from the kernel is read from /proc and /sys.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `MODULE_INIT_IGNORE_MODVERSIONS` (include/uapi/linux/module.h).
pub const MODULE_INIT_IGNORE_MODVERSIONS: u32 = 1;
/// `MODULE_INIT_IGNORE_VERMAGIC`.
pub const MODULE_INIT_IGNORE_VERMAGIC: u32 = 2;
/// `MODULE_INIT_COMPRESSED_FILE` (5.17+, `CONFIG_MODULE_DECOMPRESS`).
pub const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// `O_NONBLOCK` for `delete_module`: never wait for the refcount.
pub const DELETE_NONBLOCK: u32 = libc::O_NONBLOCK as u32;
/// `O_TRUNC` for `delete_module`: forced removal (`CONFIG_MODULE_FORCE_UNLOAD`).
pub const DELETE_FORCE: u32 = libc::O_TRUNC as u32;

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn cstring(s: &str) -> Result<CString, i32> {
    CString::new(s).map_err(|_| libc::EINVAL)
}

/// `finit_module(fd, params, flags)`.
pub fn finit_module(fd: &impl AsRawFd, params: &str, flags: u32) -> Result<(), i32> {
    let p = cstring(params)?;
    // SAFETY: the fd is open for the duration of the call (borrowed), `p` is a valid
    // NUL-terminated string that outlives the call, and flags is a plain integer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            fd.as_raw_fd(),
            p.as_ptr(),
            flags as libc::c_int,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// `init_module(image, len, params)`.
pub fn init_module(image: &[u8], params: &str) -> Result<(), i32> {
    let p = cstring(params)?;
    // SAFETY: `image` is a live slice whose pointer and length are passed together, and
    // `p` is a valid NUL-terminated string; the kernel only reads both during the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len() as libc::c_ulong,
            p.as_ptr(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// `delete_module(name, flags)`.
pub fn delete_module(name: &str, flags: u32) -> Result<(), i32> {
    let n = cstring(name)?;
    // SAFETY: `n` is a valid NUL-terminated string that outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_delete_module, n.as_ptr(), flags as libc::c_uint) };
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// An anonymous in-memory file holding `data` (`memfd_create`), for `finit_module` of
/// a module decompressed in user space when flags must reach the kernel.
pub fn memfd_with(data: &[u8]) -> Result<std::fs::File, i32> {
    let name = cstring("modkit-module")?;
    // SAFETY: `name` is a valid NUL-terminated string; the returned descriptor, when
    // non-negative, is new and owned by nobody else, so wrapping it in OwnedFd is sound.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: see above: `fd` is a fresh descriptor we own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut f = std::fs::File::from(owned);
    use std::io::Write;
    f.write_all(data)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    Ok(f)
}

/// glibc's `strerror(errno)` text (without Rust's " (os error N)" suffix).
pub fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The running kernel's release (`uname -r`).
pub fn uname_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_is_glibcs_text() {
        assert_eq!(strerror(libc::EEXIST), "File exists");
        assert_eq!(strerror(libc::ENOENT), "No such file or directory");
        assert_eq!(strerror(libc::EAGAIN), "Resource temporarily unavailable");
    }

    #[test]
    fn bad_names_are_einval_not_panics() {
        assert_eq!(delete_module("a\0b", 0), Err(libc::EINVAL));
    }

    #[test]
    fn memfd_holds_the_data() {
        use std::io::{Read, Seek};
        let mut f = memfd_with(b"hello").unwrap();
        f.rewind().unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }
}
