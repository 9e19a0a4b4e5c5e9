//! The host's end: [`Host::shutdown`] unloads every module and drops all module code and
//! exported values, and [`WeakHost`] is a handle that does not keep the host alive.
//!
//! Module code is stored in the host; an init closure that captures a [`Host`] clone
//! therefore keeps the host alive through the host itself (an `Arc` cycle): dropping every
//! other handle does not free it, nor the values its modules export. Three ways out:
//! reach the host through [`crate::InitCtx::host`] instead of capturing it; capture a
//! [`WeakHost`] ([`Host::downgrade`]); or call [`Host::shutdown`] when done, which breaks the
//! cycle by dropping the code.

use std::sync::{Arc, Weak};

use modkit_core::{Errno, ModState, Outcome};

use crate::error::Error;
use crate::host::{Host, Shared};

/// A handle to a [`Host`] that does not keep it alive: capture it in module code instead of
/// a `Host` clone. [`WeakHost::upgrade`] gives the host back while any `Host` handle lives.
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
    /// The host, unless every `Host` handle has been dropped.
    pub fn upgrade(&self) -> Option<Host> {
        self.shared.upgrade().map(|shared| Host { shared })
    }
}

impl Host {
    /// A handle that does not keep the host alive.
    pub fn downgrade(&self) -> WeakHost {
        WeakHost {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Unloads every module (users before what they use) and then drops all module code
    /// and exported values, breaking the cycle an init closure that captured a `Host`
    /// clone makes: once the other handles are gone, the host is freed. The host refuses
    /// loads afterwards (EINVAL, "the host is shut down").
    ///
    /// Fails with EBUSY, changing nothing more, while a module cannot be unloaded (pinned,
    /// loading, or going away): drop the references and call it again.
    pub fn shutdown(&self) -> Result<(), Error> {
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
                break;
            }
            let mut progress = false;
            for name in &removable {
                progress |= self.rmmod(name).is_ok();
            }
            if !progress {
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
        // Take the code and the values out under the lock, drop them outside it (their
        // drops may drop `Host` clones, or run arbitrary code).
        let (code, values) = {
            let mut st = self.lock();
            st.shut_down = true;
            (std::mem::take(&mut st.code), std::mem::take(&mut st.values))
        };
        drop(code);
        drop(values);
        Ok(())
    }

    /// EINVAL once [`Host::shutdown`] has run.
    pub(crate) fn refuse_if_shut_down(&self, op: &str) -> Result<(), Error> {
        if self.lock().shut_down {
            return Err(Error::new(
                format!("{op}: the host is shut down"),
                Outcome::Err(Errno::EINVAL),
            ));
        }
        Ok(())
    }
}
