//! # modkit
//!
//! Loadable modules for Rust programs, with the Linux kernel's lifecycle and its failure
//! modes fixed: modules export and import typed symbols (with namespaces, GPL-only flags
//! and type-derived CRCs), load on demand by name or alias with their dependencies, run
//! init tables that unwind exactly, and stay loaded while anything holds a reference.
//!
//! ```
//! use modkit::{Host, Init, Module, Rmmod};
//! use std::time::Duration;
//!
//! let host = Host::new("modkit".parse().unwrap());
//! host.add_module(Module::new("upper")
//!     .alias("stage:upper")
//!     .export("upper", (|s: &str| s.to_uppercase()) as fn(&str) -> String)).unwrap();
//! host.add_module(Module::new("shout")
//!     .import::<fn(&str) -> String>("upper")
//!     .init_step("check", |ctx| {
//!         let up = ctx.symbol::<fn(&str) -> String>("upper").map_err(|e| e.errno().unwrap())?;
//!         assert_eq!(up("hi"), "HI");
//!         Ok(Init::Continue)
//!     })).unwrap();
//! host.modprobe("shout").unwrap();          // loads upper first
//! let up = host.symbol::<fn(&str) -> String>("upper").unwrap();
//! assert!(host.rmmod("upper").is_err());    // used by shout, and pinned by `up`
//! drop(up);
//! host.rmmod("shout").unwrap();
//! host.rmmod_with("upper", Rmmod { wait: true, deadline: Some(Duration::from_secs(1)), force: false }).unwrap();
//! ```

mod api;
mod ctx;
mod error;
mod host;
mod module;
mod revocable;
pub mod scenario;
mod signal;
mod symbol;
mod sync;
mod threadtask;

pub use api::{ModuleInfo, Rmmod};
pub use ctx::InitCtx;
pub use error::Error;
pub use host::{Clock, Host};
pub use modkit_core::{DiagKind, Diagnostic, Errno, ModState, Outcome, Policy};
pub use module::{Init, Module};
pub use revocable::{Revocable, RevocableGuard};
pub use symbol::{crc_of, ModuleRef, Symbol};
