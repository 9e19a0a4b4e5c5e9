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
