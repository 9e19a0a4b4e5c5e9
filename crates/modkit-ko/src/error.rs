//! Error types of the `.ko` reader and of the kmod-compatible tools.

use std::path::PathBuf;

/// What is wrong with the bytes of a module, independent of where they came from.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The data is shorter than the smallest thing it must contain.
    #[error("file is too short ({len} bytes) to be a kernel module")]
    TooShort {
        /// Length of the data in bytes.
        len: usize,
    },
    /// The data is neither ELF nor a compressed stream we know.
    #[error("not an ELF file and not xz, zstd or gzip compressed (magic bytes {magic})")]
    UnknownFormat {
        /// The first bytes, in hex.
        magic: String,
    },
    /// Decompression failed.
    #[error("corrupt {format} data: {message}")]
    Decompress {
        /// `xz`, `zstd` or `gzip`.
        format: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// The decompressed data is implausibly large (a decompression bomb).
    #[error("{format} data expands to more than {limit} bytes")]
    TooLarge {
        /// `xz`, `zstd` or `gzip`.
        format: &'static str,
        /// The limit that was exceeded.
        limit: u64,
    },
    /// The ELF headers are malformed.
    #[error("malformed ELF: {0}")]
    Elf(String),
    /// A specific section is malformed.
    #[error("malformed section {section}: {message}")]
    Section {
        /// The section's name.
        section: String,
        /// What is wrong.
        message: String,
    },
    /// A section that is required is missing.
    #[error("missing section {0}")]
    MissingSection(&'static str),
}

/// [`ParseError::Elf`]'s text for data that does not start with ELF's magic bytes.
pub const BAD_ELF_MAGIC: &str = "bad ELF magic";

impl ParseError {
    /// The errno libkmod 30 reports for the same defect (`kmod_elf_new`'s
    /// `elf_identify` and header checks, `kmod_elf_get_section`): `ENOEXEC` for data that
    /// is not ELF at all (what kmod sees for a file it cannot decompress either; an empty
    /// file is `EINVAL`, from kmod's `mmap` of 0 bytes), `ENOENT`
    /// for a missing section (kmod 30; kmod 33+ says `ENODATA`), `EINVAL` for the rest.
    pub fn errno(&self) -> i32 {
        match self {
            // An empty file: kmod's mmap of 0 bytes fails with EINVAL.
            ParseError::TooShort { len: 0 } => libc::EINVAL,
            ParseError::TooShort { .. } | ParseError::UnknownFormat { .. } => libc::ENOEXEC,
            ParseError::Elf(m) if m == BAD_ELF_MAGIC => libc::ENOEXEC,
            ParseError::MissingSection(_) => libc::ENOENT,
            _ => libc::EINVAL,
        }
    }

    /// kmod's text for this error: `strerror` of [`ParseError::errno`] (`Exec format
    /// error`, `Invalid argument` ...). modkit's own description ([`ParseError`]'s
    /// `Display`) goes on a second line where the tools print it.
    pub fn kmod_text(&self) -> String {
        strerror(self.errno())
    }
}

/// `strerror(errno)` (Rust's text without its " (os error N)" suffix).
pub fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The second line a tool prints after kmod's message when modkit knows more:
/// `TOOL: DETAIL: TEXT\n`. Scripts comparing with kmod drop lines matching
/// `^[a-z]*: DETAIL: `.
pub fn detail_line(tool: &str, text: &str) -> String {
    format!("{tool}: DETAIL: {text}\n")
}

/// An error of the library, always naming the file or directory concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path that could not be read or written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A module file is malformed.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The module file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ParseError,
    },
    /// A text input (config, Module.symvers, modules.dep ...) is malformed or a lookup failed.
    #[error("{0}")]
    Message(String),
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmod_errnos() {
        assert_eq!(
            ParseError::Elf(BAD_ELF_MAGIC.into()).kmod_text(),
            "Exec format error"
        );
        assert_eq!(
            ParseError::TooShort { len: 3 }.kmod_text(),
            "Exec format error"
        );
        assert_eq!(
            ParseError::TooShort { len: 0 }.kmod_text(),
            "Invalid argument"
        );
        assert_eq!(ParseError::Elf("x".into()).kmod_text(), "Invalid argument");
        assert_eq!(
            ParseError::MissingSection(".modinfo").kmod_text(),
            "No such file or directory"
        );
    }
}
