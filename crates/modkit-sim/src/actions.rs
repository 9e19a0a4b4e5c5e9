//! Scenario actions that complete at once, shared by both drivers: references
//! (get/put), registrations, lookups, open files, symbol calls and completions. Actions
//! that take time or run procedures (sleep, request_module, spawn, wait_for) and those
//! that end a body (fail, stop) are the driver's.

use std::collections::{BTreeSet, HashMap};

use modkit_core::{Errno, Kernel, ModId, Outcome, TaskId, WaitKey};

use crate::scenario::Action;

/// What scenario actions keep beyond the kernel's state.
#[derive(Debug, Default, Clone)]
pub struct ActionState {
    /// Open files by name, with the pin each holds.
    pub files: HashMap<String, u64>,
    /// Completions that have been completed (`complete_all`).
    pub completions: BTreeSet<String>,
}

/// Runs `a` if it completes at once, as `holder` (running the code of `module`, if any);
/// `None` when the driver must handle it.
pub fn immediate(
    k: &mut Kernel,
    st: &mut ActionState,
    module: Option<ModId>,
    holder: &str,
    a: &Action,
) -> Option<Outcome> {
    immediate_as(k, st, module, holder, None, a)
}

/// [`immediate`] on task `task`: a pin taken by `get_module` is recorded as that task's
/// (modkit_core::pinwait), so that a wait of the task on the pinned module's failed load
/// is seen as the cycle it is.
pub fn immediate_as(
    k: &mut Kernel,
    st: &mut ActionState,
    module: Option<ModId>,
    holder: &str,
    task: Option<TaskId>,
    a: &Action,
) -> Option<Outcome> {
    Some(match a {
        Action::GetModule(m) => match k.db.id(m) {
            Some(id) => match k.try_module_get(id, holder) {
                Ok(pin) => {
                    if let Some(t) = task {
                        k.set_pin_task(pin, t);
                    }
                    Outcome::Ok
                }
                Err(e) => Outcome::Err(e),
            },
            None => Outcome::Err(Errno::ENOENT),
        },
        Action::PutModule(m) => match k.db.id(m) {
            Some(id) => match k.find_pin(id, holder) {
                // The module was freed under the pin (linux-X.Y frees a failed module
                // whatever its refcount): the put is reported (`freed_while_pinned`) and
                // fails with EINVAL, as the kernel driver's modkit_rt_put_module() does once
                // the module can no longer be found by name.
                Some(pin) if k.dangling.contains_key(&pin) => {
                    let _ = k.module_put(pin);
                    Outcome::Err(Errno::EINVAL)
                }
                Some(pin) => k.module_put(pin).into(),
                None => Outcome::Err(Errno::EINVAL),
            },
            None => Outcome::Err(Errno::ENOENT),
        },
        Action::UseSymbol(s) => use_symbol(k, module, s),
        Action::Register(key) => match module {
            Some(m) => k.register(m, key).into(),
            None => Outcome::Err(Errno::EINVAL),
        },
        Action::Unregister(key) => k.unregister(key).into(),
        Action::Lookup { key, get } => {
            let h = format!("{holder} (lookup {key})");
            k.lookup(key, *get, &h).map(|_| ()).into()
        }
        Action::Open { key, fd } => {
            let h = format!("open file {fd} ({key})");
            match k.lookup(key, true, &h) {
                Ok(Some(pin)) => {
                    if let Some(old) = st.files.insert(fd.clone(), pin) {
                        let _ = k.module_put(old);
                    }
                    Outcome::Ok
                }
                Ok(None) => Outcome::Ok,
                Err(e) => Outcome::Err(e),
            }
        }
        Action::Close(fd) => match st.files.remove(fd) {
            Some(pin) => k.module_put(pin).into(),
            None => Outcome::Err(Errno::EBADF),
        },
        Action::Complete(c) => {
            st.completions.insert(c.clone());
            k.wakes.push(WaitKey::Completion(c.clone()));
            Outcome::Ok
        }
        Action::Sleep(_)
        | Action::Fail(_)
        | Action::Stop
        | Action::Ret(_)
        | Action::RequestModule { .. }
        | Action::Spawn(_)
        | Action::WaitFor { .. } => return None,
    })
}

/// Calls symbol `sym` from `module`'s code: it must import (or export) it, and its owner
/// must still be there.
fn use_symbol(k: &mut Kernel, module: Option<ModId>, sym: &str) -> Outcome {
    let Some(m) = module else {
        return Outcome::Err(Errno::EINVAL);
    };
    let spec = k.db.spec(m);
    if !spec.imports.iter().any(|i| i.name == sym) && !spec.exports.iter().any(|e| e.name == sym) {
        let line = format!("{}: calls {sym} without importing it", k.name(m));
        k.remark(Some(m), line);
        return Outcome::Err(Errno::EINVAL);
    }
    match k.symtab.get(sym) {
        Some(e) if k.instances[e.owner].is_some() => Outcome::Ok,
        _ => Outcome::Err(Errno::ENOENT),
    }
}
