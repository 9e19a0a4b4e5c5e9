//! The host's public operations: add modules, modprobe/insmod/rmmod, request_module,
//! symbol_get, try_module_get, lsmod.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use modkit_core::load::Load;
use modkit_core::modprobe::Modprobe;
use modkit_core::request::Request;
use modkit_core::unload::Unload;
use modkit_core::{Diagnostic, Errno, ModId, ModState, Outcome, Policy, Proc};

use crate::error::Error;
use crate::host::HostHandle;
use crate::module::Module;
use crate::symbol::{ModuleRef, Symbol};

/// How `rmmod` behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rmmod {
    /// Wait for pins to drop (modkit policy): new pins are refused at once.
    pub wait: bool,
    /// How long to wait (None: no limit).
    pub deadline: Option<Duration>,
    /// `rmmod -f`: unload even when in use or without an exit.
    pub force: bool,
}

/// One row of [`HostHandle::lsmod`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Name.
    pub name: String,
    /// State; `None` when not loaded.
    pub state: Option<ModState>,
    /// Refcount as lsmod shows it.
    pub refcount: i64,
    /// Modules using this one.
    pub used_by: Vec<String>,
    /// Who holds references (pins) on it.
    pub pinned_by: Vec<String>,
    /// How many times its init table has started.
    pub init_calls: u32,
}

impl HostHandle {
    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.lock().k.policy
    }

    /// Adds a module (as installing a .ko and running depmod). Its spec is checked against
    /// the modules already known; on error nothing changes.
    pub fn add_module(&self, module: Module) -> Result<(), Error> {
        let name = module.name().to_string();
        self.refuse_if_closing(&format!("add module {name}"))?;
        let provides = module.provided_keys();
        let (spec, code, values, drivers) = module.into_parts();
        let mut st = self.lock();
        self.check_drivers(&st, &name, &drivers)?;
        let id = st.k.add_module(spec).map_err(|e| {
            Error::new(
                format!("add module {name}: {e}"),
                Outcome::Err(Errno::EINVAL),
            )
        })?;
        if st.code.len() <= id {
            st.code.resize(id + 1, None);
        }
        st.code[id] = Some(Arc::new(code));
        self.declare_drivers(&mut st, id, drivers);
        crate::probewait::declare(&mut st, id, provides);
        for (sym, v) in values {
            st.values.insert(value_key(id, &sym), v);
        }
        Ok(())
    }

    pub(crate) fn result(&self, op: String, o: Outcome, first_diag: usize) -> Result<(), Error> {
        if o.is_ok() {
            return Ok(());
        }
        let st = self.lock();
        Err(Error {
            op,
            outcome: o,
            diagnostics: st.k.diagnostics[first_diag.min(st.k.diagnostics.len())..].to_vec(),
        })
    }

    fn run_op(&self, op: String, proc: Proc) -> Result<Outcome, Error> {
        self.run_op_within(op, proc, None)
    }

    /// Runs a host operation as a new task on the calling thread; `deadline` (else the
    /// host's default) ends its waits with ETIME (crate::watchdog).
    pub(crate) fn run_op_within(
        &self,
        op: String,
        proc: Proc,
        deadline: Option<std::time::Duration>,
    ) -> Result<Outcome, Error> {
        if matches!(proc, Proc::Unload(_)) {
            // A closing host still unloads (that is how it closes).
            self.refuse_if_shut_down(&op)?;
        } else {
            self.refuse_if_closing(&op)?;
        }
        // The module body this thread runs, else the thread's own task (it may hold pins).
        let parent = crate::host::body_task().or_else(|| self.thread_task());
        let (task, first) = {
            let mut st = self.lock();
            let first = st.k.diagnostics.len();
            let task = self.new_task(&mut st, &op);
            self.begin_op(&mut st, task, deadline);
            if let Some(p) = parent {
                // Called from inside a module body on this thread: that body's task waits
                // for this operation, so a wait of the operation on the body's own load is
                // a cycle the core refuses (EDEADLK) instead of a silent hang.
                let reason = format!("its module code calls the host's {op}");
                st.k.waits.begin(
                    p,
                    modkit_core::WaitInfo {
                        key: modkit_core::WaitKey::Task(task),
                        reason,
                        target: Some(task),
                        deadline: None,
                    },
                );
            }
            (task, first)
        };
        let o = self
            .run_task(task, proc)
            .unwrap_or(Outcome::Err(Errno::EINTR));
        let o = self.end_op(task, &op, o);
        if let Some(p) = parent {
            let mut st = self.lock();
            if st.k.waits.get(p).is_some_and(|w| w.target == Some(task)) {
                st.k.waits.end(p);
            }
        }
        self.result(op, o, first).map(|_| o)
    }

    /// `modprobe NAME-OR-ALIAS`: dependencies, softdeps, then the module. A module already
    /// live is success.
    pub fn modprobe(&self, name: &str) -> Result<(), Error> {
        self.modprobe_within(name, None)
    }

    pub(crate) fn modprobe_within(
        &self,
        name: &str,
        deadline: Option<Duration>,
    ) -> Result<(), Error> {
        self.plugins_prepare(name)?;
        let r = self
            .run_op_within(
                format!("modprobe {name}"),
                Proc::Modprobe(Modprobe::new(name, true)),
                deadline,
            )
            .map(|_| ())
            .or_else(eexist_ok);
        if r.is_err() {
            self.plugins_reap();
        }
        r
    }

    /// `insmod NAME`: just this module; its imports must be available. As the kernel's
    /// `finit_module(2)` (and kmod's insmod, "File exists"), a module already live is an
    /// error: EEXIST ([`HostHandle::modprobe`] takes it for success).
    pub fn insmod(&self, name: &str) -> Result<(), Error> {
        self.insmod_within(name, None)
    }

    pub(crate) fn insmod_within(
        &self,
        name: &str,
        deadline: Option<Duration>,
    ) -> Result<(), Error> {
        let id = self.id(name)?;
        self.run_op_within(
            format!("insmod {name}"),
            Proc::Load(Load::new(id, None)),
            deadline,
        )
        .map(|_| ())
    }

    /// `rmmod NAME`: fails with EWOULDBLOCK while the module is used or pinned.
    pub fn rmmod(&self, name: &str) -> Result<(), Error> {
        self.rmmod_with(name, Rmmod::default())
    }

    /// `rmmod` with options: `wait` (modkit) refuses new pins and waits for the existing
    /// ones up to `deadline`; `force` unloads anyway.
    pub fn rmmod_with(&self, name: &str, opts: Rmmod) -> Result<(), Error> {
        let timeout = opts.deadline.map(|d| d.as_nanos() as u64);
        self.run_op(
            format!("rmmod {name}"),
            Proc::Unload(Unload::new(name, opts.force, opts.wait, timeout)),
        )
        .map(|_| self.plugins_reap())
    }

    /// `request_module(name)` from outside any module (a kernel thread's request).
    pub fn request_module(&self, name: &str) -> Result<(), Error> {
        self.request_module_within(name, None)
    }

    pub(crate) fn request_module_within(
        &self,
        name: &str,
        deadline: Option<Duration>,
    ) -> Result<(), Error> {
        self.run_op_within(
            format!("request_module({name})"),
            Proc::Request(Request::new(name, true)),
            deadline,
        )
        .map(|_| ())
    }

    fn id(&self, name: &str) -> Result<ModId, Error> {
        self.lock().k.db.id(name).ok_or_else(|| {
            Error::new(
                format!("{name}: no such module"),
                Outcome::Err(Errno::ENOENT),
            )
        })
    }

    /// `try_module_get`: a reference that keeps `name` loaded until dropped.
    pub fn try_module_get(&self, name: &str) -> Result<ModuleRef, Error> {
        let id = self.id(name)?;
        let mut st = self.lock();
        self.tick(&mut st);
        let pin =
            st.k.try_module_get(id, "ModuleRef")
                .map_err(|e| Error::new(format!("try_module_get({name})"), Outcome::Err(e)))?;
        let task = self.acting_task(&mut st);
        st.k.set_pin_task(pin, task);
        Ok(ModuleRef {
            host: self.clone(),
            pin: Some(pin),
            module: st.k.name(id).to_string(),
        })
    }

    /// `symbol_get`: the value exported as `name`, typed, with its owner pinned while the
    /// handle lives. EINVAL when `T` is not the exported type, EBUSY while the owner is
    /// still initialising, ENOENT when nothing live exports it.
    pub fn symbol<T: Any + Send + Sync>(&self, name: &str) -> Result<Symbol<T>, Error> {
        self.symbol_get::<T>(name, None)
    }

    pub(crate) fn symbol_get<T: Any + Send + Sync>(
        &self,
        name: &str,
        importer: Option<ModId>,
    ) -> Result<Symbol<T>, Error> {
        let op = format!("symbol_get({name})");
        let err = |e: Errno| Error::new(op.clone(), Outcome::Err(e));
        let mut st = self.lock();
        self.tick(&mut st);
        if let Some(m) = importer {
            let spec = st.k.db.spec(m);
            if !spec.imports.iter().any(|i| i.name == name)
                && !spec.exports.iter().any(|e| e.name == name)
            {
                return Err(err(Errno::EINVAL));
            }
        }
        let owner =
            st.k.symtab
                .get(name)
                .map(|e| e.owner)
                .ok_or_else(|| err(Errno::ENOENT))?;
        let value = st
            .values
            .get(&value_key(owner, name))
            .cloned()
            .ok_or_else(|| err(Errno::ENOENT))?;
        let value = value.downcast::<T>().map_err(|_| err(Errno::EINVAL))?;
        let state = st.k.state(owner);
        if state == Some(ModState::Coming) && importer != Some(owner) {
            return Err(err(Errno::EBUSY));
        }
        let holder = match importer {
            Some(m) => format!("module {}", st.k.name(m)),
            None => format!("symbol_get({name})"),
        };
        let pin = if importer == Some(owner) || st.k.db.spec(owner).builtin {
            None
        } else {
            let pin = st.k.try_module_get(owner, &holder).map_err(err)?;
            let task = self.acting_task(&mut st);
            st.k.set_pin_task(pin, task);
            Some(pin)
        };
        Ok(Symbol {
            value,
            name: name.to_string(),
            _owner: ModuleRef {
                host: self.clone(),
                pin,
                module: st.k.name(owner).to_string(),
            },
        })
    }

    /// Every known module with its state, refcount, holders and pins.
    pub fn lsmod(&self) -> Vec<ModuleInfo> {
        let st = self.lock();
        (0..st.k.db.len())
            .map(|i| {
                let inst = st.k.instances[i].as_ref();
                ModuleInfo {
                    name: st.k.name(i).to_string(),
                    state: inst.map(|x| x.state),
                    refcount: inst.map(|x| x.refcount).unwrap_or(0),
                    used_by: st.k.holders(i),
                    pinned_by: st.k.pins_of(i),
                    init_calls: st.k.init_calls[i],
                }
            })
            .collect()
    }

    /// lsmod as text.
    pub fn lsmod_text(&self) -> String {
        let rows = self.lsmod();
        let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(6).max(6);
        let mut s = format!("{:<w$}  {:<8} {:>4}  Used by\n", "Module", "State", "Refs");
        for r in rows.iter().filter(|r| r.state.is_some()) {
            let mut by = r.used_by.clone();
            by.extend(r.pinned_by.iter().map(|p| format!("[{p}]")));
            s.push_str(&format!(
                "{:<w$}  {:<8} {:>4}  {}\n",
                r.name,
                r.state.map(|x| x.name()).unwrap_or("absent"),
                r.refcount,
                by.join(",")
            ));
        }
        for name in self.plugins_still_mapped() {
            s.push_str(&format!(
                "{name:<w$}  {:<8} {:>4}  (unloaded; dlclose left the library mapped)\n",
                "mapped", 0
            ));
        }
        s
    }

    /// The kernel log so far.
    pub fn log(&self) -> Vec<String> {
        self.lock().k.log.iter().map(|l| l.text.clone()).collect()
    }

    /// Broken invariants the core has seen (a module freed while pinned or held, a
    /// negative refcount, an init step undone twice or never): always empty unless modkit
    /// has a bug. Tests assert on it.
    pub fn violations(&self) -> Vec<String> {
        self.lock().k.violations.clone()
    }

    /// Every diagnostic so far.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        self.lock().k.diagnostics.clone()
    }
}

pub(crate) fn value_key(owner: ModId, sym: &str) -> String {
    format!("{owner}:{sym}")
}

fn eexist_ok(e: Error) -> Result<(), Error> {
    if e.outcome == Outcome::Err(Errno::EEXIST) {
        Ok(())
    } else {
        Err(e)
    }
}
