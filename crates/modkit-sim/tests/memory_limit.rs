//! The process's memory limit (`modkit_sim::set_memory_limit`) ends a run with a clear
//! error instead of letting it grow. Its own test binary: the limit is set once per process.

use std::sync::atomic::{AtomicUsize, Ordering};

use modkit_sim::{Sim, SimError};

static FAKE_HEAP: AtomicUsize = AtomicUsize::new(0);

fn probe() -> usize {
    FAKE_HEAP.load(Ordering::Relaxed)
}

#[test]
fn a_run_over_the_memory_limit_stops_with_the_numbers() {
    assert!(modkit_sim::set_memory_limit(100 << 20, probe));
    assert!(!modkit_sim::set_memory_limit(1, probe), "set once");
    let text = "[[module]]\nname = \"a\"\n[[module.init]]\nstep = \"p\"\nrun = [{ sleep = \"1ms\" }]\n[[event]]\nthreads = 50000\nmodprobe = \"a\"\n";
    let sc = modkit_sim::parse("big.toml", text).unwrap();
    // Under the limit: the run completes.
    FAKE_HEAP.store(10 << 20, Ordering::Relaxed);
    Sim::new(&sc, sc.policy, 0).run().unwrap();
    // Over it: stopped at the first check, with the numbers and the fix.
    FAKE_HEAP.store(300 << 20, Ordering::Relaxed);
    let e = Sim::new(&sc, sc.policy, 0).run().unwrap_err();
    let SimError::MemoryLimit {
        used_mib,
        limit_mib,
        steps,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    assert_eq!((*used_mib, *limit_mib), (300, 100));
    assert_eq!(*steps, modkit_sim::PROGRESS_EVERY);
    let msg = e.to_string();
    assert!(msg.starts_with("big.toml: "), "{msg}");
    assert!(msg.contains("--max-memory"), "{msg}");
}
