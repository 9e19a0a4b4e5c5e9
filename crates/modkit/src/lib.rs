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
//!         let up = ctx.symbol::<fn(&str) -> String>("upper")?; // modkit::Error -> Errno
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
//!
//! ## No silent hang
//!
//! Under the `modkit` policy a wait that would close a cycle fails at once with
//! [`Errno::EDEADLK`] and a `dependency_cycle` [`Diagnostic`] naming the chain: an init
//! that loads its own module through the host (`ctx.host()` or a captured [`HostHandle`]), or a
//! thread that pinned a module while it was loading ([`HostHandle::try_module_get`],
//! [`HostHandle::symbol`]) and then loads it while the init fails (the failed load waits for the
//! pin, the thread for the load). A pin is attributed to the thread that took it.
//!
//! Waits that the kernel never times out (a load in flight, a module going away, a
//! request's modprobe) get a way out on the real clock:
//!
//! - deadlines: [`HostHandle::modprobe_with`], [`HostHandle::insmod_with`], [`HostHandle::request_module_with`]
//!   and [`HostHandle::set_default_deadline`] end the operation's waits at the deadline with
//!   [`Errno::ETIME`] and a `timeout` diagnostic naming the wait-for chain;
//! - a watchdog, opt-in: [`HostHandle::start_watchdog`] reports each wait without a deadline of
//!   its own that lasts `stall_after` as a `tracing` warning (target `modkit::watchdog`)
//!   and a `stalled` diagnostic with the chain, and ends a host operation stuck in one with
//!   ETIME.
//!
//! Neither interrupts module code that runs (an init step runs to its end), nor a wait the
//! kernel lets no signal end (a failed load waiting for the pins on its module): the
//! operation returns when that wait ends, and the watchdog still reports it.
//!
//! ```
//! use modkit::{Errno, Host, Init, Module};
//! use std::time::Duration;
//!
//! let host = Host::new("modkit".parse().unwrap());
//! let (tx, rx) = std::sync::mpsc::channel::<()>();
//! let rx = std::sync::Mutex::new(rx);
//! host.add_module(Module::new("slow").init_step("wait", move |_| {
//!     let _ = rx.lock().unwrap().recv();          // blocks until released
//!     Ok(Init::Continue)
//! })).unwrap();
//! let h = host.clone();
//! let loader = std::thread::spawn(move || h.modprobe("slow"));
//! while host.lsmod()[0].state.is_none() { std::thread::yield_now(); }
//! let e = host.modprobe_with("slow", Duration::from_millis(20)).unwrap_err();
//! assert_eq!(e.errno(), Some(Errno::ETIME));      // the chain is in e.diagnostics
//! tx.send(()).unwrap();
//! loader.join().unwrap().unwrap();
//! ```
//!
//! ## The host's end
//!
//! A [`Host`] owns its host; `host.clone()` gives a [`HostHandle`], which shares it without
//! owning it. Dropping the `Host` unloads every module in reverse dependency order with
//! its undos, then drops all module code and exported values (and closes the plugins'
//! libraries); handles still held are refused from then on. So an init closure that
//! captures a handle does not keep the host alive, and nothing leaks.
//! [`HostHandle::shutdown`] does the same on demand and reports what it could not unload.

mod api;
mod ctx;
mod device;
mod devres;
pub mod driver;
mod error;
mod host;
mod lifecycle;
mod module;
pub mod plugin;
mod probe;
mod revocable;
mod shutdown;
mod signal;
mod symbol;
mod sync;
mod taints;
mod threadtask;
pub mod trace;
mod watchdog;

pub use api::{ModuleInfo, Rmmod};
pub use ctx::InitCtx;
pub use device::{register_step_name, Device, DeviceCode, DeviceDriver, DeviceRow};
pub use devres::Devres;
pub use error::Error;
pub use probe::{ProbeCtx, DEFAULT_UNBIND_STALL_AFTER};

pub use host::{thread_limit, Clock, HostHandle, HOST_THREAD_CAP};
pub use lifecycle::{Host, WeakHost, DEFAULT_DROP_WAIT};
pub use modkit_core::{DiagKind, Diagnostic, Errno, ModState, Outcome, Policy};
pub use module::{Init, Module};
pub use revocable::{Revocable, RevocableGuard};
pub use symbol::{crc_of, ModuleRef, Symbol};
