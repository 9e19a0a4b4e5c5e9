//! Policies: the knobs where kernel versions differ, and where modkit chooses better.
//!
//! The era boundaries are those of `reference/linux-module-loader.md` §2.1 and §5.2.

use std::fmt;
use std::str::FromStr;

/// A kernel version `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl Version {
    /// `Version::new(6, 1)` is 6.1.
    pub const fn new(major: u32, minor: u32) -> Self {
        Version { major, minor }
    }
}

/// How a second load of a module that is already present behaves (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DupEra {
    /// ≤ 5.2: wait while COMING/UNFORMED then retry; LIVE or GOING gives EEXIST.
    A,
    /// 5.3 – 6.1: wait for anything not LIVE to finish, then retry (serialised retries).
    B,
    /// 6.2 – 6.3: wait once for COMING; GOING or vanished gives EBUSY.
    C,
    /// 6.4: as C, checked before allocation and again at insertion.
    D,
    /// 6.5 – 6.10: concurrent finit_module of one file shares the first's result
    /// (uninterruptible wait).
    E,
    /// 6.11+: as E, the wait is interruptible.
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

/// The semantics a run follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// modkit's own semantics: cycles refused with the chain, loads and requests merged,
    /// rmmod that can wait for pins, leak diagnostics.
    #[default]
    Modkit,
    /// Exactly what that kernel did.
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

    /// The kernel version, for `linux-X.Y`.
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
        if v < Version::new(5, 3) {
            DupEra::A
        } else if v < Version::new(6, 2) {
            DupEra::B
        } else if v < Version::new(6, 4) {
            DupEra::C
        } else if v < Version::new(6, 5) {
            DupEra::D
        } else if v < Version::new(6, 11) {
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

    /// request_module returns the raw wait status (Linux) instead of the load's error.
    pub fn request_returns_status(self) -> bool {
        !self.is_modkit()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Modkit => f.write_str("modkit"),
            Policy::Linux(v) => write!(f, "linux-{}.{}", v.major, v.minor),
        }
    }
}

/// Why a policy name did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy `{0}`: use \"modkit\" or \"linux-X.Y\" (for example \"linux-5.15\", \"linux-6.1\")")]
pub struct PolicyParseError(pub String);

impl FromStr for Policy {
    type Err = PolicyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "modkit" {
            return Ok(Policy::Modkit);
        }
        let err = || PolicyParseError(s.to_string());
        let rest = s.strip_prefix("linux-").ok_or_else(err)?;
        let mut parts = rest.split('.');
        let major: u32 = parts.next().ok_or_else(err)?.parse().map_err(|_| err())?;
        let minor: u32 = parts.next().ok_or_else(err)?.parse().map_err(|_| err())?;
        // A patch level ("linux-6.1.55") is accepted and ignored: eras follow major.minor.
        if let Some(p) = parts.next() {
            p.parse::<u32>().map_err(|_| err())?;
        }
        if parts.next().is_some() || !(2..=9).contains(&major) {
            return Err(err());
        }
        Ok(Policy::Linux(Version::new(major, minor)))
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
        assert_eq!(p("linux-5.15").to_string(), "linux-5.15");
        assert_eq!(p("linux-6.1.55"), Policy::Linux(Version::new(6, 1)));
        for bad in [
            "linux",
            "linux-6",
            "linux-x.1",
            "Linux-6.1",
            "linux-6.1.2.3",
            "",
        ] {
            assert!(bad.parse::<Policy>().is_err(), "{bad}");
        }
    }
}
