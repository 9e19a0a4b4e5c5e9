//! Exhaustive model check (loom) of the revoke protocol: every interleaving of an access
//! and a revoke. Run with `cargo test -p modkit --release --features loom --test loom_revocable`.

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use modkit::Revocable;

#[test]
fn revoke_waits_for_the_access_in_flight_and_refuses_new_ones() {
    loom::model(|| {
        let r = Revocable::new(5u32);
        let active = Arc::new(AtomicUsize::new(0));
        let (r2, a2) = (r.clone(), active.clone());
        let reader = loom::thread::spawn(move || {
            if let Some(g) = r2.try_access() {
                a2.fetch_add(1, Ordering::SeqCst);
                assert_eq!(*g, 5);
                a2.fetch_sub(1, Ordering::SeqCst);
            }
        });
        assert!(r.revoke(), "the first revoke reports it");
        assert_eq!(
            active.load(Ordering::SeqCst),
            0,
            "revoke returned with an access in flight"
        );
        assert!(r.try_access().is_none(), "access after revoke");
        reader.join().unwrap();
        assert!(!r.revoke());
    });
}

#[test]
fn two_revokers_and_a_reader() {
    loom::model(|| {
        let r = Revocable::new(1u8);
        let (r1, r2) = (r.clone(), r.clone());
        let t1 = loom::thread::spawn(move || r1.revoke());
        let t2 = loom::thread::spawn(move || r2.revoke());
        let g = r.try_access();
        drop(g);
        let (a, b) = (t1.join().unwrap(), t2.join().unwrap());
        assert!(a ^ b, "exactly one revoke is the first");
        assert!(r.try_access().is_none());
    });
}
