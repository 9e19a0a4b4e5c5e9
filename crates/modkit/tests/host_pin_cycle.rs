//! Issue 9 item 7, first case, on the host library: a thread that pinned a module while it
//! was loading (`try_module_get`, `symbol`) and then loads it (`modprobe`), while that
//! load's init fails. The failed load waits for the pin (modkit never frees code someone
//! holds) and the thread waits for the load: under modkit the thread's modprobe is refused
//! at once with EDEADLK and a `dependency_cycle` naming the chain, whichever side waits
//! first. Each test runs with a time limit so that a regression fails instead of hanging.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use modkit::{DiagKind, Errno, Host, HostHandle, Init, ModState, Module};

fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("hung: no result within the time limit")
}

fn state(h: &HostHandle, name: &str) -> Option<ModState> {
    h.lsmod()
        .into_iter()
        .find(|r| r.name == name)
        .and_then(|r| r.state)
}

fn wait_for_state(h: &HostHandle, name: &str, want: Option<ModState>) {
    for _ in 0..10_000 {
        if state(h, name) == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("{name} never reached {want:?}");
}

/// A module whose init waits at `gate` (so the test controls when it fails), then fails.
fn failing(gate: Arc<Barrier>) -> Module {
    Module::new("m")
        .export("value", 7u32)
        .init_step("probe", move |_| {
            gate.wait();
            Err::<Init, _>(Errno::ENODEV)
        })
}

/// The thread's modprobe merges into the load in flight; then the init fails and the
/// failed load's wait for the pin closes the cycle.
#[test]
fn pin_then_modprobe_while_the_init_fails_is_refused() {
    let (mine, loader, kinds, after) = within(30, || {
        let h = Host::new("modkit".parse().unwrap());
        let gate = Arc::new(Barrier::new(2));
        h.add_module(failing(gate.clone())).unwrap();
        let h2 = h.clone();
        let loader = std::thread::spawn(move || h2.modprobe("m"));
        wait_for_state(&h, "m", Some(ModState::Coming));
        let pin = h
            .try_module_get("m")
            .expect("a COMING module can be pinned");
        // Let the init fail a little after this thread's modprobe has merged.
        let g = gate.clone();
        let opener = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            g.wait();
        });
        let mine = h.modprobe("m");
        drop(pin);
        let loader = loader.join().unwrap();
        opener.join().unwrap();
        let kinds: Vec<DiagKind> = h.diagnostics().iter().map(|d| d.kind).collect();
        (mine, loader, kinds, state(&h, "m"))
    });
    assert_eq!(mine.unwrap_err().errno(), Some(Errno::EDEADLK));
    assert_eq!(loader.unwrap_err().errno(), Some(Errno::ENODEV));
    assert!(kinds.contains(&DiagKind::DependencyCycle), "{kinds:?}");
    assert_eq!(after, None, "freed once the pin dropped");
}

/// The init fails first (the failed load waits for the pin, m is GOING); then the pin
/// holder loads m: refused at once, with the chain in the error.
#[test]
fn pin_then_modprobe_after_the_init_failed_is_refused() {
    let (err, loader, after) = within(30, || {
        let h = Host::new("modkit".parse().unwrap());
        let gate = Arc::new(Barrier::new(2));
        h.add_module(failing(gate.clone())).unwrap();
        let h2 = h.clone();
        let loader = std::thread::spawn(move || h2.modprobe("m"));
        wait_for_state(&h, "m", Some(ModState::Coming));
        let pin = h.try_module_get("m").unwrap();
        gate.wait();
        wait_for_state(&h, "m", Some(ModState::Going));
        let err = h.modprobe("m").unwrap_err();
        drop(pin);
        let loader = loader.join().unwrap();
        (err, loader, state(&h, "m"))
    });
    assert_eq!(err.errno(), Some(Errno::EDEADLK), "{err}");
    let cycle = err
        .diagnostics
        .iter()
        .find(|d| d.kind == DiagKind::DependencyCycle)
        .expect("the chain is in the error");
    assert!(cycle.chain.len() >= 3, "{cycle}");
    assert!(
        cycle
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("put the reference"),
        "{cycle}"
    );
    assert_eq!(loader.unwrap_err().errno(), Some(Errno::ENODEV));
    assert_eq!(after, None);
}

/// Under a Linux policy the kernel frees the failed module under the pin: nothing waits,
/// the second modprobe gets the load's error (here a fresh load that fails again).
#[test]
fn under_linux_the_failed_load_does_not_wait_for_the_pin() {
    let (mine, loader) = within(30, || {
        let h = Host::new("linux-6.12".parse().unwrap());
        let gate = Arc::new(Barrier::new(2));
        h.add_module(failing(gate.clone())).unwrap();
        let h2 = h.clone();
        let loader = std::thread::spawn(move || h2.modprobe("m"));
        wait_for_state(&h, "m", Some(ModState::Coming));
        let pin = h.try_module_get("m").unwrap();
        let g = gate.clone();
        let opener = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            g.wait();
        });
        let mine = h.modprobe("m");
        opener.join().unwrap();
        drop(pin);
        (mine, loader.join().unwrap())
    });
    assert_eq!(mine.unwrap_err().errno(), Some(Errno::ENODEV));
    assert_eq!(loader.unwrap_err().errno(), Some(Errno::ENODEV));
}
