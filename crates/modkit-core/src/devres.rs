//! Managed device resources (`drivers/base/devres.c`, `rust/kernel/devres.rs`): what a
//! probe allocates with `devm_*` is released by `devres_release_all()` after the driver's
//! remove (`__device_release_driver()`), or at once when the probe fails
//! (`really_probe()`'s `probe_failed` path), in reverse order of allocation.
//!
//! Each resource has an id; the table counts its releases, so that a property test can
//! check that every resource is released exactly once, and never while its device is
//! still bound (before remove ran).

use std::collections::BTreeMap;

/// A device's index in the [`crate::device::DeviceModel`].
pub type DevId = usize;

/// One managed resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The device it belongs to.
    pub device: DevId,
    /// Its name; a `kind:name` resource is a registration undone at release
    /// (`devm_misc_register`-style).
    pub name: String,
}

/// Every resource allocated in a run, with its release count.
#[derive(Debug, Clone, Default)]
pub struct DevresTable {
    next: u64,
    /// Resources not yet released, by id.
    pub live: BTreeMap<u64, Resource>,
    /// Times each resource was released (exactly 1 for every released one).
    pub releases: BTreeMap<u64, u32>,
}

impl DevresTable {
    /// `devres_add()`: a new resource of `device`; returns its id.
    pub fn add(&mut self, device: DevId, name: &str) -> u64 {
        self.next += 1;
        self.live.insert(
            self.next,
            Resource {
                device,
                name: name.to_string(),
            },
        );
        self.next
    }

    /// `devres_release_all()`: releases every resource of `device`, newest first, and
    /// returns them in that order.
    pub fn release_all(&mut self, device: DevId) -> Vec<(u64, Resource)> {
        let ids: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, r)| r.device == device)
            .map(|(&id, _)| id)
            .rev()
            .collect();
        ids.into_iter()
            .map(|id| {
                *self.releases.entry(id).or_insert(0) += 1;
                (id, self.live.remove(&id).expect("listed"))
            })
            .collect()
    }

    /// Resources of `device` not yet released.
    pub fn held_by(&self, device: DevId) -> usize {
        self.live.values().filter(|r| r.device == device).count()
    }

    /// The ids of the resources `device` holds, oldest first.
    pub fn ids_of(&self, device: DevId) -> Vec<u64> {
        self.live
            .iter()
            .filter(|(_, r)| r.device == device)
            .map(|(&id, _)| id)
            .collect()
    }

    /// The live resource named `name` (the oldest if several): its id and its device.
    pub fn find(&self, name: &str) -> Option<(u64, DevId)> {
        self.live
            .iter()
            .find(|(_, r)| r.name == name)
            .map(|(&id, r)| (id, r.device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_and_find() {
        let mut t = DevresTable::default();
        let a = t.add(1, "irq");
        let b = t.add(2, "clk");
        let c = t.add(1, "mem");
        assert_eq!(t.ids_of(1), vec![a, c]);
        assert_eq!(t.find("clk"), Some((b, 2)));
        assert_eq!(t.find("gone"), None);
        t.release_all(1);
        assert!(t.ids_of(1).is_empty());
        assert_eq!(t.find("irq"), None);
    }

    #[test]
    fn release_all_is_newest_first_and_once() {
        let mut t = DevresTable::default();
        let a = t.add(1, "irq");
        let b = t.add(1, "misc:x");
        let _c = t.add(2, "clk");
        let r = t.release_all(1);
        assert_eq!(r.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![b, a]);
        assert!(t.release_all(1).is_empty());
        assert_eq!(t.releases.values().copied().collect::<Vec<_>>(), vec![1, 1]);
        assert_eq!(t.held_by(2), 1);
    }
}
