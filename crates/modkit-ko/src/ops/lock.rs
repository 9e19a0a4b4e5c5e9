//! Storm coordination between concurrent `modkit modprobe` runs (issue 12 item 3, seed
//! 002): one lock file per module under `/run/modkit/modprobe/NAME`, taken with
//! `flock(2)` around the insertion. The file also holds the outcome of the last attempt
//! (`SEQ ERRNO`), written before the lock is released. A run notes the sequence number
//! *before* it waits; if, once it holds the lock, the number has moved, an attempt
//! finished while it was waiting, and it reports that attempt's true result (success, or
//! the init's own errno) instead of calling the kernel again. So of N simultaneous
//! modprobes only one calls `finit_module`, and none sees the `EBUSY`/`EEXIST` of an
//! overlapping load. Without a writable lock directory the run proceeds unlocked (kmod's
//! behaviour). Locks are advisory: kmod's modprobe, udev's builtin and plain `insmod` do
//! not take them.
//!
//! A failure is also remembered for a short while ([`FAILURE_WINDOW`], after the attempt
//! ended, on `CLOCK_BOOTTIME`): a storm's processes that only start once the failing
//! attempt is over (they never waited on it) report its errno instead of running the init
//! again, so a storm costs one init, not two. The record is keyed by the attempt (module
//! path, parameters and flags, [`attempt_key`]): a retry with other parameters or
//! `--force` runs at once. Only the init's own failures are kept:
//! `EBUSY`, `EEXIST`, `EAGAIN`, `EINTR` and `ENOMEM` (an overlap with a tool that takes no
//! lock, or a passing shortage) are not, and neither is success (a loaded module is seen
//! as loaded anyway). A retry after the window, as a user or a later uevent makes, runs
//! the init again. `MODKIT_FAILURE_WINDOW_MS` changes the window (0 turns it off).
//!
//! The same lock, keyed by a whole plain `modprobe` request instead of a module
//! ([`ModuleLock::open_request`], `.req-KEY`), is taken before any configuration or index
//! is read, and its record carries a payload (the module's name, when one line states the
//! outcome): a storm's waiters then print that line without reading anything (see
//! `request_lock_applies` in ops/modprobe.rs).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// The default lock directory.
pub const LOCK_DIR: &str = "/run/modkit/modprobe";

/// The directory in use (`MODKIT_LOCK_DIR` overrides; empty disables locking).
pub fn lock_dir() -> Option<PathBuf> {
    match std::env::var("MODKIT_LOCK_DIR") {
        Ok(s) if s.is_empty() => None,
        Ok(s) => Some(PathBuf::from(s)),
        Err(_) => Some(PathBuf::from(LOCK_DIR)),
    }
}

/// How long a failed attempt's errno is reported to runs that start after it ended.
///
/// Chosen, not taken from a source: long enough to cover a storm's stragglers in an
/// emulated guest (100 processes spread over several seconds under QEMU/TCG; 1 s left one
/// storm in two with a second init), short enough that a retry after fixing something
/// other than the parameters (firmware, a device) is not held back for long.
pub const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_millis(5000);

/// The key of an attempt: FNV-1a of the module path, the parameters and the flags.
pub fn attempt_key(path: &str, params: &str, flags: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path
        .bytes()
        .chain([0])
        .chain(params.bytes())
        .chain([0])
        .chain(flags.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The window in use ([`FAILURE_WINDOW`], or `MODKIT_FAILURE_WINDOW_MS`).
pub fn failure_window() -> std::time::Duration {
    std::env::var("MODKIT_FAILURE_WINDOW_MS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(FAILURE_WINDOW, std::time::Duration::from_millis)
}

/// Errnos that say something about the module's init (and so are worth reporting to
/// the storm's latecomers), as opposed to an overlap or a passing shortage.
pub fn is_lasting_failure(errno: i32) -> bool {
    errno != 0
        && ![
            libc::EBUSY,
            libc::EEXIST,
            libc::EAGAIN,
            libc::EINTR,
            libc::ENOMEM,
        ]
        .contains(&errno)
}

/// `CLOCK_BOOTTIME` in nanoseconds (shared by every process, never goes back).
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if r != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// An outcome record: the attempt's sequence number, errno (0: loaded) and when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record {
    /// Attempts so far.
    pub seq: u64,
    /// The last attempt's errno, 0 on success.
    pub errno: i32,
    /// When it ended ([`boottime_ns`]; 0 when unknown, as in older records).
    pub ended_ns: u64,
    /// The attempt's [`attempt_key`] (0 when unknown).
    pub key: u64,
}

impl Record {
    /// Parses `SEQ ERRNO [ENDED_NS [KEY]]\n`; anything else is the zero record.
    pub fn parse(s: &str) -> Record {
        let mut it = s.split_whitespace();
        match (
            it.next().and_then(|a| a.parse().ok()),
            it.next().and_then(|b| b.parse().ok()),
        ) {
            (Some(seq), Some(errno)) => Record {
                seq,
                errno,
                ended_ns: it.next().and_then(|c| c.parse().ok()).unwrap_or(0),
                key: it
                    .next()
                    .and_then(|k| u64::from_str_radix(k, 16).ok())
                    .unwrap_or(0),
            },
            _ => Record::default(),
        }
    }

    /// A failure of the same attempt (`key`) recent enough (ended less than `window`
    /// before `now_ns`) to report instead of trying again.
    pub fn recent_failure(
        &self,
        key: u64,
        now_ns: u64,
        window: std::time::Duration,
    ) -> Option<i32> {
        let fresh = self.ended_ns != 0
            && self.key == key
            && now_ns >= self.ended_ns
            && u128::from(now_ns - self.ended_ns) < window.as_nanos();
        (fresh && is_lasting_failure(self.errno)).then_some(self.errno)
    }
}

/// A module's lock file, opened (not yet locked).
#[derive(Debug)]
pub struct ModuleLock {
    file: File,
    before: Record,
}

/// `flock(fd, op)`, retried on `EINTR`.
fn flock(f: &File, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: the descriptor is open for the duration of the call (borrowed `File`);
        // flock takes no pointers.
        let r = unsafe { libc::flock(f.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn read_record(f: &mut File) -> Record {
    read_record_payload(f).0
}

/// The record and its payload (a fifth token, written by [`Held::finish_with`]).
fn read_record_payload(f: &mut File) -> (Record, Option<String>) {
    let mut s = String::new();
    if f.seek(SeekFrom::Start(0)).is_err() || f.read_to_string(&mut s).is_err() {
        return (Record::default(), None);
    }
    let payload = s
        .split_whitespace()
        .nth(4)
        .filter(|p| *p != "-")
        .map(str::to_string);
    (Record::parse(&s), payload)
}

/// What holding the lock found.
#[derive(Debug)]
pub enum Acquired {
    /// Another run finished an attempt while this one waited: its errno (0: loaded).
    Adopt(i32),
    /// This run must do the insertion and then [`Held::finish`].
    Held(Held),
}

/// A held lock; released on drop (closing the file).
#[derive(Debug)]
pub struct Held {
    file: File,
    seq: u64,
    key: u64,
}

impl ModuleLock {
    /// Opens the lock file of `name` and notes the current record; `None` when locking is
    /// off or impossible.
    pub fn open(name: &str) -> Option<ModuleLock> {
        let dir = lock_dir()?;
        if std::fs::create_dir_all(&dir).is_err() {
            tracing::debug!("no lock directory {}", dir.display());
            return None;
        }
        ModuleLock::open_path(&dir.join(name)).ok()
    }

    /// The lock of a whole modprobe request (`key`: its arguments), `.req-KEY` in the
    /// lock directory (module names do not start with a dot); `None` when locking is off
    /// or impossible.
    pub fn open_request(key: u64) -> Option<ModuleLock> {
        let dir = lock_dir()?;
        std::fs::create_dir_all(&dir).ok()?;
        ModuleLock::open_path(&dir.join(format!(".req-{key:016x}"))).ok()
    }

    /// Opens (creating it) the lock file at `path` and notes its current record.
    pub fn open_path(path: &std::path::Path) -> std::io::Result<ModuleLock> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let before = read_record(&mut file);
        Ok(ModuleLock { file, before })
    }

    /// Becomes the inserter, or waits for the one at work and adopts its outcome. The
    /// inserter holds the lock exclusively; the others wait with a *shared* lock, which
    /// the kernel grants to all of them at once when the inserter is done (one wake-up
    /// each, instead of a queue of exclusive holders woken one by one).
    ///
    /// `key` ([`attempt_key`]) names the attempt: a recent failure is reported only to
    /// runs making the same one.
    pub fn acquire(self, key: u64) -> Acquired {
        self.acquire_with(key, failure_window())
    }

    /// [`ModuleLock::acquire`] with a given failure window.
    pub fn acquire_with(self, key: u64, window: std::time::Duration) -> Acquired {
        self.acquire_payload(key, window).0
    }

    /// [`ModuleLock::acquire_with`], also giving an adopted attempt's payload (what its
    /// run passed to [`Held::finish_with`]).
    pub fn acquire_payload(
        mut self,
        key: u64,
        window: std::time::Duration,
    ) -> (Acquired, Option<String>) {
        loop {
            match flock(&self.file, libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => {
                    let (now, payload) = read_record_payload(&mut self.file);
                    if now.seq != self.before.seq {
                        return (Acquired::Adopt(now.errno), payload);
                    }
                    // A storm's latecomer: the failing attempt ended just before it came.
                    if let Some(e) = now.recent_failure(key, boottime_ns(), window) {
                        return (Acquired::Adopt(e), payload);
                    }
                    let held = Held {
                        file: self.file,
                        seq: now.seq,
                        key,
                    };
                    return (Acquired::Held(held), None);
                }
                Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {}
                Err(_) => {
                    // Cannot lock: behave as the unlocked tool would.
                    let held = Held {
                        file: self.file,
                        seq: self.before.seq,
                        key,
                    };
                    return (Acquired::Held(held), None);
                }
            }
            if flock(&self.file, libc::LOCK_SH).is_ok() {
                let (now, payload) = read_record_payload(&mut self.file);
                let _ = flock(&self.file, libc::LOCK_UN);
                if now.seq != self.before.seq {
                    return (Acquired::Adopt(now.errno), payload);
                }
                // A latecomer sees the recent failure here too: it must not need the
                // exclusive lock for that, or a crowd of latecomers, each holding the
                // shared lock in turn, keeps every one of them from getting it.
                if let Some(e) = now.recent_failure(key, boottime_ns(), window) {
                    return (Acquired::Adopt(e), payload);
                }
            }
            // The holder was another run's shared wait (or one that did not finish):
            // try again.
            std::thread::yield_now();
        }
    }
}

impl Held {
    /// Records this attempt's outcome (errno, 0 on success) for the runs waiting.
    pub fn finish(self, errno: i32) {
        self.finish_with(errno, None);
    }

    /// [`Held::finish`] with a payload for the runs that adopt the outcome (one token:
    /// no whitespace; `None`: nothing).
    pub fn finish_with(mut self, errno: i32, payload: Option<&str>) {
        let rec = format!(
            "{} {} {} {:x} {}\n",
            self.seq + 1,
            errno,
            boottime_ns(),
            self.key,
            payload.unwrap_or("-")
        );
        let _ = self.file.set_len(0);
        let _ = self.file.seek(SeekFrom::Start(0));
        let _ = self.file.write_all(rec.as_bytes());
        let _ = self.file.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        assert_eq!(
            Record::parse("3 19\n"),
            Record {
                seq: 3,
                errno: 19,
                ended_ns: 0,
                key: 0
            }
        );
        assert_eq!(Record::parse("3 19 77 ff\n").key, 255);
        assert_eq!(Record::parse("3 19 77\n").ended_ns, 77);
        assert_eq!(Record::parse("junk"), Record::default());
        let w = std::time::Duration::from_millis(1000);
        let r = Record::parse("1 19 5000000000 a");
        assert_eq!(r.recent_failure(10, 5_500_000_000, w), Some(19));
        assert_eq!(
            r.recent_failure(11, 5_500_000_000, w),
            None,
            "another attempt"
        );
        assert_eq!(r.recent_failure(10, 6_000_000_001, w), None);
        assert_eq!(r.recent_failure(10, 4_000_000_000, w), None);
        // Overlaps and successes are not kept; old records have no time.
        let at = |s: &str| Record::parse(s).recent_failure(10, 5_000_000_001, w);
        assert_eq!(at("1 16 5000000000 a"), None);
        assert_eq!(at("1 0 5000000000 a"), None);
        assert_eq!(at("1 19"), None);
        assert_ne!(
            attempt_key("/m/a.ko", "x=1", 0),
            attempt_key("/m/a.ko", "x=2", 0)
        );
        assert_ne!(attempt_key("/m/a.ko", "", 0), attempt_key("/m/a.ko", "", 3));
    }

    /// Many latecomers at once (threads: flock locks belong to the open file, so each
    /// open is a separate party, as processes are) all adopt the failure. (On a fast
    /// host this passes even without the check under the shared lock: the convoy that
    /// check prevents showed only in the slow QEMU/TCG guest, where the storm hung.)
    #[test]
    fn a_crowd_of_latecomers_adopts_without_a_convoy() {
        let dir = std::env::temp_dir().join(format!("modkit-lock-crowd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m");
        let open = |p: &std::path::Path| ModuleLock::open_path(p).unwrap();
        let w = std::time::Duration::from_secs(30);
        let Acquired::Held(h) = open(&path).acquire_with(3, w) else {
            panic!("first must hold")
        };
        h.finish(libc::ENODEV);
        let t0 = std::time::Instant::now();
        let threads: Vec<_> = (0..48)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || match open(&p).acquire_with(3, w) {
                    Acquired::Adopt(e) => e,
                    Acquired::Held(_) => -1,
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), libc::ENODEV);
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            t0.elapsed()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A run that starts after a failing attempt ended (so never waited on it) reports
    /// its errno within the window, and tries again after it.
    #[test]
    fn latecomers_adopt_a_recent_failure_and_retry_after_the_window() {
        let dir = std::env::temp_dir().join(format!("modkit-lock-late-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let open = || ModuleLock::open_path(&dir.join("m")).unwrap();
        let w = std::time::Duration::from_millis(300);
        let Acquired::Held(h) = open().acquire_with(7, w) else {
            panic!("first must hold")
        };
        h.finish(libc::ENODEV);
        // Opened after the failure: the sequence number has not moved for it.
        assert!(matches!(open().acquire_with(7, w), Acquired::Adopt(e) if e == libc::ENODEV));
        // Other parameters: tried at once.
        let Acquired::Held(h) = open().acquire_with(8, w) else {
            panic!("another attempt must hold")
        };
        h.finish(libc::ENODEV);
        std::thread::sleep(std::time::Duration::from_millis(350));
        let Acquired::Held(h) = open().acquire_with(8, w) else {
            panic!("after the window, a retry runs the init again")
        };
        // An overlap's EBUSY is not passed on.
        h.finish(libc::EBUSY);
        assert!(matches!(open().acquire_with(8, w), Acquired::Held(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A run that waited gets the payload its attempt finished with (a request's one-line
    /// outcome, ops/modprobe.rs); an attempt without one gives none.
    #[test]
    fn a_payload_reaches_the_runs_that_adopt() {
        let dir = std::env::temp_dir().join(format!("modkit-lock-pl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let open = || ModuleLock::open_path(&dir.join("r")).unwrap();
        let (first, second) = (open(), open());
        let Acquired::Held(h) = first.acquire(5) else {
            panic!("first must hold")
        };
        let t = std::thread::spawn(move || {
            match second.acquire_payload(5, std::time::Duration::ZERO) {
                (Acquired::Adopt(e), p) => (e, p),
                (Acquired::Held(_), _) => (-1, None),
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        h.finish_with(libc::ENODEV, Some("6d745f61"));
        assert_eq!(
            t.join().unwrap(),
            (libc::ENODEV, Some("6d745f61".to_string()))
        );
        let (third, fourth) = (open(), open());
        let Acquired::Held(h) = third.acquire_with(5, std::time::Duration::ZERO) else {
            panic!("third must hold")
        };
        let t = std::thread::spawn(move || fourth.acquire_payload(5, std::time::Duration::ZERO).1);
        std::thread::sleep(std::time::Duration::from_millis(50));
        h.finish(0);
        assert_eq!(t.join().unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn waiters_adopt_the_outcome() {
        let dir = std::env::temp_dir().join(format!("modkit-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let open = || ModuleLock::open_path(&dir.join("m")).unwrap();
        let first = open();
        let second = open();
        let Acquired::Held(h) = first.acquire(1) else {
            panic!("first must hold")
        };
        let t = std::thread::spawn(move || match second.acquire(1) {
            Acquired::Adopt(e) => e,
            Acquired::Held(_) => -1,
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        h.finish(19);
        assert_eq!(t.join().unwrap(), 19);
        // A later run, with the failure window off, starts afresh.
        let Acquired::Held(h) = open().acquire_with(1, std::time::Duration::ZERO) else {
            panic!("later run must hold")
        };
        h.finish(0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
