//! The host's end. A [`Host`] owns its host: dropping it (or calling
//! [`HostHandle::shutdown`]) unloads every module, users before what they use, with their
//! undos, then drops all module code and exported values and closes the plugins'
//! libraries. [`HostHandle`]s (what `host.clone()` gives) share the host but do not own
//! it: once the owner is gone they are refused (EINVAL, "the host is shut down").
//!
//! This is what keeps a program from leaking its host: module code is stored in the host,
//! so an init closure that captured a handle would keep the host alive through the host
//! itself (an `Arc` cycle) if handles owned it. Since only the [`Host`] does, dropping it
//! drops the code and with it every captured handle. [`WeakHost`] is a handle that does
//! not even keep the host's memory alive.

use std::ops::Deref;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use modkit_core::{Errno, ModState, Outcome};

use crate::error::Error;
use crate::host::{HostHandle, Shared};

/// A handle to a [`HostHandle`] that does not keep it alive: capture it in module code instead of
/// a `HostHandle` clone. [`WeakHost::upgrade`] gives the host back while any `HostHandle` handle lives.
#[derive(Clone)]
pub struct WeakHost {
    shared: Weak<Shared>,
}

impl std::fmt::Debug for WeakHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakHost")
            .field("alive", &(self.shared.strong_count() > 0))
            .finish()
    }
}

impl WeakHost {
    /// The host, unless every `HostHandle` handle has been dropped.
    pub fn upgrade(&self) -> Option<HostHandle> {
        self.shared.upgrade().map(|shared| HostHandle { shared })
    }
}

impl HostHandle {
    /// A handle that does not keep the host alive.
    pub fn downgrade(&self) -> WeakHost {
        WeakHost {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Unloads every module (users before what they use) and then drops all module code
    /// and exported values, breaking the cycle an init closure that captured a `HostHandle`
    /// clone makes: once the other handles are gone, the host is freed. The host refuses
    /// loads afterwards (EINVAL, "the host is shut down").
    ///
    /// Fails with EBUSY, changing nothing more, while a module cannot be unloaded (pinned,
    /// loading, or going away): drop the references and call it again.
    pub fn shutdown(&self) -> Result<(), Error> {
        self.shutdown_with(crate::api::Rmmod::default())
    }

    /// [`HostHandle::shutdown`] with rmmod options for every module (`wait` and `deadline` let a
    /// module that is still pinned be waited for). After the code and values are dropped,
    /// the plugins' libraries are closed.
    pub fn shutdown_with(&self, opts: crate::api::Rmmod) -> Result<(), Error> {
        let until = opts.deadline.and_then(|d| Instant::now().checked_add(d));
        self.unload_all(opts, until)?;
        // The code and the values go, then the plugins' libraries are closed.
        self.discard_code();
        Ok(())
    }

    /// EINVAL once [`HostHandle::shutdown`] has run.
    pub(crate) fn refuse_if_shut_down(&self, op: &str) -> Result<(), Error> {
        if self.lock().shut_down {
            return Err(shut_down_error(op));
        }
        Ok(())
    }

    /// EINVAL once the host is closing (its [`Host`] was dropped) or shut down: loads are
    /// refused while the modules are being unloaded.
    pub(crate) fn refuse_if_closing(&self, op: &str) -> Result<(), Error> {
        let st = self.lock();
        if st.shut_down || st.closing {
            return Err(shut_down_error(op));
        }
        Ok(())
    }

    /// Whether the host is closing or shut down.
    pub fn is_shut_down(&self) -> bool {
        let st = self.lock();
        st.shut_down || st.closing
    }

    /// Drops all module code and exported values (module states stay as they are), marks
    /// the host shut down and closes the plugins' libraries that nothing runs any more.
    fn discard_code(&self) {
        self.devices_close();
        // Taken out under the lock, dropped outside it: their drops may drop handles or run
        // arbitrary code.
        let (code, values) = {
            let mut st = self.lock();
            st.shut_down = true;
            st.closing = true;
            (std::mem::take(&mut st.code), std::mem::take(&mut st.values))
        };
        drop(code);
        drop(values);
        self.plugins_reap();
    }

    /// What dropping the owning [`Host`] does: refuse new loads, unload every module (a
    /// module still pinned, loading or going away is waited for until `wait` has passed),
    /// then drop the code and the values whatever is left, with a warning naming it.
    fn close(&self, wait: Duration) {
        let first = {
            let mut st = self.lock();
            let first = !st.closing && !st.shut_down;
            st.closing = true;
            first
        };
        if !first {
            return;
        }
        // Dropped from inside a module body: waiting for that module would wait for this
        // thread.
        let wait = if crate::host::body_task().is_some() {
            Duration::ZERO
        } else {
            wait
        };
        let opts = crate::api::Rmmod {
            wait: !wait.is_zero(),
            deadline: Some(wait),
            force: false,
        };
        match self.unload_all(opts, Instant::now().checked_add(wait)) {
            Ok(()) => {
                tracing::debug!(target: "modkit::host", "host dropped: every module unloaded")
            }
            Err(e) => tracing::warn!(
                target: "modkit::host",
                "host dropped with modules it could not unload within {wait:?}: {e}; their code and values are dropped, their state stays"
            ),
        }
        self.discard_code();
    }

    /// Unloads every loaded module, users first; a round without progress is retried until
    /// `until` (`None`: no limit) when `opts.wait` is set (a load or an unload in flight
    /// ends), else EBUSY.
    fn unload_all(&self, opts: crate::api::Rmmod, until: Option<Instant>) -> Result<(), Error> {
        let mut final_round = false;
        loop {
            let (loaded, removable) = {
                let st = self.lock();
                let n = st.k.db.len();
                let loaded: Vec<usize> = (0..n)
                    .filter(|&i| st.k.instances[i].is_some() && !st.k.db.spec(i).builtin)
                    .collect();
                let removable: Vec<String> = loaded
                    .iter()
                    .filter(|&&i| {
                        st.k.state(i) == Some(ModState::Live) && st.k.holders(i).is_empty()
                    })
                    .map(|&i| st.k.name(i).to_string())
                    .collect();
                (loaded, removable)
            };
            if loaded.is_empty() {
                return Ok(());
            }
            // First without waiting: whatever can go goes, users first.
            let now_opts = crate::api::Rmmod {
                wait: false,
                deadline: None,
                force: opts.force,
            };
            let mut progress = false;
            for name in &removable {
                progress |= self.rmmod_with(name, now_opts).is_ok();
            }
            if progress {
                continue;
            }
            let remaining = until.map(|u| u.saturating_duration_since(Instant::now()));
            if opts.wait && !final_round {
                if remaining == Some(Duration::ZERO) {
                    // One more round without waiting: a load or unload that ended just now.
                    final_round = true;
                    continue;
                }
                // Nothing moved: wait a little for a pinned module (a waiting rmmod), or
                // for a load or unload in flight to end, then look again.
                let step = remaining
                    .unwrap_or(Duration::MAX)
                    .min(Duration::from_millis(100));
                if let Some(name) = removable.first() {
                    let waited = crate::api::Rmmod {
                        wait: true,
                        deadline: Some(step),
                        force: opts.force,
                    };
                    let _ = self.rmmod_with(name, waited);
                } else {
                    let st = self.lock();
                    let _ = self
                        .shared
                        .cv
                        .wait_timeout(st, step.min(Duration::from_millis(10)));
                }
                continue;
            }
            let st = self.lock();
            let left: Vec<String> = loaded
                .iter()
                .map(|&i| {
                    let pins = st.k.pins_of(i);
                    let state = st.k.state(i).map(|s| s.name()).unwrap_or("absent");
                    if pins.is_empty() {
                        format!("{} ({state})", st.k.name(i))
                    } else {
                        format!("{} ({state}, pinned by {})", st.k.name(i), pins.join(", "))
                    }
                })
                .collect();
            return Err(Error::new(
                format!("shutdown: cannot unload {}", left.join("; ")),
                Outcome::Err(Errno::EBUSY),
            ));
        }
    }
}

fn shut_down_error(op: &str) -> Error {
    Error::new(
        format!("{op}: the host is shut down"),
        Outcome::Err(Errno::EINVAL),
    )
}

/// How long a dropped [`Host`] waits for modules that are pinned, loading or going away
/// before it drops their code anyway ([`Host::set_drop_wait`]).
pub const DEFAULT_DROP_WAIT: Duration = Duration::from_secs(5);

/// The owner of a module host: the registry and the loader, shared by every thread of the
/// program through [`HostHandle`]s (`host.clone()`, [`Host::handle`]); every operation of
/// a handle is available on the `Host` itself.
///
/// Dropping the `Host` closes the host: new loads are refused at once, every module is
/// unloaded in reverse dependency order with its undos (a module still pinned, loading or
/// going away is waited for up to [`Host::set_drop_wait`], 5 s by default, then left as it
/// is with a `tracing` warning naming it), and all module code and exported values are
/// dropped, then the plugins' libraries closed. Handles still held (by other threads, or
/// captured by module code) are refused from then on; the memory goes with the last one.
///
/// ```
/// use modkit::{Host, Init, Module};
/// use std::sync::{atomic::{AtomicBool, Ordering}, Arc};
///
/// let host = Host::new("modkit".parse().unwrap());
/// let undone = Arc::new(AtomicBool::new(false));
/// let (u, h) = (undone.clone(), host.clone());         // a handle captured by module code
/// host.add_module(Module::new("m").init_step_with_undo(
///     "s",
///     move |_| { let _ = h.lsmod(); Ok(Init::Continue) },
///     move |_| u.store(true, Ordering::SeqCst),
/// )).unwrap();
/// host.modprobe("m").unwrap();
/// let weak = host.downgrade();
/// drop(host);                                          // unloads m, drops its code
/// assert!(undone.load(Ordering::SeqCst));
/// assert!(weak.upgrade().is_none());                   // nothing leaked
/// ```
pub struct Host {
    handle: HostHandle,
    drop_wait: Duration,
}

impl Host {
    /// An empty host with the real clock, under `policy` (`modkit`, or `linux-X.Y` to
    /// reproduce a kernel's behaviour on real threads).
    pub fn new(policy: modkit_core::Policy) -> Host {
        let db = modkit_core::ModuleDb::new(Vec::new()).expect("an empty set of modules is valid");
        Host {
            handle: HostHandle::from_kernel(
                modkit_core::Kernel::new(db, policy),
                crate::host::Clock::Real,
            ),
            drop_wait: DEFAULT_DROP_WAIT,
        }
    }

    /// A handle to this host (the same as `host.clone()`): it does not own the host.
    pub fn handle(&self) -> HostHandle {
        self.handle.clone()
    }

    /// How long dropping this `Host` waits for modules that are pinned, loading or going
    /// away (default [`DEFAULT_DROP_WAIT`]); zero: do not wait.
    pub fn set_drop_wait(&mut self, wait: Duration) {
        self.drop_wait = wait;
    }

    /// Makes `modprobe` (and `request_module` from module code) look for plugins in `dir`:
    /// a name or alias that no known module answers is looked up in the `.modinfo`
    /// sections of `dir/*.so`, and the plugin is registered with its dependencies
    /// (`depends=`), then loaded as any module.
    pub fn with_plugin_dir(self, dir: impl Into<std::path::PathBuf>) -> Host {
        self.handle.set_plugin_dir(dir.into());
        self
    }

    /// Opens plugin libraries with `loader` instead of the system's dynamic loader (for
    /// model tests, which drive the real load and unload logic with a fake library).
    /// Plugins registered before keep the loader that opened them.
    pub fn with_plugin_loader(
        self,
        loader: std::sync::Arc<dyn crate::plugin::dl::DynLoader>,
    ) -> Host {
        self.handle.set_plugin_loader(loader);
        self
    }
}

impl Deref for Host {
    type Target = HostHandle;
    fn deref(&self) -> &HostHandle {
        &self.handle
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("handle", &self.handle)
            .field("drop_wait", &self.drop_wait)
            .finish()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.handle.close(self.drop_wait);
    }
}
