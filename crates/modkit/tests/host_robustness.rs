//! Issue 9 item 7 on the host library: no silent hang. Each test runs its body on a
//! thread with a time limit, so a regression fails instead of hanging CI.

use std::sync::mpsc;
use std::time::Duration;

use modkit::{DiagKind, Errno, Host, Module};

fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("hung: no result within the time limit")
}

/// A panic payload whose own `Drop` panics.
struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the payload's drop panicked too");
    }
}

#[test]
fn a_panic_whose_payload_panics_on_drop_is_contained() {
    let (errno, lsmod) = within(20, || {
        let h = Host::new("modkit".parse().unwrap());
        h.add_module(Module::new("bomb").init_step("probe", |_| std::panic::panic_any(Bomb)))
            .unwrap();
        let e = h.modprobe("bomb").unwrap_err();
        let m = h.lsmod().remove(0);
        (e.errno(), (m.state, m.refcount))
    });
    assert_eq!(errno, Some(Errno::EFAULT));
    assert_eq!(
        lsmod,
        (None, 0),
        "the failed module is gone, no reference left"
    );
}

#[test]
fn an_init_that_modprobes_its_own_module_through_the_host_is_a_cycle() {
    let (errno, kinds) = within(20, || {
        let h = Host::new("modkit".parse().unwrap());
        h.add_module(Module::new("selfish").init_step("probe", |ctx| {
            let r = ctx.host().modprobe("selfish");
            match r {
                Err(e) => Err(e.errno().unwrap_or(Errno::EINVAL)),
                Ok(()) => Ok(modkit::Init::Continue),
            }
        }))
        .unwrap();
        let e = h.modprobe("selfish").unwrap_err();
        let kinds: Vec<DiagKind> = h.diagnostics().iter().map(|d| d.kind).collect();
        (e.errno(), kinds)
    });
    assert_eq!(errno, Some(Errno::EDEADLK));
    assert!(kinds.contains(&DiagKind::DependencyCycle), "{kinds:?}");
}

#[test]
fn an_init_that_modprobes_its_own_module_through_a_captured_host_is_a_cycle() {
    let (errno, kinds) = within(20, || {
        let h = Host::new("modkit".parse().unwrap());
        let weak = h.clone();
        h.add_module(Module::new("selfish").init_step("probe", move |_| {
            weak.modprobe("selfish")
                .map(|()| modkit::Init::Continue)
                .map_err(|e| e.errno().unwrap_or(Errno::EINVAL))
        }))
        .unwrap();
        let e = h.modprobe("selfish").unwrap_err();
        let kinds: Vec<DiagKind> = h.diagnostics().iter().map(|d| d.kind).collect();
        (e.errno(), kinds)
    });
    assert_eq!(errno, Some(Errno::EDEADLK));
    assert!(kinds.contains(&DiagKind::DependencyCycle), "{kinds:?}");
}
