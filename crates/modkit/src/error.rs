//! The library's error: what failed, with the errno the kernel would return and the
//! diagnostics (cycle chains, holders, …) the core raised on the way.

use std::fmt;

use modkit_core::{Diagnostic, Errno, Outcome};

/// A failed host operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    /// The operation, e.g. `modprobe kvmgt`.
    pub op: String,
    /// What it returned (an errno, or a raw wait status under `linux-X.Y`).
    pub outcome: Outcome,
    /// Diagnostics raised by the operation.
    pub diagnostics: Vec<Diagnostic>,
}

impl Error {
    pub(crate) fn new(op: impl Into<String>, outcome: Outcome) -> Self {
        Error {
            op: op.into(),
            outcome,
            diagnostics: Vec::new(),
        }
    }

    /// The errno, when the outcome is one.
    pub fn errno(&self) -> Option<Errno> {
        self.outcome.errno()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.outcome {
            Outcome::Err(e) => write!(f, "{}: {} ({})", self.op, e, e.strerror())?,
            other => write!(f, "{}: returned {other}", self.op)?,
        }
        for d in &self.diagnostics {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

/// Lets an init step (which returns `Result<Init, Errno>`) use `?` on whatever
/// [`crate::InitCtx`] and the host return: the error's errno. An outcome that is not an
/// errno becomes one: `Killed` (the task got SIGKILL) is `EINTR`; a raw wait status of a
/// modprobe (under `linux-X.Y`) is `EINVAL` (an init that wants the status itself matches
/// on [`Error::outcome`]). The diagnostics stay on the host's record, not in the errno.
impl From<Error> for Errno {
    fn from(e: Error) -> Errno {
        match e.outcome {
            Outcome::Err(errno) => errno,
            Outcome::Killed => Errno::EINTR,
            Outcome::Ok | Outcome::Status(_) => Errno::EINVAL,
        }
    }
}
