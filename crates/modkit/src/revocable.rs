//! `Revocable<T>`: access that succeeds until revoked; `revoke()` refuses new access at
//! once and waits for the accesses in flight (the Rust-for-Linux pattern for device
//! resources that must not outlive an unbind).

use std::ops::Deref;
use std::sync::Arc;

#[cfg(not(feature = "loom"))]
use crate::sync::{Condvar, Mutex};
#[cfg(feature = "loom")]
use loom::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

struct Inner<T> {
    /// `None` once revoked.
    state: Mutex<(Option<Arc<T>>, usize)>,
    cv: Condvar,
}

/// A value whose access can be revoked. Clones share the same value.
pub struct Revocable<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Revocable<T> {
    fn clone(&self) -> Self {
        Revocable {
            inner: self.inner.clone(),
        }
    }
}

/// An access in flight; revoke() waits for it to drop.
pub struct RevocableGuard<T> {
    value: Arc<T>,
    inner: Arc<Inner<T>>,
}

impl<T> Deref for RevocableGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> Drop for RevocableGuard<T> {
    fn drop(&mut self) {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        st.1 -= 1;
        if st.1 == 0 {
            self.inner.cv.notify_all();
        }
    }
}

impl<T> Revocable<T> {
    /// A value that can be accessed until revoked.
    pub fn new(value: T) -> Self {
        Revocable {
            inner: Arc::new(Inner {
                state: Mutex::new((Some(Arc::new(value)), 0)),
                cv: Condvar::new(),
            }),
        }
    }

    /// Access, or `None` once revoked.
    pub fn try_access(&self) -> Option<RevocableGuard<T>> {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let value = st.0.clone()?;
        st.1 += 1;
        Some(RevocableGuard {
            value,
            inner: self.inner.clone(),
        })
    }

    /// True once revoked.
    pub fn is_revoked(&self) -> bool {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .is_none()
    }

    /// Refuses new access at once, then waits for every access in flight to end. Returns
    /// false if it was already revoked.
    pub fn revoke(&self) -> bool {
        self.revoke_within(None).0
    }

    /// As [`Revocable::revoke`], waiting at most `timeout`; the second value is false
    /// when accesses were still in flight at the deadline (new ones stay refused).
    pub fn revoke_timeout(&self, timeout: Duration) -> (bool, bool) {
        self.revoke_within(Some(Instant::now() + timeout))
    }

    fn revoke_within(&self, deadline: Option<Instant>) -> (bool, bool) {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let first = st.0.take().is_some();
        while st.1 > 0 {
            match deadline {
                None => st = self.inner.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return (first, false);
                    }
                    st = self
                        .inner
                        .cv
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        (first, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_refuses_new_access_and_waits_for_old() {
        let r = Revocable::new(5);
        let g = r.try_access().unwrap();
        assert_eq!(*g, 5);
        let r2 = r.clone();
        let t = std::thread::spawn(move || r2.revoke());
        while !r.is_revoked() {
            std::thread::yield_now();
        }
        assert!(r.try_access().is_none(), "new access refused at once");
        assert!(!t.is_finished() || *g == 5);
        drop(g);
        assert!(t.join().unwrap());
        assert!(!r.revoke(), "second revoke reports it was already revoked");
    }

    #[test]
    fn revoke_timeout_reports_accesses_in_flight() {
        let r = Revocable::new("dev");
        let _g = r.try_access().unwrap();
        assert_eq!(r.revoke_timeout(Duration::from_millis(10)), (true, false));
    }
}
