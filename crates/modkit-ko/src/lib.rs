//! Read real Linux kernel modules and reimplement kmod 30's `depmod`, `modinfo` and
//! `modprobe --show-depends` byte for byte.
//!
//! * [`ko::KoModule`] parses a `.ko` (also `.ko.xz`, `.ko.zst`, `.ko.gz`, detected by magic
//!   bytes): `.modinfo`, exports with namespaces and CRCs, imports with `__versions` CRCs,
//!   the signature trailer.
//! * [`depmod`] writes the ten files kmod's depmod writes.
//! * [`modinfo`] and [`modprobe`] print what kmod's tools print.
//! * [`tree::load_tree`] imports a whole `/lib/modules/VERSION` tree for the simulator.

#![warn(missing_docs)]

pub mod bytestr;
pub mod compress;
pub mod elf;
pub mod error;
pub mod ko;
pub mod signature;

pub use error::{Error, ParseError, Result};
pub use ko::KoModule;
pub mod depmod;
pub mod fnmatch;
pub mod index;
pub mod kmodhash;
pub mod modinfo;
pub mod modprobe;
pub mod names;
pub mod ops;
pub mod scenario;
#[cfg(test)]
pub(crate) mod testutil;
pub mod tree;
