//! The library on real threads: typed symbols that pin, CRC refusal, request_module from
//! an init, cycles refused, panics caught, exact unwinding, waiting rmmod.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use modkit::{DiagKind, Errno, Host, HostHandle, Init, Module, Outcome, Rmmod};

fn host(p: &str) -> Host {
    Host::new(p.parse().unwrap())
}

type Greet = fn(&str) -> String;

fn greeter() -> Module {
    Module::new("greeter").export("greet", (|n: &str| format!("hello, {n}")) as Greet)
}

#[test]
fn a_symbol_handle_pins_its_module() {
    let h = host("modkit");
    h.add_module(greeter()).unwrap();
    h.modprobe("greeter").unwrap();
    let g = h.symbol::<Greet>("greet").unwrap();
    assert_eq!(g("rust"), "hello, rust");
    let e = h.rmmod("greeter").unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EWOULDBLOCK));
    assert!(e.diagnostics.iter().any(|d| d.kind == DiagKind::InUse));
    assert_eq!(h.lsmod()[0].pinned_by, vec!["symbol_get(greet)"]);
    drop(g);
    h.rmmod("greeter").unwrap();
    assert!(h.symbol::<Greet>("greet").is_err(), "gone with its module");
}

#[test]
fn a_type_mismatch_is_refused_like_modversions() {
    let h = host("modkit");
    h.add_module(greeter()).unwrap();
    h.add_module(Module::new("user").import::<fn(&str) -> usize>("greet"))
        .unwrap();
    let e = h.modprobe("user").unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EINVAL));
    assert!(h
        .log()
        .iter()
        .any(|l| l == "user: disagrees about version of symbol greet"));
    assert_eq!(
        h.symbol::<u32>("greet").unwrap_err().errno(),
        Some(Errno::EINVAL)
    );
}

#[test]
fn request_module_by_alias_from_an_init() {
    let h = host("modkit");
    h.add_module(greeter().alias("greeting:*")).unwrap();
    h.add_module(Module::new("app").init_step("find_greeter", |ctx| {
        ctx.request_module("greeting:en")
            .map_err(|e| e.errno().unwrap_or(Errno::EINVAL))?;
        Ok(Init::Continue)
    }))
    .unwrap();
    h.modprobe("app").unwrap();
    let states: Vec<_> = h
        .lsmod()
        .iter()
        .map(|m| (m.name.clone(), m.state.map(|s| s.name())))
        .collect();
    assert!(states.contains(&("greeter".into(), Some("live"))));
}

/// Seed 000 on real threads: i915's init requests kvmgt, kvmgt needs i915's symbols.
fn i915_kvmgt(h: &HostHandle) {
    h.add_module(
        Module::new("i915")
            .export("intel_ring_begin", 1u32)
            .init_step("init_gvt", |ctx| {
                let _ = ctx.request_module("kvmgt");
                Ok(Init::Continue)
            }),
    )
    .unwrap();
    h.add_module(Module::new("kvmgt").import::<u32>("intel_ring_begin"))
        .unwrap();
}

#[test]
fn a_cycle_is_refused_at_once_with_the_chain() {
    let h = host("modkit");
    i915_kvmgt(&h);
    let t = Instant::now();
    h.modprobe("i915").unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    let d = h.diagnostics();
    let cycle = d
        .iter()
        .find(|d| d.kind == DiagKind::DependencyCycle)
        .expect("cycle reported");
    assert_eq!(
        cycle.chain,
        ["i915", "request_module(kvmgt)", "kvmgt needs i915"]
    );
    let live: Vec<_> = h
        .lsmod()
        .into_iter()
        .filter(|m| m.state.is_some())
        .map(|m| m.name)
        .collect();
    assert_eq!(live, ["i915"]);
}

#[test]
fn a_panicking_init_is_caught_and_unwound() {
    let h = host("modkit");
    let undone = Arc::new(AtomicUsize::new(0));
    let u = undone.clone();
    h.add_module(
        Module::new("crashy")
            .init_step_with_undo(
                "alloc",
                |_| Ok(Init::Continue),
                move |_| {
                    u.fetch_add(1, Ordering::SeqCst);
                },
            )
            .init_step("probe", |_| panic!("probe exploded")),
    )
    .unwrap();
    let e = h.modprobe("crashy").unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EFAULT));
    assert_eq!(undone.load(Ordering::SeqCst), 1);
    assert!(h
        .log()
        .iter()
        .any(|l| l.contains("init step probe panicked: probe exploded")));
    // The host stays usable.
    h.add_module(greeter()).unwrap();
    h.modprobe("greeter").unwrap();
}

/// A panic payload whose own `Drop` panics (issue 9, item 7).
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the payload's drop panics too");
    }
}

#[test]
fn a_panic_payload_whose_drop_panics_still_fails_the_load_cleanly() {
    let h = host("modkit");
    let undone = Arc::new(AtomicUsize::new(0));
    let u = undone.clone();
    h.add_module(
        Module::new("bomb")
            .init_step_with_undo(
                "alloc",
                |_| Ok(Init::Continue),
                move |_| {
                    u.fetch_add(1, Ordering::SeqCst);
                },
            )
            .init_step("probe", |_| std::panic::panic_any(Bomb)),
    )
    .unwrap();
    let h2 = h.clone();
    let r = std::thread::spawn(move || h2.modprobe("bomb")).join();
    let e = r
        .expect("the panic does not reach the modprobe caller")
        .unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EFAULT));
    assert_eq!(undone.load(Ordering::SeqCst), 1);
    // No module left COMING with a reference: it is gone and loads again.
    let info = h.lsmod().into_iter().find(|m| m.name == "bomb").unwrap();
    assert_eq!((info.state, info.refcount), (None, 0));
    assert_eq!(h.modprobe("bomb").unwrap_err().errno(), Some(Errno::EFAULT));
    h.add_module(greeter()).unwrap();
    h.modprobe("greeter").unwrap();
}

#[test]
fn init_table_unwinds_exactly_in_reverse() {
    let h = host("modkit");
    let trace = Arc::new(Mutex::new(Vec::new()));
    let mut m = Module::new("table");
    for i in 0..4 {
        let (t1, t2) = (trace.clone(), trace.clone());
        m = m.init_step_with_undo(
            &format!("s{i}"),
            move |_| {
                t1.lock().unwrap().push(format!("init {i}"));
                if i == 3 {
                    Err(Errno::ENOMEM)
                } else {
                    Ok(Init::Continue)
                }
            },
            move |_| t2.lock().unwrap().push(format!("undo {i}")),
        );
    }
    h.add_module(m).unwrap();
    assert_eq!(
        h.modprobe("table").unwrap_err().outcome,
        Outcome::Err(Errno::ENOMEM)
    );
    assert_eq!(
        *trace.lock().unwrap(),
        ["init 0", "init 1", "init 2", "init 3", "undo 2", "undo 1", "undo 0"]
    );
}

#[test]
fn early_stop_then_unload_undoes_only_what_ran() {
    let h = host("modkit");
    let trace = Arc::new(Mutex::new(Vec::new()));
    let (a, b, c) = (trace.clone(), trace.clone(), trace.clone());
    h.add_module(
        Module::new("i915")
            .init_step_with_undo(
                "globals",
                |_| Ok(Init::Continue),
                move |_| a.lock().unwrap().push("globals_exit"),
            )
            .init_step("mock_selftests", |_| Ok(Init::Stop))
            .init_step_with_undo(
                "pmu",
                |_| Ok(Init::Continue),
                move |_| b.lock().unwrap().push("pmu_exit"),
            ),
    )
    .unwrap();
    h.modprobe("i915").unwrap();
    h.rmmod("i915").unwrap();
    drop(c);
    assert_eq!(*trace.lock().unwrap(), ["globals_exit"]);
}

#[test]
fn rmmod_waits_for_pins_then_unloads() {
    let h = host("modkit");
    h.add_module(greeter()).unwrap();
    h.modprobe("greeter").unwrap();
    let r = h.try_module_get("greeter").unwrap();
    // Too short a deadline: refused, the module stays, new pins are allowed again.
    let quick = Rmmod {
        wait: true,
        deadline: Some(Duration::from_millis(20)),
        force: false,
    };
    assert_eq!(
        h.rmmod_with("greeter", quick).unwrap_err().errno(),
        Some(Errno::EWOULDBLOCK)
    );
    let r2 = h.try_module_get("greeter").unwrap();
    drop(r2);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        drop(r);
    });
    let patient = Rmmod {
        wait: true,
        deadline: Some(Duration::from_secs(10)),
        force: false,
    };
    h.rmmod_with("greeter", patient).unwrap();
    t.join().unwrap();
    assert!(h.lsmod()[0].state.is_none());
}

#[test]
fn linux_policy_rmmod_never_waits() {
    let h = host("linux-6.6");
    h.add_module(greeter()).unwrap();
    h.modprobe("greeter").unwrap();
    let _r = h.try_module_get("greeter").unwrap();
    let opts = Rmmod {
        wait: true,
        deadline: Some(Duration::from_secs(10)),
        force: false,
    };
    let t = Instant::now();
    assert_eq!(
        h.rmmod_with("greeter", opts).unwrap_err().errno(),
        Some(Errno::EWOULDBLOCK)
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn gpl_only_and_namespaces() {
    let h = host("modkit");
    h.add_module(
        Module::new("core")
            .export_gpl("g", 1u8)
            .export_ns("n", "CORE", 2u8),
    )
    .unwrap();
    h.add_module(Module::new("blob").license("Proprietary").import::<u8>("g"))
        .unwrap();
    h.add_module(Module::new("user").import::<u8>("n")).unwrap();
    h.add_module(
        Module::new("good")
            .import::<u8>("n")
            .import_namespace("CORE"),
    )
    .unwrap();
    assert_eq!(h.modprobe("blob").unwrap_err().errno(), Some(Errno::ENOENT));
    assert_eq!(h.modprobe("user").unwrap_err().errno(), Some(Errno::EINVAL));
    h.modprobe("good").unwrap();
}

#[test]
fn bad_modules_are_refused_and_leave_the_host_as_it_was() {
    let h = host("modkit");
    h.add_module(greeter()).unwrap();
    let e = h.add_module(Module::new("greeter")).unwrap_err();
    assert!(e.to_string().contains("defined twice"), "{e}");
    let e = h
        .add_module(Module::new("x").export("a", 1u8).export("a", 2u8))
        .unwrap_err();
    assert!(e.to_string().contains("exports `a` twice"), "{e}");
    assert_eq!(h.lsmod().len(), 1);
    assert_eq!(
        h.modprobe("nothing").unwrap_err().errno(),
        Some(Errno::ENOENT)
    );
}
