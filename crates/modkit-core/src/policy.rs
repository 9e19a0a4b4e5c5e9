//! Policies: the knobs where kernel versions differ, and where modkit chooses better.
//!
//! The era boundaries are those of `reference/linux-module-loader.md` §2.1 and §5.2; the
//! stable backports that move a `linux-X.Y.Z` into a later era are in [`crate::stable`].

use std::fmt;
use std::str::FromStr;

use crate::stable::{self, Change};

/// A kernel version `major.minor` or `major.minor.patch`.
///
/// `linux-6.1` and `linux-6.1.0` are the same version (the 6.1 release) and compare
/// equal; each prints as it was written. Stable patch levels order after the release:
/// 6.1 < 6.1.9 < 6.1.176 < 6.2.
#[derive(Debug, Clone, Copy)]
pub struct Version {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Stable patch level (0 for the release).
    pub patch: u32,
    patch_given: bool,
}

impl Version {
    /// `Version::new(6, 1)` is the 6.1 release, printed `6.1`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Version {
            major,
            minor,
            patch: 0,
            patch_given: false,
        }
    }

    /// `Version::with_patch(6, 1, 176)` is 6.1.176, printed `6.1.176`.
    pub const fn with_patch(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
            patch_given: true,
        }
    }

    /// Whether the patch level was written (`6.1.0`) rather than implied (`6.1`).
    pub const fn has_patch(self) -> bool {
        self.patch_given
    }

    /// The release this version belongs to (`6.1.176` → `6.1`).
    pub const fn release(self) -> Self {
        Version::new(self.major, self.minor)
    }

    fn key(self) -> (u32, u32, u32) {
        (self.major, self.minor, self.patch)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patch_given {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        } else {
            write!(f, "{}.{}", self.major, self.minor)
        }
    }
}

/// The oldest kernel a policy may name.
pub const OLDEST: Version = Version::new(4, 4);
/// The newest mainline release a policy may name: 7.2 (its stable line reached at least
/// 7.2.13, which Debian sid ships). 7.3 was seen only as release candidates (7.3-rc5, September 2026) in the
/// material read, so it is refused. See `docs/loader-versions.md`.
pub const NEWEST: Version = Version::new(7, 2);

/// The last minor number of each supported major (4.20, 5.19, 6.19, then [`NEWEST`]).
fn last_minor(major: u32) -> Option<u32> {
    match major {
        4 => Some(20),
        5 => Some(19),
        6 => Some(19),
        7 => Some(NEWEST.minor),
        _ => None,
    }
}

/// Whether `v` names a release (or its stable patch level) in the supported range.
pub fn supported(v: Version) -> bool {
    v.release() >= OLDEST
        && v.release() <= NEWEST
        && last_minor(v.major).is_some_and(|m| v.minor <= m)
}

/// How a second load of a module that is already present behaves (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DupEra {
    /// ≤ 5.2: wait while COMING/UNFORMED then retry; LIVE or GOING gives EEXIST.
    A,
    /// 5.3 – 6.1.8: wait for anything not LIVE to finish, then retry (serialised
    /// retries). Backported to 4.4.188, 4.9.188, 4.14.137, 4.19.65, 5.2.7.
    B,
    /// 6.2 – 6.3: wait once for COMING; GOING or vanished gives EBUSY. Backported to
    /// 4.14.305, 4.19.272, 5.4.231, 5.10.166, 5.15.91, 6.1.9.
    C,
    /// 6.4: as C, checked before allocation and again at insertion.
    D,
    /// 6.5 – 6.10: concurrent finit_module of one file shares the first's result
    /// (uninterruptible wait).
    E,
    /// 6.11+: as E, the wait is interruptible. Backported to 6.6.46 and 6.10.5.
    F,
}

/// How request_module limits concurrent modprobe calls (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmodLimiter {
    /// ≤ 4.12: over 50 concurrent requests fail at once with ENOMEM ("runaway loop").
    Immediate,
    /// 4.13 – 6.3: throttle; wait up to 5 s for a slot, then ETIME.
    Throttle,
    /// 6.4+: a FIFO semaphore of 50 with a 5 s timeout, then ETIME.
    Semaphore,
}

/// The warning `do_init_module()` prints when an init returns a positive value (the module
/// goes live all the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositiveInitWarning {
    /// 3.13 (bddb12b32f90) – 7.0: `pr_warn("%s: '%s'->init suspiciously returned %d, it
    /// should follow 0/-E convention\n%s: loading module anyway...\n", __func__, ...)`,
    /// then `dump_stack()`.
    WithStackDump,
    /// 7.1+ (663385f9155f): `pr_warn("%s: init suspiciously returned %d, it should follow
    /// 0/-E convention\n", mod->name, ret)`, no stack dump.
    Short,
}

/// The semantics a run follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// modkit's own semantics: cycles refused with the chain, loads and requests merged,
    /// rmmod that can wait for pins, leak diagnostics.
    #[default]
    Modkit,
    /// Exactly what that kernel did, stable backports included for `linux-X.Y.Z`.
    Linux(Version),
}

/// Maximum concurrent request_module calls (`MAX_KMOD_CONCURRENT`).
pub const MAX_KMOD_CONCURRENT: usize = 50;
/// Seconds request_module waits for a slot (`MAX_KMOD_ALL_BUSY_TIMEOUT`).
pub const KMOD_BUSY_TIMEOUT_SECS: u64 = 5;
/// Seconds `resolve_symbol_wait()` waits for a COMING owner.
pub const SYMBOL_WAIT_SECS: u64 = 30;
/// `MODULE_NAME_LEN` on 64-bit: names this long or longer give ENAMETOOLONG.
pub const MODULE_NAME_LEN: usize = 56;

impl Policy {
    /// True for the modkit policy.
    pub fn is_modkit(self) -> bool {
        matches!(self, Policy::Modkit)
    }

    /// The kernel version, for `linux-X.Y` and `linux-X.Y.Z`.
    pub fn version(self) -> Option<Version> {
        match self {
            Policy::Linux(v) => Some(v),
            Policy::Modkit => None,
        }
    }

    /// The duplicate-load era (modkit merges instead; it reports `F` for the name-based
    /// parts it shares with current kernels).
    pub fn dup_era(self) -> DupEra {
        let v = match self {
            Policy::Modkit => return DupEra::F,
            Policy::Linux(v) => v,
        };
        if !stable::has(Change::DontWaitForGoing, v) {
            if stable::has(Change::WaitForNonLive, v) {
                DupEra::B
            } else {
                DupEra::A
            }
        } else if v < Version::new(6, 4) {
            DupEra::C
        } else if v < Version::new(6, 5) {
            DupEra::D
        } else if !stable::has(Change::InterruptibleIdempotentWait, v) {
            DupEra::E
        } else {
            DupEra::F
        }
    }

    /// The request_module limiter.
    pub fn kmod_limiter(self) -> KmodLimiter {
        match self {
            Policy::Modkit => KmodLimiter::Semaphore,
            Policy::Linux(v) if v < Version::new(4, 13) => KmodLimiter::Immediate,
            Policy::Linux(v) if v < Version::new(6, 4) => KmodLimiter::Throttle,
            Policy::Linux(_) => KmodLimiter::Semaphore,
        }
    }

    /// Symbol namespaces are enforced at load time (5.4+; modkit always).
    pub fn enforces_namespaces(self) -> bool {
        match self {
            Policy::Modkit => true,
            Policy::Linux(v) => v >= Version::new(5, 4),
        }
    }

    /// `delete_module()` wakes `module_wq` after freeing the module (5d603311615f; modkit
    /// always). Without it an era-B loader waiting on a module being unloaded sleeps on.
    pub fn unload_wakes_module_wq(self) -> bool {
        match self {
            Policy::Modkit => true,
            Policy::Linux(v) => stable::has(Change::UnloadWakesModuleWq, v),
        }
    }

    /// request_module with autoloading disabled (empty modprobe path) fails with ENOENT
    /// (d7d27cfc5cf0; modkit always); before, it returned 0.
    pub fn autoload_disabled_is_error(self) -> bool {
        match self {
            Policy::Modkit => true,
            Policy::Linux(v) => stable::has(Change::AutoloadDisabledEnoent, v),
        }
    }

    /// An init that fails with EEXIST is reported as EBUSY (743f8cae549a, 7.1; modkit
    /// always): EEXIST from `finit_module()` means "already loaded" to modprobe.
    pub fn init_eexist_becomes_ebusy(self) -> bool {
        match self {
            Policy::Modkit => true,
            Policy::Linux(v) => stable::has(Change::InitEexistBecomesEbusy, v),
        }
    }

    /// How `do_init_module()` warns about an init that returned a positive value.
    pub fn positive_init_warning(self) -> PositiveInitWarning {
        match self {
            Policy::Modkit => PositiveInitWarning::Short,
            Policy::Linux(v) if stable::has(Change::ShortPositiveInitWarning, v) => {
                PositiveInitWarning::Short
            }
            Policy::Linux(_) => PositiveInitWarning::WithStackDump,
        }
    }

    /// request_module returns the raw wait status (Linux) instead of the load's error.
    pub fn request_returns_status(self) -> bool {
        !self.is_modkit()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Modkit => f.write_str("modkit"),
            Policy::Linux(v) => write!(f, "linux-{v}"),
        }
    }
}

/// Why a policy name did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyParseError {
    /// Not `modkit`, `linux-X.Y` or `linux-X.Y.Z`.
    #[error("unknown policy `{0}`: use \"modkit\", \"linux-X.Y\" or \"linux-X.Y.Z\" (for example \"linux-5.15\", \"linux-6.1\", \"linux-6.1.176\")")]
    Unknown(String),
    /// A well-formed kernel version outside the supported range.
    #[error("unsupported kernel version in policy `{0}`: accepted: linux-{OLDEST} … linux-{NEWEST} and their stable patch levels (linux-X.Y.Z)")]
    Unsupported(String),
}

impl FromStr for Policy {
    type Err = PolicyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "modkit" {
            return Ok(Policy::Modkit);
        }
        let err = || PolicyParseError::Unknown(s.to_string());
        let rest = s.strip_prefix("linux-").ok_or_else(err)?;
        let num = |p: Option<&str>| -> Result<u32, PolicyParseError> {
            let p = p.ok_or_else(err)?;
            // Digits only: no sign, no spaces, no empty part.
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            p.parse().map_err(|_| err())
        };
        let mut parts = rest.split('.');
        let major = num(parts.next())?;
        let minor = num(parts.next())?;
        let v = match parts.next() {
            None => Version::new(major, minor),
            Some(p) => Version::with_patch(major, minor, num(Some(p))?),
        };
        if parts.next().is_some() {
            return Err(err());
        }
        if !supported(v) {
            return Err(PolicyParseError::Unsupported(s.to_string()));
        }
        Ok(Policy::Linux(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Policy {
        s.parse().unwrap()
    }

    #[test]
    fn eras_follow_the_reference_table() {
        assert_eq!(p("linux-4.19").dup_era(), DupEra::A);
        assert_eq!(p("linux-5.2").dup_era(), DupEra::A);
        assert_eq!(p("linux-5.3").dup_era(), DupEra::B);
        assert_eq!(p("linux-6.1").dup_era(), DupEra::B);
        assert_eq!(p("linux-6.2").dup_era(), DupEra::C);
        assert_eq!(p("linux-6.3").dup_era(), DupEra::C);
        assert_eq!(p("linux-6.4").dup_era(), DupEra::D);
        assert_eq!(p("linux-6.6").dup_era(), DupEra::E);
        assert_eq!(p("linux-6.10").dup_era(), DupEra::E);
        assert_eq!(p("linux-6.11").dup_era(), DupEra::F);
        assert_eq!(p("linux-4.12").kmod_limiter(), KmodLimiter::Immediate);
        assert_eq!(p("linux-4.13").kmod_limiter(), KmodLimiter::Throttle);
        assert_eq!(p("linux-6.3").kmod_limiter(), KmodLimiter::Throttle);
        assert_eq!(p("linux-6.4").kmod_limiter(), KmodLimiter::Semaphore);
        assert!(!p("linux-5.3").enforces_namespaces());
        assert!(p("linux-5.4").enforces_namespaces());
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(p("modkit"), Policy::Modkit);
        for s in [
            "modkit",
            "linux-5.15",
            "linux-6.1",
            "linux-6.1.0",
            "linux-6.1.176",
            "linux-4.4",
            "linux-4.4.302",
            "linux-6.19",
            "linux-7.0",
            "linux-7.1",
            "linux-7.2",
            "linux-7.2.13",
        ] {
            assert_eq!(p(s).to_string(), s, "round trip");
        }
        assert_eq!(
            p("linux-6.1.55"),
            Policy::Linux(Version::with_patch(6, 1, 55))
        );
        assert_ne!(p("linux-6.1.55"), p("linux-6.1"));
        // The release, with or without ".0": equal, printed as written.
        assert_eq!(p("linux-6.1"), p("linux-6.1.0"));
        assert_eq!(p("linux-6.1"), Policy::Linux(Version::new(6, 1)));
        assert!(!p("linux-6.1").version().unwrap().has_patch());
        assert!(p("linux-6.1.0").version().unwrap().has_patch());
        for bad in [
            "linux",
            "linux-6",
            "linux-x.1",
            "Linux-6.1",
            "linux-6.1.2.3",
            "linux-6.1.",
            "linux-6..1",
            "linux-6.1.+3",
            "linux-6.1.x",
            "",
        ] {
            let e = bad.parse::<Policy>().unwrap_err();
            assert!(matches!(e, PolicyParseError::Unknown(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn out_of_range_versions_are_refused_with_the_range() {
        for bad in [
            "linux-6.99",
            "linux-2.6",
            "linux-2.6.32",
            "linux-3.18",
            "linux-4.3",
            "linux-4.21",
            "linux-5.20",
            "linux-6.20",
            "linux-7.3",
            "linux-7.3.1",
            "linux-8.0",
            "linux-9.1",
        ] {
            let e = bad.parse::<Policy>().unwrap_err();
            assert!(matches!(e, PolicyParseError::Unsupported(_)), "{bad}: {e}");
            let m = e.to_string();
            assert!(m.contains(bad), "{m}");
            assert!(
                m.contains("accepted: linux-4.4 … linux-7.2 and their stable patch levels"),
                "{m}"
            );
        }
        for good in [
            "linux-4.4",
            "linux-4.20",
            "linux-5.0",
            "linux-5.19",
            "linux-6.0",
            "linux-6.19",
            "linux-6.19.12",
            "linux-7.0",
            "linux-7.0.9",
            "linux-7.1",
            "linux-7.2",
            "linux-7.2.13",
        ] {
            assert!(good.parse::<Policy>().is_ok(), "{good}");
        }
    }

    #[test]
    fn versions_order_by_patch_level() {
        let v = |s: &str| p(s).version().unwrap();
        assert!(v("linux-6.1") < v("linux-6.1.9"));
        assert!(v("linux-6.1.8") < v("linux-6.1.9"));
        assert!(v("linux-6.1.9") < v("linux-6.1.176"));
        assert!(v("linux-6.1.176") < v("linux-6.2"));
        assert!(v("linux-5.19.17") < v("linux-6.0"));
        assert_eq!(
            v("linux-6.1.0").cmp(&v("linux-6.1")),
            std::cmp::Ordering::Equal
        );
        let mut set = std::collections::HashSet::new();
        set.insert(v("linux-6.1"));
        assert!(set.contains(&v("linux-6.1.0")));
        assert_eq!(Version::with_patch(6, 1, 176).release(), Version::new(6, 1));
        assert_eq!(Version::with_patch(6, 1, 176).to_string(), "6.1.176");
        assert_eq!(Version::new(6, 1).to_string(), "6.1");
    }

    #[test]
    fn stable_backports_move_patch_levels_into_later_eras() {
        // "module: Don't wait for GOING modules" reached 6.1.y at 6.1.9 (measured on
        // Debian's 6.1.176: one init, EBUSY for the rest).
        assert_eq!(p("linux-6.1.8").dup_era(), DupEra::B);
        assert_eq!(p("linux-6.1.9").dup_era(), DupEra::C);
        assert_eq!(p("linux-6.1.176").dup_era(), DupEra::C);
        assert_eq!(p("linux-5.4").dup_era(), DupEra::B);
        assert_eq!(p("linux-5.4.230").dup_era(), DupEra::B);
        assert_eq!(p("linux-5.4.231").dup_era(), DupEra::C);
        assert_eq!(p("linux-5.10.165").dup_era(), DupEra::B);
        assert_eq!(p("linux-5.10.166").dup_era(), DupEra::C);
        assert_eq!(p("linux-5.15.90").dup_era(), DupEra::B);
        assert_eq!(p("linux-5.15.91").dup_era(), DupEra::C);
        assert_eq!(p("linux-4.19.271").dup_era(), DupEra::B);
        assert_eq!(p("linux-4.19.272").dup_era(), DupEra::C);
        assert_eq!(p("linux-4.14.136").dup_era(), DupEra::A);
        assert_eq!(p("linux-4.14.137").dup_era(), DupEra::B);
        assert_eq!(p("linux-4.14.305").dup_era(), DupEra::C);
        // 6e6de3dee51a itself was backported: era B before 5.3.
        assert_eq!(p("linux-4.4").dup_era(), DupEra::A);
        assert_eq!(p("linux-4.4.188").dup_era(), DupEra::B);
        assert_eq!(p("linux-4.9.337").dup_era(), DupEra::B);
        assert_eq!(p("linux-5.2.6").dup_era(), DupEra::A);
        assert_eq!(p("linux-5.2.7").dup_era(), DupEra::B);
        // The interruptible idempotent wait reached 6.6.46 and 6.10.5.
        assert_eq!(p("linux-6.6.45").dup_era(), DupEra::E);
        assert_eq!(p("linux-6.6.46").dup_era(), DupEra::F);
        assert_eq!(p("linux-6.10.4").dup_era(), DupEra::E);
        assert_eq!(p("linux-6.10.5").dup_era(), DupEra::F);
        assert_eq!(p("linux-6.12.117").dup_era(), DupEra::F);
        // Nothing moved the limiter.
        assert_eq!(p("linux-6.1.176").kmod_limiter(), KmodLimiter::Throttle);
        assert_eq!(p("linux-6.6.100").kmod_limiter(), KmodLimiter::Semaphore);
        // The unload wakeup (5.5, 5.4.9) and ENOENT with autoloading disabled (5.7, 5.4.33).
        assert!(!p("linux-5.4.8").unload_wakes_module_wq());
        assert!(p("linux-5.4.9").unload_wakes_module_wq());
        assert!(p("linux-5.5").unload_wakes_module_wq());
        assert!(!p("linux-5.4.32").autoload_disabled_is_error());
        assert!(p("linux-5.4.33").autoload_disabled_is_error());
        assert!(!p("linux-5.6").autoload_disabled_is_error());
        assert!(p("linux-5.6.5").autoload_disabled_is_error());
        assert!(p("linux-5.7").autoload_disabled_is_error());
        assert!(p("modkit").autoload_disabled_is_error());
    }

    #[test]
    fn the_7_1_init_changes() {
        // 743f8cae549a and 663385f9155f, both first in 7.1.
        assert!(!p("linux-4.4").init_eexist_becomes_ebusy());
        assert!(!p("linux-6.12.117").init_eexist_becomes_ebusy());
        assert!(!p("linux-7.0").init_eexist_becomes_ebusy());
        assert!(!p("linux-7.0.9").init_eexist_becomes_ebusy());
        assert!(p("linux-7.1").init_eexist_becomes_ebusy());
        assert!(p("linux-7.2.13").init_eexist_becomes_ebusy());
        assert!(p("modkit").init_eexist_becomes_ebusy());
        use PositiveInitWarning::*;
        assert_eq!(p("linux-4.4").positive_init_warning(), WithStackDump);
        assert_eq!(p("linux-6.1.176").positive_init_warning(), WithStackDump);
        assert_eq!(p("linux-7.0.9").positive_init_warning(), WithStackDump);
        assert_eq!(p("linux-7.1").positive_init_warning(), Short);
        assert_eq!(p("linux-7.2.13").positive_init_warning(), Short);
        assert_eq!(p("modkit").positive_init_warning(), Short);
    }
}
