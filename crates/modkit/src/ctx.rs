//! What module code receives while it runs: the context of an init step or an undo.

use std::any::Any;

use modkit_core::request::Request;
use modkit_core::{Errno, ModId, Outcome, Proc, TaskId};

use crate::error::Error;
use crate::host::HostHandle;
use crate::symbol::Symbol;

/// The context an init step (or its undo) runs in.
///
/// Every fallible method returns [`Error`], which converts into the [`Errno`] an init step
/// returns, so a step uses `?` on all of them (and on the host's own methods through
/// [`InitCtx::host`]):
///
/// ```
/// use modkit::{Errno, Host, Init, Module};
///
/// let host = Host::new("modkit".parse().unwrap());
/// host.add_module(Module::new("base").export("answer", 42u32)).unwrap();
/// host.add_module(Module::new("user").import::<u32>("answer").init_step("use", |ctx| {
///     let v = ctx.symbol::<u32>("answer")?;
///     assert_eq!(*v, 42);
///     ctx.request_module("base")?;
///     ctx.host().modprobe("no-such-module")?; // fails: the step returns its errno
///     Ok(Init::Continue)
/// })).unwrap();
/// let e = host.modprobe("user").unwrap_err();
/// assert_eq!(e.errno(), Some(Errno::ENOENT));
/// assert!(host.lsmod().iter().any(|m| m.name == "user" && m.state.is_none())); // not loaded
/// ```
pub struct InitCtx<'a> {
    host: &'a HostHandle,
    task: TaskId,
    module: ModId,
}

impl<'a> InitCtx<'a> {
    pub(crate) fn new(host: &'a HostHandle, task: TaskId, module: ModId) -> Self {
        InitCtx { host, task, module }
    }

    /// The module whose code is running.
    pub fn module_name(&self) -> String {
        self.host.lock().k.name(self.module).to_string()
    }

    /// The host.
    pub fn host(&self) -> &HostHandle {
        self.host
    }

    pub(crate) fn task(&self) -> TaskId {
        self.task
    }

    pub(crate) fn module(&self) -> ModId {
        self.module
    }

    /// `request_module(name)`: runs modprobe for a name or alias and waits for it. Under
    /// modkit a request that would wait on this module's own load fails at once with
    /// EDEADLK and a `dependency_cycle` diagnostic.
    pub fn request_module(&mut self, name: &str) -> Result<(), Error> {
        self.request(name, true)
    }

    /// `request_module_nowait(name)`: starts modprobe and returns.
    pub fn request_module_nowait(&mut self, name: &str) -> Result<(), Error> {
        self.request(name, false)
    }

    fn request(&mut self, name: &str, wait: bool) -> Result<(), Error> {
        let first = self.host.lock().k.diagnostics.len();
        let op = format!("request_module({name})");
        let o = self
            .host
            .drive(self.task, Proc::Request(Request::new(name, wait)))
            .unwrap_or(Outcome::Err(Errno::EINTR));
        self.host.result(op, o, first)
    }

    /// A symbol this module imports, pinned for as long as the handle lives.
    pub fn symbol<T: Any + Send + Sync>(&self, name: &str) -> Result<Symbol<T>, Error> {
        self.host.symbol_get::<T>(name, Some(self.module))
    }

    /// Registers a named object (`kind:name`) owned by this module; EEXIST if taken.
    pub fn register(&self, key: &str) -> Result<(), Error> {
        let mut st = self.host.lock();
        self.host.tick(&mut st);
        let r = st.k.register(self.module, key);
        r.map_err(|e| Error::new(format!("register {key}"), Outcome::Err(e)))
    }

    /// Removes a registration.
    pub fn unregister(&self, key: &str) -> Result<(), Error> {
        let mut st = self.host.lock();
        st.k.unregister(key)
            .map_err(|e| Error::new(format!("unregister {key}"), Outcome::Err(e)))
    }
}
