//! What `do_init_module()` makes of an init's return value, by kernel version: a positive
//! value (a warning, and the module goes live all the same) and -EEXIST (passed on until
//! 7.1, turned into -EBUSY since). Sources: `docs/loader-versions.md`.
//!
//! `kernel/module.c` (≤ 5.18) and `kernel/module/main.c` (5.19+), `do_init_module()`:
//!
//! ```c
//! /* 3.13 (bddb12b32f90) – 7.0 */
//! if (ret > 0) {
//!         pr_warn("%s: '%s'->init suspiciously returned %d, it should "
//!                 "follow 0/-E convention\n"
//!                 "%s: loading module anyway...\n",
//!                 __func__, mod->name, ret, __func__);
//!         dump_stack();
//! }
//! /* 7.1 (663385f9155f "module: Simplify warning on positive returns from module_init()") */
//! if (ret > 0)
//!         pr_warn("%s: init suspiciously returned %d, it should follow 0/-E convention\n",
//!                 mod->name, ret);
//! /* 7.1 (743f8cae549a "module: Override -EEXIST module return"), in the ret < 0 branch */
//! if (ret == -EEXIST)
//!         ret = -EBUSY;
//! ```

use crate::errno::Errno;
use crate::kernel::{Kernel, ModId};
use crate::policy::PositiveInitWarning;

/// The line `dump_stack()` prints on x86 before the frames (`show_trace_log_lvl()`); the
/// model prints it alone for the whole dump (the kernel driver keeps it and drops the
/// `CPU:`/`Hardware name:`/frame/register lines, whose addresses vary from boot to boot).
pub const STACK_DUMP_LINE: &str = "Call Trace:";

/// The warning of `do_init_module()` for an init of `m` that returned `n` > 0, as the
/// kernel's log lines (the two-line `pr_warn` is one record that dmesg shows as two lines).
pub fn positive_warning(policy_warning: PositiveInitWarning, name: &str, n: u32) -> Vec<String> {
    match policy_warning {
        PositiveInitWarning::WithStackDump => vec![
            format!(
                "do_init_module: '{name}'->init suspiciously returned {n}, it should follow 0/-E convention"
            ),
            "do_init_module: loading module anyway...".to_string(),
            STACK_DUMP_LINE.to_string(),
        ],
        PositiveInitWarning::Short => vec![format!(
            "{name}: init suspiciously returned {n}, it should follow 0/-E convention"
        )],
    }
}

/// Prints the positive-return warning for module `m` (the caller then makes it live).
pub(crate) fn warn_positive(k: &mut Kernel, m: ModId, n: u32) {
    let name = k.name(m).to_string();
    for line in positive_warning(k.policy.positive_init_warning(), &name, n) {
        k.printk(line);
    }
}

/// The error `finit_module()` returns for an init of `m` that failed with `e`.
pub(crate) fn init_error(k: &mut Kernel, m: ModId, e: Errno) -> Errno {
    if e != Errno::EEXIST || !k.policy.init_eexist_becomes_ebusy() {
        return e;
    }
    if k.policy.is_modkit() {
        // modkit says what it did; Linux 7.1+ converts silently.
        let line = format!("{}: init failed with EEXIST; reported as EBUSY", k.name(m));
        k.printk(line);
    }
    Errno::EBUSY
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    fn p(s: &str) -> Policy {
        s.parse().unwrap()
    }

    #[test]
    fn warning_text_by_era() {
        let old = positive_warning(p("linux-7.0").positive_init_warning(), "ret_one", 1);
        assert_eq!(
            old,
            [
                "do_init_module: 'ret_one'->init suspiciously returned 1, it should follow 0/-E convention",
                "do_init_module: loading module anyway...",
                "Call Trace:",
            ]
        );
        assert_eq!(
            positive_warning(p("linux-4.4").positive_init_warning(), "ret_one", 1),
            old
        );
        let new = positive_warning(p("linux-7.1").positive_init_warning(), "ret_one", 255);
        assert_eq!(
            new,
            ["ret_one: init suspiciously returned 255, it should follow 0/-E convention"]
        );
    }
}
