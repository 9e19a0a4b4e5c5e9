//! Tests of shutting a host down (`HostHandle::shutdown`, `HostHandle::shutdown_with` in
//! `lifecycle.rs`): every loaded module unloaded in reverse dependency order (a module
//! only once nothing uses it), with its undos, then the plugins' libraries closed.

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
        host.shutdown_with(Rmmod::default()).unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["user", "base"]);
        assert!(host.lsmod().iter().all(|r| r.state.is_none()));
    }
}
