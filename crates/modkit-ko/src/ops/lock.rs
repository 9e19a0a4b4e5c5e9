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

/// An outcome record: the attempt's sequence number and errno (0: loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record {
    /// Attempts so far.
    pub seq: u64,
    /// The last attempt's errno, 0 on success.
    pub errno: i32,
}

impl Record {
    /// Parses `SEQ ERRNO\n`; anything else is the zero record.
    pub fn parse(s: &str) -> Record {
        let mut it = s.split_whitespace();
        match (
            it.next().and_then(|a| a.parse().ok()),
            it.next().and_then(|b| b.parse().ok()),
        ) {
            (Some(seq), Some(errno)) => Record { seq, errno },
            _ => Record::default(),
        }
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
    let mut s = String::new();
    if f.seek(SeekFrom::Start(0)).is_err() || f.read_to_string(&mut s).is_err() {
        return Record::default();
    }
    Record::parse(&s)
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
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(name))
            .ok()?;
        let before = read_record(&mut file);
        Some(ModuleLock { file, before })
    }

    /// Becomes the inserter, or waits for the one at work and adopts its outcome. The
    /// inserter holds the lock exclusively; the others wait with a *shared* lock, which
    /// the kernel grants to all of them at once when the inserter is done (one wake-up
    /// each, instead of a queue of exclusive holders woken one by one).
    pub fn acquire(mut self) -> Acquired {
        loop {
            match flock(&self.file, libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => {
                    let now = read_record(&mut self.file);
                    if now.seq != self.before.seq {
                        return Acquired::Adopt(now.errno);
                    }
                    return Acquired::Held(Held {
                        file: self.file,
                        seq: now.seq,
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {}
                Err(_) => {
                    // Cannot lock: behave as the unlocked tool would.
                    return Acquired::Held(Held {
                        file: self.file,
                        seq: self.before.seq,
                    });
                }
            }
            if flock(&self.file, libc::LOCK_SH).is_ok() {
                let now = read_record(&mut self.file);
                let _ = flock(&self.file, libc::LOCK_UN);
                if now.seq != self.before.seq {
                    return Acquired::Adopt(now.errno);
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
    pub fn finish(mut self, errno: i32) {
        let rec = format!("{} {}\n", self.seq + 1, errno);
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
        assert_eq!(Record::parse("3 19\n"), Record { seq: 3, errno: 19 });
        assert_eq!(Record::parse("junk"), Record::default());
    }

    #[test]
    fn waiters_adopt_the_outcome() {
        let dir = std::env::temp_dir().join(format!("modkit-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let open = || {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join("m"))
                .unwrap();
            let before = read_record(&mut file);
            ModuleLock { file, before }
        };
        let first = open();
        let second = open();
        let Acquired::Held(h) = first.acquire() else {
            panic!("first must hold")
        };
        let t = std::thread::spawn(move || match second.acquire() {
            Acquired::Adopt(e) => e,
            Acquired::Held(_) => -1,
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        h.finish(19);
        assert_eq!(t.join().unwrap(), 19);
        // A later run starts afresh.
        let Acquired::Held(h) = open().acquire() else {
            panic!("later run must hold")
        };
        h.finish(0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
