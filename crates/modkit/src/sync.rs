//! The synchronisation primitives the host uses: std's, or shuttle's when the `shuttle`
//! feature is on, so that the model-checking tests (tests/model.rs) explore the real
//! host's interleavings.

#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::{Condvar, Mutex, MutexGuard};
#[cfg(feature = "shuttle")]
pub(crate) use shuttle::thread;
#[cfg(feature = "shuttle")]
pub(crate) use shuttle::thread_local;
#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(feature = "shuttle"))]
pub(crate) use std::thread;
#[cfg(not(feature = "shuttle"))]
pub(crate) use std::thread_local;
