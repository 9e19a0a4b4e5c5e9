//! Stack dumps in a real kernel's log, reduced to the one line the simulator prints.
//!
//! `dump_stack()` (for example after `do_init_module()`'s "suspiciously returned" warning
//! before 7.1) prints a `CPU: N PID: N Comm: …` line, `Hardware name: …`, `Call Trace:`,
//! `<TASK>`, one line per frame (`do_init_module.cold+0x21/0x26`), the user registers and
//! `</TASK>`. Addresses, PIDs and the taint column vary from boot to boot, so the model
//! keeps only `Call Trace:` ([`modkit_core::initret::STACK_DUMP_LINE`]) and this module
//! drops the rest of each dump.

use modkit_core::initret::STACK_DUMP_LINE;
use modkit_core::kernel::LogLine;

/// The header line of a dump: `CPU: 0 PID: 123 Comm: insmod …` (6.12 adds `UID: 0`).
fn is_dump_header(text: &str) -> bool {
    text.starts_with("CPU: ") && text.contains("PID: ") && text.contains(" Comm: ")
}

/// A line inside a dump after its header.
fn is_dump_body(text: &str) -> bool {
    let t = text.trim();
    if t == STACK_DUMP_LINE
        || matches!(t, "<TASK>" | "</TASK>" | "<IRQ>" | "</IRQ>")
        || t.starts_with("Hardware name: ")
        || t.starts_with("Workqueue: ")
        // 6.10+ spells the taint flags out after the header: `Tainted: [O]=OOT_MODULE, …`.
        || t.starts_with("Tainted: ")
    {
        return true;
    }
    // A frame: `? entry_SYSCALL_64_after_hwframe+0x6e/0xd8` (maybe `[mod]` after it).
    let frame = t.trim_start_matches("? ");
    if let Some((func, off)) = frame.split_once("+0x") {
        return !func.contains(' ') && off.contains("/0x");
    }
    // Registers: `RIP: 0033:0x7f…`, `RSP: 002b:…`, `RAX: …`, `R13: …`, `Code: 48 89 …`.
    match t.split_once(": ") {
        Some((reg, _)) => {
            reg == "Code"
                || (reg.len() >= 2
                    && reg.len() <= 8
                    && reg.starts_with('R')
                    && reg
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
        }
        None => false,
    }
}

/// Removes every stack dump from `log` but its `Call Trace:` line; returns how many lines
/// went. A `Call Trace:` that no `CPU: … PID: … Comm:` header leads (a hung-task report,
/// for example) goes too, as the log's relevance filter always dropped it.
pub fn reduce_stack_dumps(log: &mut Vec<LogLine>) -> usize {
    let before = log.len();
    let mut in_dump = false;
    log.retain(|l| {
        if is_dump_header(&l.text) {
            in_dump = true;
            return false;
        }
        if in_dump {
            if is_dump_body(&l.text) {
                return l.text.trim() == STACK_DUMP_LINE;
            }
            in_dump = false;
        }
        l.text.trim() != STACK_DUMP_LINE
    });
    before - log.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(t: &[&str]) -> Vec<LogLine> {
        t.iter()
            .enumerate()
            .map(|(i, s)| LogLine {
                time: i as u64,
                text: s.to_string(),
            })
            .collect()
    }

    #[test]
    fn a_dump_becomes_its_call_trace_line() {
        // As Debian's 6.12 kernel prints it after a positive init return.
        let mut log = lines(&[
            "do_init_module: 'ret_one'->init suspiciously returned 1, it should follow 0/-E convention",
            "do_init_module: loading module anyway...",
            "CPU: 0 UID: 0 PID: 81 Comm: insmod Tainted: G           OE      6.12.117+deb12-cloud-amd64 #1  Debian 6.12.117-1~bpo12+1",
            "Tainted: [O]=OOT_MODULE, [E]=UNSIGNED_MODULE",
            "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.3-debian-1.16.3-2 04/01/2014",
            "Call Trace:",
            " <TASK>",
            " dump_stack_lvl+0x5d/0x80",
            " do_init_module.cold+0x21/0x26",
            " ? __pfx_kernel_read+0x10/0x10",
            " init_module_from_file+0x89/0xe0",
            " entry_SYSCALL_64_after_hwframe+0x76/0x7e",
            "RIP: 0033:0x7f5d7a3c3779",
            "Code: ff c3 66 2e 0f 1f 84 00 00 00 00 00 90 f3 0f 1e fa 48 89 f8",
            "RSP: 002b:00007ffd1d3b7b08 EFLAGS: 00000246 ORIG_RAX: 0000000000000139",
            "RAX: ffffffffffffffda RBX: 0000000000000000 RCX: 00007f5d7a3c3779",
            "R13: 0000000000000000 R14: 0000000000000000 R15: 0000000000000000",
            " </TASK>",
            "ret_two: init suspiciously returned 2, it should follow 0/-E convention",
        ]);
        assert_eq!(reduce_stack_dumps(&mut log), 15);
        let texts: Vec<&str> = log.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "do_init_module: 'ret_one'->init suspiciously returned 1, it should follow 0/-E convention",
                "do_init_module: loading module anyway...",
                "Call Trace:",
                "ret_two: init suspiciously returned 2, it should follow 0/-E convention",
            ]
        );
    }

    #[test]
    fn lines_outside_a_dump_stay() {
        let mut log = lines(&[
            "INFO: task modprobe:81 blocked for more than 120 seconds.",
            "Call Trace:",
        ]);
        assert_eq!(
            reduce_stack_dumps(&mut log),
            1,
            "a trace without a CPU header goes"
        );
        let keep = [
            "RIP: not in a dump",
            "a: Unknown symbol b (err -2)",
            "loading out-of-tree module taints kernel.",
        ];
        let mut log = lines(&keep);
        assert_eq!(reduce_stack_dumps(&mut log), 0);
        assert_eq!(log.len(), keep.len());
    }
}
