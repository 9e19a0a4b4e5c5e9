//! Shutting a host down: every loaded module unloaded in reverse dependency order (a
//! module only once nothing uses it), with its undos, then the plugins' libraries closed.

use modkit_core::ModState;

use crate::api::Rmmod;
use crate::error::Error;
use crate::host::Host;

impl Host {
    /// Unloads every live module, users before the modules they use, running their undos;
    /// then closes the plugins' libraries. A module still pinned (a `Symbol` or
    /// `ModuleRef` held elsewhere) is waited for up to `opts.deadline` when `opts.wait`;
    /// the first failure is returned after every other module has been tried.
    pub fn shutdown(&self, opts: Rmmod) -> Result<(), Error> {
        let mut first_err = None;
        loop {
            let rows = self.lsmod();
            let live: Vec<_> = rows
                .iter()
                .filter(|r| r.state == Some(ModState::Live))
                .collect();
            if live.is_empty() {
                break;
            }
            // Modules nothing uses go first.
            let free: Vec<String> = live
                .iter()
                .filter(|r| r.used_by.is_empty())
                .map(|r| r.name.clone())
                .collect();
            if free.is_empty() {
                break;
            }
            let mut progressed = false;
            for name in free {
                tracing::info!(module = %name, "shutdown: unloading");
                match self.rmmod_with(&name, opts) {
                    Ok(()) => progressed = true,
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        self.plugins_reap();
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Host, Module, Rmmod};
    use std::sync::{Arc, Mutex};

    #[test]
    fn shutdown_unloads_users_first() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let host = Host::new("modkit".parse().unwrap());
        let o = order.clone();
        host.add_module(Module::new("base").export("v", 1u32).init_step_with_undo(
            "s",
            |_| Ok(crate::Init::Continue),
            move |_| o.lock().unwrap().push("base"),
        ))
        .unwrap();
        let o = order.clone();
        host.add_module(Module::new("user").import::<u32>("v").init_step_with_undo(
            "s",
            |_| Ok(crate::Init::Continue),
            move |_| o.lock().unwrap().push("user"),
        ))
        .unwrap();
        host.modprobe("user").unwrap();
        host.shutdown(Rmmod::default()).unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["user", "base"]);
        assert!(host.lsmod().iter().all(|r| r.state.is_none()));
    }
}
