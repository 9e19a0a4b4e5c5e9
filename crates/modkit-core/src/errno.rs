//! Error numbers as the kernel returns them, and the outcome of an operation.

use std::fmt;

/// An errno value, with the numbers of Linux on x86-64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Errno {
    /// Operation not permitted (1).
    EPERM,
    /// No such file or directory / module or symbol not found (2).
    ENOENT,
    /// No such process (3): a `kill` event found no task to signal.
    ESRCH,
    /// Interrupted system call (4).
    EINTR,
    /// Exec format error (8).
    ENOEXEC,
    /// Bad file descriptor (9).
    EBADF,
    /// Bad address (14); modkit: module code crashed (panicked).
    EFAULT,
    /// Try again; the kernel's EWOULDBLOCK (11).
    EWOULDBLOCK,
    /// Out of memory (12).
    ENOMEM,
    /// Device or resource busy (16).
    EBUSY,
    /// File exists (17).
    EEXIST,
    /// No such device (19).
    ENODEV,
    /// Invalid argument (22).
    EINVAL,
    /// Resource deadlock would occur (35).
    EDEADLK,
    /// File name too long (36).
    ENAMETOOLONG,
    /// Timer expired (62).
    ETIME,
    /// Restart the system call after a signal (512, kernel-internal).
    ERESTARTSYS,
    /// Required key not available (126): an unsigned module under `sig_enforce`, before 5.4.
    ENOKEY,
    /// Key was rejected by service (129): an unsigned module under `sig_enforce`, 5.4+.
    EKEYREJECTED,
    /// No such device or address (6): a probe that rejects a match, silently.
    ENXIO,
    /// Connection timed out (110): `driver_deferred_probe_check_state()` after the
    /// deferred-probe timeout (drivers/base/dd.c).
    ETIMEDOUT,
    /// Driver requests probe retry (517, kernel-internal): a probe that defers.
    #[allow(non_camel_case_types)]
    EPROBE_DEFER,
    /// No data available (61): a module without a signature (`module_sig_check()`,
    /// before enforcement turns it into EKEYREJECTED).
    ENODATA,
    /// Package not installed (65): a signature with unsupported crypto.
    ENOPKG,
    /// Bad message (74): an unparseable signature.
    EBADMSG,
}

impl Errno {
    /// Every errno the model knows, for parsing and suggestions.
    pub const ALL: [Errno; 25] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::ESRCH,
        Errno::EINTR,
        Errno::ENOEXEC,
        Errno::EBADF,
        Errno::EFAULT,
        Errno::EWOULDBLOCK,
        Errno::ENOMEM,
        Errno::EBUSY,
        Errno::EEXIST,
        Errno::ENODEV,
        Errno::EINVAL,
        Errno::EDEADLK,
        Errno::ENAMETOOLONG,
        Errno::ETIME,
        Errno::ERESTARTSYS,
        Errno::ENOKEY,
        Errno::EKEYREJECTED,
        Errno::ENXIO,
        Errno::ETIMEDOUT,
        Errno::EPROBE_DEFER,
        Errno::ENODATA,
        Errno::ENOPKG,
        Errno::EBADMSG,
    ];

    /// The positive errno number (`-err` is what a syscall returns).
    pub fn code(self) -> i32 {
        match self {
            Errno::EPERM => 1,
            Errno::ENOENT => 2,
            Errno::ESRCH => 3,
            Errno::EINTR => 4,
            Errno::ENOEXEC => 8,
            Errno::EBADF => 9,
            Errno::EFAULT => 14,
            Errno::EWOULDBLOCK => 11,
            Errno::ENOMEM => 12,
            Errno::EBUSY => 16,
            Errno::EEXIST => 17,
            Errno::ENODEV => 19,
            Errno::EINVAL => 22,
            Errno::EDEADLK => 35,
            Errno::ENAMETOOLONG => 36,
            Errno::ETIME => 62,
            Errno::ERESTARTSYS => 512,
            Errno::ENOKEY => 126,
            Errno::EKEYREJECTED => 129,
            Errno::ENXIO => 6,
            Errno::ETIMEDOUT => 110,
            Errno::EPROBE_DEFER => 517,
            Errno::ENODATA => 61,
            Errno::ENOPKG => 65,
            Errno::EBADMSG => 74,
        }
    }

    /// The symbolic name, e.g. `"ENOENT"`.
    pub fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::ESRCH => "ESRCH",
            Errno::EINTR => "EINTR",
            Errno::ENOEXEC => "ENOEXEC",
            Errno::EBADF => "EBADF",
            Errno::EFAULT => "EFAULT",
            Errno::EWOULDBLOCK => "EWOULDBLOCK",
            Errno::ENOMEM => "ENOMEM",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::ENODEV => "ENODEV",
            Errno::EINVAL => "EINVAL",
            Errno::EDEADLK => "EDEADLK",
            Errno::ENAMETOOLONG => "ENAMETOOLONG",
            Errno::ETIME => "ETIME",
            Errno::ERESTARTSYS => "ERESTARTSYS",
            Errno::ENOKEY => "ENOKEY",
            Errno::EKEYREJECTED => "EKEYREJECTED",
            Errno::ENXIO => "ENXIO",
            Errno::ETIMEDOUT => "ETIMEDOUT",
            Errno::EPROBE_DEFER => "EPROBE_DEFER",
            Errno::ENODATA => "ENODATA",
            Errno::ENOPKG => "ENOPKG",
            Errno::EBADMSG => "EBADMSG",
        }
    }

    /// The C library's text for the error, as modprobe and rmmod print it.
    pub fn strerror(self) -> &'static str {
        match self {
            Errno::EPERM => "Operation not permitted",
            Errno::ENOENT => "No such file or directory",
            Errno::ESRCH => "No such process",
            Errno::EINTR => "Interrupted system call",
            Errno::ENOEXEC => "Exec format error",
            Errno::EBADF => "Bad file descriptor",
            Errno::EFAULT => "Bad address",
            Errno::EWOULDBLOCK => "Resource temporarily unavailable",
            Errno::ENOMEM => "Cannot allocate memory",
            Errno::EBUSY => "Device or resource busy",
            Errno::EEXIST => "File exists",
            Errno::ENODEV => "No such device",
            Errno::EINVAL => "Invalid argument",
            Errno::EDEADLK => "Resource deadlock avoided",
            Errno::ENAMETOOLONG => "File name too long",
            Errno::ETIME => "Timer expired",
            Errno::ERESTARTSYS => "Unknown error 512",
            Errno::ENOKEY => "Required key not available",
            Errno::EKEYREJECTED => "Key was rejected by service",
            Errno::ENXIO => "No such device or address",
            Errno::ETIMEDOUT => "Connection timed out",
            Errno::EPROBE_DEFER => "Unknown error 517",
            Errno::ENODATA => "No data available",
            Errno::ENOPKG => "Package not installed",
            Errno::EBADMSG => "Bad message",
        }
    }

    /// Parses a name (`"EAGAIN"` is accepted for EWOULDBLOCK).
    pub fn from_name(s: &str) -> Option<Errno> {
        if s == "EAGAIN" {
            return Some(Errno::EWOULDBLOCK);
        }
        Errno::ALL.iter().copied().find(|e| e.name() == s)
    }

    /// The errno with this positive number, if the model knows it.
    pub fn from_code(code: i32) -> Option<Errno> {
        Errno::ALL.iter().copied().find(|e| e.code() == code)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// [`Outcome::raw`] of [`Outcome::Killed`]: no kernel function returns it (a killed task
/// returns nothing), so it matches no other outcome.
pub const KILLED_RAW: i32 = i32::MIN;

/// What an operation returned: success, an errno, or a raw status (request_module under
/// `linux-X.Y` returns modprobe's wait status, 256 for `exit(1)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Success (0).
    Ok,
    /// A negative errno.
    Err(Errno),
    /// A raw non-zero value such as a wait status.
    Status(i32),
    /// The task died of SIGKILL before its call returned to userspace: no value came
    /// back (a `kill` event; crate::signal).
    Killed,
}

impl Outcome {
    /// True for success.
    pub fn is_ok(self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// The value as a kernel function returns it: 0, `-errno`, or the raw status.
    pub fn raw(self) -> i32 {
        match self {
            Outcome::Ok => 0,
            Outcome::Err(e) => -e.code(),
            Outcome::Status(s) => s,
            Outcome::Killed => KILLED_RAW,
        }
    }

    /// The errno, if this is one.
    pub fn errno(self) -> Option<Errno> {
        match self {
            Outcome::Err(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Result<(), Errno>> for Outcome {
    fn from(r: Result<(), Errno>) -> Self {
        match r {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Err(e),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Err(e) => write!(f, "{e}"),
            Outcome::Status(s) => write!(f, "{s}"),
            Outcome::Killed => f.write_str("killed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in Errno::ALL {
            assert_eq!(Errno::from_name(e.name()), Some(e));
            assert_eq!(Errno::from_code(e.code()), Some(e));
        }
        assert_eq!(Errno::from_name("EAGAIN"), Some(Errno::EWOULDBLOCK));
        assert_eq!(Errno::from_name("EFOO"), None);
    }

    #[test]
    fn raw_values() {
        assert_eq!(Outcome::Ok.raw(), 0);
        assert_eq!(Outcome::Err(Errno::EBUSY).raw(), -16);
        assert_eq!(Outcome::Status(256).raw(), 256);
        assert_eq!(Outcome::Err(Errno::ENOENT).to_string(), "ENOENT");
    }
}
