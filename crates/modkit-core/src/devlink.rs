//! fw_devlink (`drivers/base/core.c`): device links inferred from the firmware description
//! (DT phandles such as `clocks`, `*-supply`, `remote-endpoint`; ACPI `_DEP`), which hold a
//! consumer's probe back until its suppliers are bound, and how each era breaks a cycle
//! among them. A scenario gives the firmware links as `suppliers = [...]` on a `[[device]]`;
//! [`FwDevlink`] keeps one [`Link`] per pair and decides, when a device is added, which
//! links become device links, which are relaxed and what the kernel prints, and, when a
//! device is probed, whether a supplier blocks it.
//!
//! Sources (read with the `code` corpus; versions are those of the mainline releases):
//! - `fw_devlink=` (Saravana Kannan, "driver core: Add fw_devlink kernel commandline
//!   option", v5.7), default `permissive` from v5.7 (`fw_devlink_flags =
//!   DL_FLAG_SYNC_STATE_ONLY`, "driver core: Set fw_devlink to "permissive" behavior by
//!   default"): the links only order `sync_state()`, never a probe.
//! - `fw_devlink=on` by default (`fw_devlink_flags = FW_DEVLINK_FLAGS_ON`, i.e.
//!   `DL_FLAG_INFERRED | DL_FLAG_AUTOPROBE_CONSUMER`) from v5.13 (ea718c699055, "Revert
//!   "Revert "driver core: Set fw_devlink=on by default"""; the first attempt, e590474768f1,
//!   was reverted during 5.11). From then `device_links_check_suppliers()`, called by
//!   `really_probe()` before the driver's probe, returns -EPROBE_DEFER while the device's
//!   fwnode has a supplier fwnode link (`dev_dbg` "probe deferral - wait for supplier
//!   %pfwP", from v6.3 `dev_err_probe(dev, -EPROBE_DEFER, "wait for supplier %pfwf\n")`)
//!   or a managed device link to a supplier that is not bound (`dev_dbg` "probe deferral -
//!   supplier %s not ready", later `dev_err_probe(…, "supplier %s not ready\n")`). Neither
//!   is printed at the default log level; from 6.8 the recorded reason appears in the
//!   deferred-probe timeout's "deferred probe pending: …" line.
//! - 5.13–6.2, `fw_devlink_create_devlink()`: the links are made when a device is added
//!   (`fw_devlink_link_device()` from `device_add()`: `__fw_devlink_link_to_consumers()`,
//!   then `__fw_devlink_link_to_suppliers()`); a fwnode link whose supplier has no device
//!   yet stays (-EAGAIN). `device_link_add()` refuses a link whose supplier already depends
//!   on the consumer (`device_is_dependent()`), and then `dev_info(con, "Fixing up cyclic
//!   dependency with %s\n", dev_name(sup_dev))`, `fw_devlink_relax_cycle()` relaxes the
//!   links of the cycle (`fw_devlink_relax_link()`: permissive, sync-state only) and the
//!   link is made permissive. So the second device of a two-device cycle prints the line
//!   and both probe. (Stephen Boyd's patch moving the line to `dev_dbg` was posted in
//!   June 2021 but, as logs of 5.15 and 6.1 kernels still show the line, is taken as not
//!   merged.)
//! - 6.3 (Saravana Kannan, "driver core: fw_devlink: Make cycle detection more robust",
//!   with `__fw_devlink_relax_cycles()` and `FWLINK_FLAG_CYCLE`): before making a link,
//!   `fw_devlink_create_devlink()` walks from the supplier's fwnode through fwnode links and
//!   device links; a walk that comes back to the consumer marks every link on it as a cycle
//!   link (relaxed: `fw_devlink_get_flags()` gives `FW_DEVLINK_FLAGS_PERMISSIVE |
//!   DL_FLAG_CYCLE`, and `fwnode_links_check_suppliers()` skips it) and prints
//!   `dev_info(con, "Fixed dependency cycle(s) with %pfwf\n", sup_handle)`. The cycle is
//!   found from the firmware description alone, when the first device of the cycle is
//!   added, so that device prints the line (its supplier need not exist yet) and neither
//!   waits. The check is skipped for a link already marked (its flags are sync-state
//!   only), so the second device prints nothing in a two-device cycle.
//! - modkit: as 6.3 (the cycle is relaxed when the firmware description shows it), with a
//!   `devlink_cycle` diagnostic naming the whole cycle instead of a log line.
//!
//! Chosen where the sources leave it open: a device's fwnode is `/NAME` unless the scenario
//! gives `fwnode`; parents are not modelled (no `fwnode_get_next_parent_dev()` proxies); a
//! link to a removed device stays as it was; `fw_devlink_drivers_done()` (5.19+: after the
//! deferred-probe timeout, links to suppliers no driver can match are relaxed),
//! `fw_devlink.strict=`, `fw_devlink=` given on the command line, the 6.3 walk's shortcut
//! for a bound supplier and runtime-PM links are not modelled.

use std::collections::BTreeSet;

use crate::device::{DevId, DevState, DeviceModel};
use crate::diag::DiagKind;
use crate::kernel::Kernel;
use crate::policy::{Policy, Version};

/// What fw_devlink does in an era.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// Before 5.13: off or permissive; the links never hold a probe back.
    Permissive,
    /// 5.13–6.2: enforced; a cycle is found by `device_link_add()` when its second device
    /// is added ("Fixing up cyclic dependency with …").
    FixingUp,
    /// 6.3+: enforced; a cycle is found in the firmware description when its first device
    /// is added ("Fixed dependency cycle(s) with …").
    Fixed,
    /// modkit: as 6.3, reported by a `devlink_cycle` diagnostic.
    Modkit,
}

/// The era of a policy.
pub fn era(policy: Policy) -> Era {
    match policy.version() {
        None => Era::Modkit,
        Some(v) if v < Version::new(5, 13) => Era::Permissive,
        Some(v) if v < Version::new(6, 3) => Era::FixingUp,
        Some(_) => Era::Fixed,
    }
}

/// One firmware link: `consumer` depends on `supplier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The consumer device.
    pub consumer: DevId,
    /// The supplier device.
    pub supplier: DevId,
    /// Made into a device link (until then a fwnode link).
    pub device_link: bool,
    /// Relaxed (a cycle link): it no longer holds the consumer's probe back.
    pub relaxed: bool,
}

/// Why a probe must wait for a supplier: the `need` key and the recorded reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// `device:NAME` of the supplier.
    pub key: String,
    /// What `dev_err_probe()` records, if this era records it.
    pub reason: Option<String>,
}

/// The firmware links of a scenario and their state.
#[derive(Debug, Clone, Default)]
pub struct FwDevlink {
    /// Every link, in declaration order.
    pub links: Vec<Link>,
    /// Explicit fwnode names (`%pfwf`), by device.
    fwnodes: Vec<(DevId, String)>,
    /// Cycles already reported under modkit (as sorted device sets).
    reported: BTreeSet<Vec<DevId>>,
}

impl FwDevlink {
    /// Links `(consumer, supplier)` and explicit fwnode names.
    pub fn new(links: Vec<(DevId, DevId)>, fwnodes: Vec<(DevId, String)>) -> Self {
        FwDevlink {
            links: links
                .into_iter()
                .map(|(consumer, supplier)| Link {
                    consumer,
                    supplier,
                    device_link: false,
                    relaxed: false,
                })
                .collect(),
            fwnodes,
            reported: BTreeSet::new(),
        }
    }

    /// The device's fwnode as `%pfwf` prints it (its full path).
    pub fn fwnode(&self, dm: &DeviceModel, dev: DevId) -> String {
        self.fwnodes
            .iter()
            .find(|(d, _)| *d == dev)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| format!("/{}", dm.devices[dev].name))
    }

    /// `device_add()` → `fw_devlink_link_device()`: links to the new device's consumers,
    /// then to its suppliers, as the era makes them, printing what it prints.
    pub fn device_added(&mut self, k: &mut Kernel, dm: &DeviceModel, dev: DevId) {
        let era = era(k.policy);
        if era == Era::Permissive || self.links.is_empty() {
            return;
        }
        let to_consumers = (0..self.links.len()).filter(|&i| {
            let l = &self.links[i];
            l.supplier == dev && l.consumer != dev && dm.present(l.consumer)
        });
        let to_suppliers = (0..self.links.len()).filter(|&i| self.links[i].consumer == dev);
        let order: Vec<usize> = to_consumers.chain(to_suppliers).collect();
        for i in order {
            if self.links[i].device_link {
                continue;
            }
            self.create(k, dm, i, era);
        }
    }

    /// `fw_devlink_create_devlink()` for link `i`.
    fn create(&mut self, k: &mut Kernel, dm: &DeviceModel, i: usize, era: Era) {
        let Link {
            consumer: con,
            supplier: sup,
            ..
        } = self.links[i];
        match era {
            Era::Permissive => {}
            Era::FixingUp => {
                if !dm.present(sup) {
                    return; // -EAGAIN: the fwnode link stays.
                }
                self.links[i].device_link = true;
                // device_link_add() fails when the supplier already depends on the consumer.
                let mut path = Vec::new();
                if self.depends(sup, con, &mut path) {
                    k.printk(format!(
                        "{}: Fixing up cyclic dependency with {}",
                        dm.prefix(con),
                        dm.devices[sup].name
                    ));
                    // fw_devlink_relax_cycle(), then the permissive device_link_add().
                    for j in path {
                        self.links[j].relaxed = true;
                    }
                    self.links[i].relaxed = true;
                }
            }
            Era::Fixed | Era::Modkit => {
                if !self.links[i].relaxed && self.relax_cycles(con, sup, &mut BTreeSet::new()) {
                    self.links[i].relaxed = true;
                    if era == Era::Fixed {
                        k.printk(format!(
                            "{}: Fixed dependency cycle(s) with {}",
                            dm.prefix(con),
                            self.fwnode(dm, sup)
                        ));
                    } else {
                        self.report(k, dm, con, sup);
                    }
                }
                if dm.present(sup) {
                    self.links[i].device_link = true;
                }
            }
        }
    }

    /// `device_is_dependent()`: whether `from` reaches `to` through enforced device links
    /// (consumer to supplier); `path` gets the links of the first way found.
    fn depends(&self, from: DevId, to: DevId, path: &mut Vec<usize>) -> bool {
        self.walk(from, to, path, &mut BTreeSet::new(), &|l| {
            l.device_link && !l.relaxed
        })
    }

    /// Whether `from` reaches `to` through the links `usable` keeps (consumer to supplier);
    /// `path` gets the links of the first way found.
    fn walk(
        &self,
        from: DevId,
        to: DevId,
        path: &mut Vec<usize>,
        seen: &mut BTreeSet<DevId>,
        usable: &dyn Fn(&Link) -> bool,
    ) -> bool {
        if !seen.insert(from) {
            return false;
        }
        for (j, l) in self.links.iter().enumerate() {
            if l.consumer != from || !usable(l) {
                continue;
            }
            path.push(j);
            if l.supplier == to || self.walk(l.supplier, to, path, seen, usable) {
                return true;
            }
            path.pop();
        }
        false
    }

    /// `__fw_devlink_relax_cycles(con, sup)`: whether the walk from `node` comes back to
    /// `con`; every link on such a walk is relaxed (marked as a cycle link).
    fn relax_cycles(&mut self, con: DevId, node: DevId, visited: &mut BTreeSet<DevId>) -> bool {
        if node == con {
            return true;
        }
        if !visited.insert(node) {
            return false;
        }
        let mut ret = false;
        for j in 0..self.links.len() {
            if self.links[j].consumer != node {
                continue;
            }
            let s = self.links[j].supplier;
            if self.relax_cycles(con, s, visited) {
                self.links[j].relaxed = true;
                ret = true;
            }
        }
        // The kernel clears FWNODE_FLAG_VISITED on the way out.
        visited.remove(&node);
        ret
    }

    /// modkit: the `devlink_cycle` diagnostic, once per cycle.
    fn report(&mut self, k: &mut Kernel, dm: &DeviceModel, con: DevId, sup: DevId) {
        let mut path = Vec::new();
        let mut cycle = vec![con];
        if self.walk(sup, con, &mut path, &mut BTreeSet::new(), &|_| true) {
            cycle.push(sup);
            cycle.extend(path.iter().map(|&j| self.links[j].supplier));
        } else {
            cycle.push(sup);
            cycle.push(con);
        }
        let mut key: Vec<DevId> = cycle.clone();
        key.sort_unstable();
        key.dedup();
        if !self.reported.insert(key) {
            return;
        }
        let names: Vec<String> = cycle.iter().map(|&d| dm.devices[d].name.clone()).collect();
        k.diagnose(
            DiagKind::DevlinkCycle,
            None,
            format!(
                "the firmware links form a cycle ({}): they are relaxed, so neither waits for \
                 the other and their probe order is not enforced",
                names.join(" → ")
            ),
            names
                .windows(2)
                .map(|w| format!("{} consumes {}", w[0], w[1]))
                .collect(),
            Some(
                "fix the firmware description if one of these links is not a real dependency"
                    .into(),
            ),
        );
    }

    /// The suppliers `dev`'s enforced links name (as `device:NAME` keys): once they are
    /// bound, the probe makes these managed device links (unbinding a supplier unbinds
    /// `dev` first).
    pub fn enforced(&self, policy: Policy, dm: &DeviceModel, dev: DevId) -> Vec<String> {
        if era(policy) == Era::Permissive {
            return Vec::new();
        }
        self.links
            .iter()
            .filter(|l| l.consumer == dev && l.supplier != dev && !l.relaxed)
            .map(|l| format!("device:{}", dm.devices[l.supplier].name))
            .collect()
    }

    /// `device_links_check_suppliers()`: the supplier that holds `dev`'s probe back, if
    /// any: a fwnode link first, then a device link whose supplier is not bound.
    pub fn blocker(&self, policy: Policy, dm: &DeviceModel, dev: DevId) -> Option<Blocker> {
        let era = era(policy);
        if era == Era::Permissive {
            return None;
        }
        let waiting = |l: &&Link| {
            l.consumer == dev
                && l.supplier != dev
                && !l.relaxed
                && !matches!(dm.devices[l.supplier].state, DevState::Bound(_))
        };
        let fw = self.links.iter().filter(waiting).find(|l| !l.device_link);
        let link = fw.or_else(|| self.links.iter().filter(waiting).find(|l| l.device_link))?;
        let sup = link.supplier;
        // 6.3+ records the reason through dev_err_probe(); before, dev_dbg() only (the
        // reason is printed from 6.8 on, so the earlier wording is never seen).
        let reason = (era != Era::FixingUp).then(|| {
            if link.device_link {
                format!("supplier {} not ready", dm.devices[sup].name)
            } else {
                format!("wait for supplier {}", self.fwnode(dm, sup))
            }
        });
        Some(Blocker {
            key: format!("device:{}", dm.devices[sup].name),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DriverSpec;
    use crate::spec::{ModuleDb, ModuleSpec};

    fn setup(policy: &str) -> (Kernel, DeviceModel, FwDevlink) {
        let db = ModuleDb::new(vec![ModuleSpec::new("drv")]).unwrap();
        let k = Kernel::new(db, policy.parse().unwrap());
        let mut dm = DeviceModel::new(
            vec![DriverSpec {
                name: "drv".into(),
                bus: "platform".into(),
                module: 0,
                patterns: vec!["of:*".into()],
            }],
            None,
        );
        let a = dm.declare("dev-a", "platform", Some("of:a".into()));
        let b = dm.declare("dev-b", "platform", Some("of:b".into()));
        let fw = FwDevlink::new(vec![(a, b), (b, a)], vec![(b, "/soc/dev-b".into())]);
        (k, dm, fw)
    }

    fn lines(k: &Kernel) -> Vec<String> {
        k.log.iter().map(|l| l.text.clone()).collect()
    }

    fn add(k: &mut Kernel, dm: &mut DeviceModel, fw: &mut FwDevlink, name: &str) -> DevId {
        let d = dm.find_device(name).unwrap();
        dm.add_device(d).unwrap();
        fw.device_added(k, dm, d);
        d
    }

    #[test]
    fn eras() {
        assert_eq!(era("linux-5.10".parse().unwrap()), Era::Permissive);
        assert_eq!(era("linux-5.13".parse().unwrap()), Era::FixingUp);
        assert_eq!(era("linux-6.1".parse().unwrap()), Era::FixingUp);
        assert_eq!(era("linux-6.3".parse().unwrap()), Era::Fixed);
        assert_eq!(era("modkit".parse().unwrap()), Era::Modkit);
    }

    #[test]
    fn permissive_never_blocks() {
        let (mut k, mut dm, mut fw) = setup("linux-5.10");
        let a = add(&mut k, &mut dm, &mut fw, "dev-a");
        assert!(fw.blocker(k.policy, &dm, a).is_none());
        assert!(lines(&k).is_empty());
    }

    #[test]
    fn fixing_up_waits_then_relaxes_at_the_second_device() {
        let (mut k, mut dm, mut fw) = setup("linux-6.1");
        let a = add(&mut k, &mut dm, &mut fw, "dev-a");
        let blk = fw.blocker(k.policy, &dm, a).unwrap();
        assert_eq!(blk.key, "device:dev-b");
        assert_eq!(blk.reason, None);
        let b = add(&mut k, &mut dm, &mut fw, "dev-b");
        assert_eq!(
            lines(&k),
            vec!["platform dev-b: Fixing up cyclic dependency with dev-a".to_string()]
        );
        assert!(fw.blocker(k.policy, &dm, a).is_none());
        assert!(fw.blocker(k.policy, &dm, b).is_none());
    }

    #[test]
    fn fixed_finds_the_cycle_at_the_first_device() {
        let (mut k, mut dm, mut fw) = setup("linux-6.12");
        let a = add(&mut k, &mut dm, &mut fw, "dev-a");
        assert_eq!(
            lines(&k),
            vec!["platform dev-a: Fixed dependency cycle(s) with /soc/dev-b".to_string()]
        );
        assert!(fw.blocker(k.policy, &dm, a).is_none());
        let b = add(&mut k, &mut dm, &mut fw, "dev-b");
        assert_eq!(lines(&k).len(), 1, "the marked links are not checked again");
        assert!(fw.blocker(k.policy, &dm, b).is_none());
    }

    #[test]
    fn an_acyclic_link_holds_the_consumer_until_the_supplier_binds() {
        let (mut k, mut dm, _) = setup("linux-6.12");
        let a = dm.find_device("dev-a").unwrap();
        let b = dm.find_device("dev-b").unwrap();
        let mut fw = FwDevlink::new(vec![(a, b)], vec![]);
        add(&mut k, &mut dm, &mut fw, "dev-a");
        assert_eq!(
            fw.blocker(k.policy, &dm, a).unwrap().reason.as_deref(),
            Some("wait for supplier /dev-b")
        );
        add(&mut k, &mut dm, &mut fw, "dev-b");
        assert_eq!(
            fw.blocker(k.policy, &dm, a).unwrap().reason.as_deref(),
            Some("supplier dev-b not ready")
        );
        assert!(lines(&k).is_empty());
    }

    #[test]
    fn modkit_reports_the_cycle_once() {
        let (mut k, mut dm, mut fw) = setup("modkit");
        let a = add(&mut k, &mut dm, &mut fw, "dev-a");
        add(&mut k, &mut dm, &mut fw, "dev-b");
        assert!(fw.blocker(k.policy, &dm, a).is_none());
        let d: Vec<_> = k
            .diagnostics
            .iter()
            .filter(|d| d.kind == DiagKind::DevlinkCycle)
            .collect();
        assert_eq!(d.len(), 1);
        assert!(
            d[0].message.contains("dev-a → dev-b → dev-a"),
            "{}",
            d[0].message
        );
    }
}
