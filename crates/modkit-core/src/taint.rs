//! Taints and the loader's boot settings: what a module's origin (out of tree, staging,
//! unsigned, its licence) does to the kernel's taint mask and log, the per-module taint
//! flags `/proc/modules` shows, `module.sig_enforce`, `module_blacklist=`, forced loads
//! and unloads, and taint inheritance from proprietary modules.
//!
//! Sources (kernel/module.c before 5.19, kernel/module/main.c and signing.c after,
//! kernel/panic.c `add_taint()`):
//!
//! - `check_modinfo()`: "%s: loading out-of-tree module taints kernel." when the module has
//!   no `intree` modinfo, printed only while `TAINT_OOT_MODULE` is not yet set
//!   (`test_taint` guard: once per boot); "%s: module is from the staging directory, the
//!   quality is unknown, you have been warned." for every load of a `staging` module (no
//!   guard); then `set_license()`: "%s: module license '%s' taints kernel." only while
//!   `TAINT_PROPRIETARY_MODULE` is not set, with `LOCKDEP_NOW_UNRELIABLE`. Same text and
//!   order in every release from 4.4 to 6.19 (checked against the strings of the Debian
//!   6.1.176 and 6.12.117 images). `check_modinfo()` runs before `add_unformed_module()`,
//!   so a load refused as a duplicate still prints (and taints) first.
//! - `load_module()` after `add_unformed_module()`: "%s: module verification failed:
//!   signature and/or required key missing - tainting kernel", `pr_notice_once` (one
//!   call site: once per boot, whichever module comes first), `LOCKDEP_STILL_OK`.
//! - `add_taint()`: with `LOCKDEP_NOW_UNRELIABLE` and lock debugging still on,
//!   "Disabling lock debugging due to kernel taint" (`__debug_locks_off()` is an xchg: once
//!   per boot). Proprietary licence, forced load and forced unload pass NOW_UNRELIABLE.
//! - `module_sig_check()` runs first in `load_module()`. With `sig_enforce` an unsigned
//!   module fails: before 5.4 with `-ENOKEY` and no message; from 5.4 (lockdown series,
//!   "Enforce module signatures if the kernel is locked down") with `-EKEYREJECTED` and
//!   `pr_notice("Loading of unsigned module is rejected")` (the 6.1 and 6.12 images print
//!   "Loading of %s is rejected" with reason "unsigned module"; patches of Sep–Oct 2020
//!   put the module's name in front for a while: not modelled).
//! - `blacklisted()`: `module_blacklist=` on the command line (be7de5f91fdc, 4.6; Ubuntu's
//!   4.4 lacks it, 4.8 has it) refuses the load with `-EPERM` after the signature check and
//!   before `check_modinfo()`; from 5.10 (14721add58ef "module: Add more error message for
//!   failed kernel module loading") it prints "Module %s is blacklisted".
//! - `check_modstruct_version()` (before `check_modinfo()`): under CONFIG_MODVERSIONS a
//!   module without `__versions` goes through `try_to_force_load(mod, "module_layout")`:
//!   with CONFIG_MODULE_FORCE_LOAD "%s: %s: kernel tainted." (only while `TAINT_FORCED_MODULE`
//!   is not set) and the F taint with NOW_UNRELIABLE; without it the load fails with
//!   `-ENOEXEC` silently.
//! - `delete_module()`: `try_force_unload()` taints `TAINT_FORCED_RMMOD` (NOW_UNRELIABLE)
//!   when O_TRUNC forces past a missing exit or a non-zero refcount, only with
//!   CONFIG_MODULE_FORCE_UNLOAD; without it those unloads fail (EBUSY, EWOULDBLOCK).
//! - `inherit_taint()` (262e6ae7081d "modules: inherit TAINT_PROPRIETARY_MODULE", 5.13):
//!   resolving a symbol owned by a module with the P taint: a module that uses GPL-only
//!   symbols gets "%s: module using GPL-only symbols uses symbols %s from proprietary module
//!   %s." and the symbol is not found; any other module inherits P ("%s: module uses symbols
//!   %s from proprietary module %s, inheriting taint.", once per module).

use crate::kernel::{Kernel, ModId};
use crate::policy::Version;

/// A taint flag (`include/linux/panic.h`, `TAINT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Taint {
    /// `P`: a module whose licence is not GPL-compatible.
    Proprietary,
    /// `F`: a module loaded by force (no versions, bad vermagic).
    ForcedModule,
    /// `R`: a module unloaded by force (kernel-wide only).
    ForcedRmmod,
    /// `C`: a staging module.
    Crap,
    /// `O`: an out-of-tree module.
    OutOfTree,
    /// `E`: an unsigned module on a kernel that checks signatures.
    Unsigned,
}

impl Taint {
    /// Bit number in `tainted_mask`.
    pub fn bit(self) -> u32 {
        match self {
            Taint::Proprietary => 0,
            Taint::ForcedModule => 1,
            Taint::ForcedRmmod => 3,
            Taint::Crap => 10,
            Taint::OutOfTree => 12,
            Taint::Unsigned => 13,
        }
    }

    /// The letter `/proc/modules` and oops reports print.
    pub fn letter(self) -> char {
        match self {
            Taint::Proprietary => 'P',
            Taint::ForcedModule => 'F',
            Taint::ForcedRmmod => 'R',
            Taint::Crap => 'C',
            Taint::OutOfTree => 'O',
            Taint::Unsigned => 'E',
        }
    }

    /// The per-module flags in the order `module_flags_taint()` prints them (bit order).
    pub const MODULE_FLAGS: [Taint; 5] = [
        Taint::Proprietary,
        Taint::ForcedModule,
        Taint::Crap,
        Taint::OutOfTree,
        Taint::Unsigned,
    ];
}

/// What a module file says about where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provenance {
    /// Built outside the kernel tree (no `intree` modinfo).
    pub out_of_tree: bool,
    /// Carries a signature the kernel's keyring accepts.
    pub signed: bool,
    /// From drivers/staging (`staging` modinfo).
    pub staging: bool,
    /// Has a `__versions` section (CRCs of what it imports).
    pub versions: bool,
}

impl Default for Provenance {
    /// An in-tree, signed, non-staging module with versions: a distribution's module.
    fn default() -> Self {
        Provenance {
            out_of_tree: false,
            signed: true,
            staging: false,
            versions: true,
        }
    }
}

/// The loader's build options and boot parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConfig {
    /// `module.sig_enforce=1` (or CONFIG_MODULE_SIG_FORCE): unsigned modules are refused.
    pub sig_enforce: bool,
    /// `module_blacklist=a,b`: these modules are refused (4.6+).
    pub module_blacklist: Vec<String>,
    /// CONFIG_MODULE_FORCE_UNLOAD (Debian: y): `rmmod -f` can force.
    pub force_unload: bool,
    /// CONFIG_MODVERSIONS: modules without `__versions` need a forced load.
    pub modversions: bool,
    /// CONFIG_MODULE_FORCE_LOAD (Debian: y): such a forced load is allowed, with a taint.
    pub force_load: bool,
}

impl Default for LoaderConfig {
    /// Debian's cloud kernels booted without module parameters, except CONFIG_MODVERSIONS,
    /// which the model leaves off unless a scenario asks (scenarios list CRCs where they
    /// matter).
    fn default() -> Self {
        LoaderConfig {
            sig_enforce: false,
            module_blacklist: Vec::new(),
            force_unload: true,
            modversions: false,
            force_load: true,
        }
    }
}

/// The kernel-wide taint state and the per-module taint flags.
#[derive(Debug, Clone, Default)]
pub struct TaintState {
    /// `tainted_mask`.
    pub mask: u32,
    /// `debug_locks` has been turned off.
    pub lock_debugging_off: bool,
    /// The `pr_notice_once` of the signature line has fired.
    pub sig_notice_done: bool,
    /// `mod->taints` of each present module (reset when its load starts).
    pub module: std::collections::BTreeMap<ModId, u32>,
    /// `mod->using_gplonly_symbols` (5.13+).
    pub using_gplonly: std::collections::BTreeSet<ModId>,
}

impl TaintState {
    /// `test_taint()`.
    pub fn test(&self, t: Taint) -> bool {
        self.mask & (1 << t.bit()) != 0
    }

    /// The flags of module `m` as `/proc/modules` prints them inside `( )`, e.g. `"POE"`.
    pub fn flags(&self, m: ModId) -> String {
        let bits = self.module.get(&m).copied().unwrap_or(0);
        Taint::MODULE_FLAGS
            .iter()
            .filter(|t| bits & (1 << t.bit()) != 0)
            .map(|t| t.letter())
            .collect()
    }

    /// Whether module `m` carries `t`.
    pub fn module_has(&self, m: ModId, t: Taint) -> bool {
        self.module.get(&m).copied().unwrap_or(0) & (1 << t.bit()) != 0
    }
}

/// Whether the policy's kernel is at least `major.minor` (modkit: yes, the newest).
fn at_least(k: &Kernel, major: u32, minor: u32) -> bool {
    k.policy
        .version()
        .is_none_or(|v| v >= Version::new(major, minor))
}

/// `add_taint()`: sets the flag, and turns lock debugging off (printing so, once) when
/// the taint makes lockdep unreliable.
pub fn add_taint(k: &mut Kernel, t: Taint, lockdep_now_unreliable: bool) {
    if lockdep_now_unreliable && !k.taint.lock_debugging_off {
        k.taint.lock_debugging_off = true;
        k.printk("Disabling lock debugging due to kernel taint");
    }
    k.taint.mask |= 1 << t.bit();
}

/// `add_taint_module()`: the kernel-wide taint and the module's own flag.
pub fn add_taint_module(k: &mut Kernel, m: ModId, t: Taint, lockdep_now_unreliable: bool) {
    add_taint(k, t, lockdep_now_unreliable);
    *k.taint.module.entry(m).or_insert(0) |= 1 << t.bit();
}

/// The checks `load_module()` makes before the module is listed: signature
/// (`module_sig_check`), `module_blacklist=`, `__versions` (`check_modstruct_version`)
/// and `check_modinfo()` (out of tree, staging, licence), with their log lines and the
/// kernel-wide taints. Returns the module's own taint flags, which become its
/// `mod->taints` once it is listed ([`listed`]); an error ends the load before that.
pub fn pre_list_checks(k: &mut Kernel, m: ModId) -> Result<u32, crate::errno::Errno> {
    use crate::errno::Errno;
    let spec = k.db.spec(m).clone();
    let name = spec.name.clone();
    let p = spec.provenance;
    let mut bits = 0u32;
    if !p.signed && k.config.sig_enforce {
        if at_least(k, 5, 4) {
            k.printk("Loading of unsigned module is rejected");
            return Err(Errno::EKEYREJECTED);
        }
        return Err(Errno::ENOKEY);
    }
    if at_least(k, 4, 6) && k.config.module_blacklist.contains(&name) {
        if at_least(k, 5, 10) {
            k.printk(format!("Module {name} is blacklisted"));
        }
        return Err(Errno::EPERM);
    }
    if k.config.modversions && !p.versions {
        if !k.config.force_load {
            return Err(Errno::ENOEXEC);
        }
        if !k.taint.test(Taint::ForcedModule) {
            k.printk(format!("{name}: module_layout: kernel tainted."));
        }
        add_taint(k, Taint::ForcedModule, true);
        bits |= 1 << Taint::ForcedModule.bit();
    }
    if !at_least(k, 6, 4) {
        modinfo_taints(k, m, &mut bits);
    }
    Ok(bits)
}

/// `check_modinfo()`'s taints (before 6.4) or `module_augment_kernel_taints()`'s (6.4+):
/// out of tree, staging, licence, in that order.
fn modinfo_taints(k: &mut Kernel, m: ModId, bits: &mut u32) {
    let spec = k.db.spec(m).clone();
    let name = spec.name.clone();
    let p = spec.provenance;
    let mut taint = |k: &mut Kernel, t: Taint, unreliable: bool| {
        add_taint(k, t, unreliable);
        *bits |= 1 << t.bit();
    };
    if p.out_of_tree {
        if !k.taint.test(Taint::OutOfTree) {
            k.printk(format!("{name}: loading out-of-tree module taints kernel."));
        }
        taint(k, Taint::OutOfTree, false);
    }
    if p.staging {
        taint(k, Taint::Crap, false);
        k.printk(format!(
            "{name}: module is from the staging directory, the quality is unknown, you have been warned."
        ));
    }
    if !spec.is_gpl_compatible() {
        if !k.taint.test(Taint::Proprietary) {
            k.printk(format!(
                "{name}: module license '{}' taints kernel.",
                spec.license
            ));
        }
        taint(k, Taint::Proprietary, true);
    }
}

/// `add_unformed_module()` succeeded: the module's flags from [`pre_list_checks`] become
/// its own, then the signature line (`pr_notice_once`) and the E taint of an unsigned
/// module.
pub fn listed(k: &mut Kernel, m: ModId, bits: u32) {
    let mut bits = bits;
    // 6.4 (Luis Chamberlain's series moving the taints to module_augment_kernel_taints(),
    // "We are tainting your kernel if your module gets into the modules linked list
    // somehow"): the modinfo taints come after add_unformed_module(), so a duplicate load
    // no longer prints them; prev_taint is taken before them, so a module that sets P
    // also gets "module license taints kernel." (measured: 6.12.117 prints it, 6.1.176
    // does not).
    let late = at_least(k, 6, 4);
    let prev_p = k.taint.test(Taint::Proprietary);
    if late {
        modinfo_taints(k, m, &mut bits);
    }
    k.taint.module.insert(m, bits);
    k.taint.using_gplonly.remove(&m);
    if !k.db.spec(m).provenance.signed {
        if !k.taint.sig_notice_done {
            k.taint.sig_notice_done = true;
            let name = k.name(m).to_string();
            k.printk(format!(
                "{name}: module verification failed: signature and/or required key missing - tainting kernel"
            ));
        }
        add_taint_module(k, m, Taint::Unsigned, false);
    }
    if late && !prev_p && k.taint.test(Taint::Proprietary) {
        let name = k.name(m).to_string();
        k.printk(format!("{name}: module license taints kernel."));
    }
}

/// `resolve_symbol()`'s GPL-only note and `inherit_taint()` (5.13+) for module `m` using
/// `sym` of `owner`, exported GPL-only or not. `false`: the symbol is refused (not found).
pub fn inherit_taint(k: &mut Kernel, m: ModId, owner: ModId, sym: &str, gpl_only: bool) -> bool {
    if !at_least(k, 5, 13) {
        return true;
    }
    if gpl_only {
        k.taint.using_gplonly.insert(m);
    }
    if k.db.spec(owner).builtin || !k.taint.module_has(owner, Taint::Proprietary) {
        return true;
    }
    let (me, them) = (k.name(m).to_string(), k.name(owner).to_string());
    if k.taint.using_gplonly.contains(&m) {
        k.printk(format!(
            "{me}: module using GPL-only symbols uses symbols {sym} from proprietary module {them}."
        ));
        return false;
    }
    if !k.taint.module_has(m, Taint::Proprietary) {
        k.printk(format!(
            "{me}: module uses symbols {sym} from proprietary module {them}, inheriting taint."
        ));
        *k.taint.module.entry(m).or_insert(0) |= 1 << Taint::Proprietary.bit();
    }
    true
}

/// `try_force_unload()`: whether `rmmod -f` may force past a missing exit or a
/// reference, tainting the kernel (R) when it does.
pub fn try_force_unload(k: &mut Kernel, force: bool) -> bool {
    if !force || !k.config.force_unload {
        return false;
    }
    add_taint(k, Taint::ForcedRmmod, true);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;
    use crate::spec::{ModuleDb, ModuleSpec};
    use crate::Policy;

    fn kernel(policy: &str, specs: Vec<ModuleSpec>) -> Kernel {
        Kernel::new(
            ModuleDb::new(specs).unwrap(),
            policy.parse::<Policy>().unwrap(),
        )
    }

    fn module(name: &str, f: impl FnOnce(&mut ModuleSpec)) -> ModuleSpec {
        let mut s = ModuleSpec::new(name);
        f(&mut s);
        s
    }

    fn texts(k: &Kernel) -> Vec<&str> {
        k.log.iter().map(|l| l.text.as_str()).collect()
    }

    /// Loads `m` through the checks and the listing, as load.rs does.
    fn load(k: &mut Kernel, m: ModId) -> Result<(), Errno> {
        let bits = pre_list_checks(k, m)?;
        listed(k, m, bits);
        Ok(())
    }

    #[test]
    fn guarded_lines_print_once_per_boot_and_staging_every_time() {
        let oot = |s: &mut ModuleSpec| {
            s.provenance.out_of_tree = true;
            s.provenance.signed = false;
        };
        let mut k = kernel(
            "linux-6.1",
            vec![
                module("a", oot),
                module("b", oot),
                module("s", |s| s.provenance.staging = true),
                module("p", |s| s.license = "Proprietary".into()),
                module("q", |s| s.license = "Proprietary".into()),
            ],
        );
        for m in [0, 1, 2, 2, 3, 4] {
            load(&mut k, m).unwrap();
        }
        assert_eq!(
            texts(&k),
            vec![
                "a: loading out-of-tree module taints kernel.",
                "a: module verification failed: signature and/or required key missing - tainting kernel",
                "s: module is from the staging directory, the quality is unknown, you have been warned.",
                "s: module is from the staging directory, the quality is unknown, you have been warned.",
                "p: module license 'Proprietary' taints kernel.",
                "Disabling lock debugging due to kernel taint",
            ]
        );
        assert_eq!(k.taint.flags(0), "OE");
        assert_eq!(k.taint.flags(1), "OE");
        assert_eq!(k.taint.flags(2), "C");
        assert_eq!(k.taint.flags(4), "P");
        // A forced unload after that: lock debugging is already off.
        assert!(try_force_unload(&mut k, true));
        assert_eq!(k.log.len(), 6);
        assert!(k.taint.test(Taint::ForcedRmmod));
    }

    #[test]
    fn forced_unload_needs_the_config_and_turns_lock_debugging_off() {
        let mut k = kernel("linux-6.12", vec![ModuleSpec::new("a")]);
        assert!(!try_force_unload(&mut k, false));
        k.config.force_unload = false;
        assert!(!try_force_unload(&mut k, true));
        assert!(k.log.is_empty());
        k.config.force_unload = true;
        assert!(try_force_unload(&mut k, true));
        assert_eq!(
            texts(&k),
            vec!["Disabling lock debugging due to kernel taint"]
        );
    }

    #[test]
    fn signature_enforcement_and_blacklist_by_version() {
        let unsigned = |s: &mut ModuleSpec| s.provenance.signed = false;
        for (policy, want, line) in [
            ("linux-5.3", Errno::ENOKEY, None),
            (
                "linux-5.4",
                Errno::EKEYREJECTED,
                Some("Loading of unsigned module is rejected"),
            ),
            (
                "linux-6.12",
                Errno::EKEYREJECTED,
                Some("Loading of unsigned module is rejected"),
            ),
        ] {
            let mut k = kernel(policy, vec![module("u", unsigned)]);
            k.config.sig_enforce = true;
            k.config.module_blacklist = vec!["u".into()];
            assert_eq!(load(&mut k, 0), Err(want), "{policy}");
            assert_eq!(texts(&k), line.into_iter().collect::<Vec<_>>(), "{policy}");
            assert_eq!(k.taint.mask, 0);
        }
        for (policy, want) in [
            ("linux-4.4", Ok(())),
            ("linux-4.6", Err(Errno::EPERM)),
            ("linux-5.10", Err(Errno::EPERM)),
        ] {
            let mut k = kernel(
                policy,
                vec![module("b", |s| s.provenance.out_of_tree = true)],
            );
            k.config.module_blacklist = vec!["b".into()];
            assert_eq!(load(&mut k, 0), want, "{policy}");
            let blacklisted = texts(&k).contains(&"Module b is blacklisted");
            assert_eq!(blacklisted, policy == "linux-5.10", "{policy}");
        }
    }

    #[test]
    fn modules_without_versions_are_forced_in_or_refused() {
        let nover = |s: &mut ModuleSpec| s.provenance.versions = false;
        let mut k = kernel("linux-6.1", vec![module("v", nover), module("w", nover)]);
        load(&mut k, 0).unwrap();
        assert!(
            texts(&k).is_empty(),
            "CONFIG_MODVERSIONS off: nothing to check"
        );
        k.config.modversions = true;
        load(&mut k, 0).unwrap();
        load(&mut k, 1).unwrap();
        assert_eq!(
            texts(&k),
            vec![
                "v: module_layout: kernel tainted.",
                "Disabling lock debugging due to kernel taint"
            ]
        );
        assert_eq!(k.taint.flags(1), "F");
        k.config.force_load = false;
        assert_eq!(load(&mut k, 1), Err(Errno::ENOEXEC));
    }

    #[test]
    fn proprietary_taint_is_inherited_from_5_13() {
        let specs = || {
            vec![
                module("p", |s| s.license = "Proprietary".into()),
                ModuleSpec::new("g"),
                ModuleSpec::new("i"),
            ]
        };
        let mut k = kernel("linux-5.13", specs());
        for m in 0..3 {
            load(&mut k, m).unwrap();
        }
        let before = k.log.len();
        assert!(inherit_taint(&mut k, 2, 0, "p_sym", false));
        assert!(inherit_taint(&mut k, 2, 0, "p_sym2", false));
        assert_eq!(k.taint.flags(2), "P");
        assert!(inherit_taint(&mut k, 1, 1, "own", true));
        assert!(!inherit_taint(&mut k, 1, 0, "p_sym", false));
        assert_eq!(
            &texts(&k)[before..],
            &[
                "i: module uses symbols p_sym from proprietary module p, inheriting taint.",
                "g: module using GPL-only symbols uses symbols p_sym from proprietary module p."
            ]
        );
        let mut k = kernel("linux-5.12", specs());
        for m in 0..3 {
            load(&mut k, m).unwrap();
        }
        assert!(inherit_taint(&mut k, 1, 0, "p_sym", true));
        assert_eq!(k.taint.flags(1), "");
    }
}
