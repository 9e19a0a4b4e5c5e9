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
//! ## Devices and drivers
//!
//! The host has the kernel's driver core (`drivers/base/dd.c`, `bus.c`, `driver.c`, as
//! `modkit_core::device` models them) for Rust programs. A module declares drivers with
//! [`Module::driver`]: a [`DeviceDriver`] on a bus, with modalias patterns (which also
//! become the module's aliases, as `MODULE_DEVICE_TABLE` does), a probe and a remove. A
//! step `driver_register(NAME)` is appended to the module's init table and undone at exit.
//! Devices ([`Device`]) are added and removed at run time ([`HostHandle::add_device`],
//! [`HostHandle::remove_device`]), bound and unbound as through sysfs
//! ([`HostHandle::bind`], [`HostHandle::unbind`]), and listed with
//! [`HostHandle::devices`].
//!
//! - A driver's registration probes every present, unbound device of its bus that matches;
//!   a device added is offered to the registered drivers in registration order until one
//!   binds or defers. Probes run on the thread that caused them (the module's init, the
//!   thread adding the device), outside the host's lock.
//! - A probe returning `EPROBE_DEFER` (as [`ProbeCtx::need`] does for a supplier not
//!   there) puts the device on the pending list, retried by a worker thread after every
//!   successful probe; the deferred-probe timeout ([`HostHandle::set_deferred_probe_timeout`],
//!   by default the era's) runs on the host's clock and prints "deferred probe pending".
//!   `ENODEV`/`ENXIO` fail silently; other errors print the era's line and the next driver
//!   is tried.
//! - Under the `modkit` policy a [`ProbeCtx::need`] whose provider is still loading (a
//!   module that declared it with [`Module::provides`], or whose driver matches the
//!   `device:NAME` needed) waits for that load to end instead of deferring; a wait that
//!   would close a cycle (the probe runs inside the provider's own init) defers, and the
//!   device is retried as soon as a module goes live with its need there. Under
//!   `linux-X.Y` the probe defers, as the kernel's does.
//! - A device added with [`Device::match_defer`] has a bus match that returns
//!   `-EPROBE_DEFER` until its key is there (AMBA's match reading the peripheral id); what
//!   the driver core does with it depends on the era (`modkit_core::matchdefer`): before
//!   4.5 a match, 4.5–5.19 pending and probed anyway, 6.0+ and `modkit` pending only; a
//!   sysfs [`HostHandle::bind`] probes in every era.
//! - Unbinding (sysfs `unbind`, [`HostHandle::remove_device`], or the module's exit)
//!   unbinds consumers first (devices whose probe needed `device:NAME`), then runs the
//!   remove, then revokes the managed resources ([`ProbeCtx::devm`] gives a [`Devres`]),
//!   newest first, exactly once, waiting for the accesses in flight.
//! - A bound device does not pin its module: `rmmod` unbinds through the exit.
//! - Under the `modkit` policy no unbind hangs: a [`Devres`] guard still held after
//!   [`HostHandle::set_unbind_stall_after`] (1 s by default), or a probe or remove that
//!   another operation waits for that long, is reported as a `stalled` [`Diagnostic`]
//!   naming the device, the driver and the callback or resource; the unbind goes on (the
//!   value lives until its last guard drops), the waiting operation fails with ETIME.
//!   Under `linux-X.Y` they wait, as the kernel does.
//! - [`HostHandle::devres_use`] is a use in flight of a managed resource by name (ENXIO
//!   once its device's resources are revoked), waited for by an unbind like a [`Devres`]
//!   guard. On [`Clock::Virtual`] (scenario runs) unbind follows the simulator instead:
//!   under `modkit` it revokes first, waits for the uses at most 5 s, runs the remove on a
//!   thread of its own at most 5 s and abandons a remove still running (a `stalled`
//!   diagnostic; the callback holds its module until it returns); under `linux-X.Y` it
//!   waits for the remove without bound and frees the resources under their users (a
//!   `remark`).
//! - [`HostHandle::set_device_autoload`] makes each device added run `modprobe MODALIAS`
//!   on a worker thread, udev's role; [`HostHandle::settle`] waits for the workers.
//! - Auxiliary devices ([`Device::auxiliary`]) are named `modname.devname.id` and announce
//!   `auxiliary:modname.devname`.
//!
//! ```
//! use modkit::{Device, DeviceDriver, Host, Module};
//!
//! let host = Host::new("modkit".parse().unwrap());
//! host.add_bus("endpoint").unwrap();
//! host.add_module(Module::new("api").driver(
//!     DeviceDriver::new("api", "endpoint")
//!         .matches("endpoint:http:/api/*")
//!         .probe(|ctx| {
//!             let handler = ctx.devm(|req: &str| format!("ok {req}"))?;   // a Devres
//!             assert_eq!((handler.try_access().unwrap())("x"), "ok x");
//!             Ok(())
//!         }),
//! )).unwrap();
//! host.set_device_autoload(true);
//! host.add_device(Device::new("ep0", "endpoint").modalias("endpoint:http:/api/users")).unwrap();
//! host.settle();                                      // the autoload modprobe bound it
//! assert_eq!(host.device_state("ep0").unwrap(), "bound:api");
//! host.unbind("ep0").unwrap();
//! host.bind("ep0", "api").unwrap();
//! host.rmmod("api").unwrap();                         // the exit unbinds ep0
//! assert_eq!(host.device_state("ep0").unwrap(), "unbound");
//! ```
//!
//! `crates/modkit/examples/endpoints.rs` serves requests through [`Devres`] guards while
//! endpoints are unbound, bound again and their module removed.
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
mod asyncprobe;
mod ctx;
mod device;
mod devres;
pub mod driver;
mod error;
mod history;
mod host;
mod lifecycle;
mod matchdefer;
mod module;
pub mod plugin;
mod probe;
mod probewait;
mod revocable;
mod shutdown;
mod signal;
mod symbol;
mod sync;
mod taints;
mod threadtask;
pub mod trace;
mod unbind;
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
pub use unbind::DevresUse;
