//! Stable backports that change loader behaviour: which `linux-X.Y.Z` has which rule.
//!
//! A rule is present in a kernel when its version is at or after the mainline release that
//! first had it, or when the kernel's stable line (`X.Y`) got the backport at or before
//! patch level `Z`. `linux-X.Y` (no patch level) is the release `X.Y.0` and has only what
//! mainline `X.Y` had. Sources and what could not be pinned down: `docs/loader-versions.md`.
//!
//! Stable commit ids: where the id is known it is the one seen in the stable trees' push
//! logs (linux-stable-rc, or a downstream rebase that keeps the stable ids); `None` where
//! only the release was confirmed (from the stable review series that carried the patch).

use crate::policy::Version;

/// A loader-behaviour change that stable lines received as a backport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// 6e6de3dee51a "kernel/module.c: Only return -EEXIST for modules that have finished
    /// loading": a second load waits for anything not LIVE, then retries (era B).
    WaitForNonLive,
    /// 5d603311615f "kernel/module.c: wakeup processes in module_wq on module unload":
    /// `delete_module()` wakes `module_wq` after freeing; before it, an era-B loader waiting
    /// on a module being unloaded was never woken.
    UnloadWakesModuleWq,
    /// d7d27cfc5cf0 "kmod: make request_module() return an error when autoloading is
    /// disabled": an empty modprobe path gives -ENOENT (before: 0).
    AutoloadDisabledEnoent,
    /// 0254127ab977 "module: Don't wait for GOING modules": wait once for COMING, then
    /// EEXIST if LIVE, else EBUSY; GOING gives EBUSY at once (era C).
    DontWaitForGoing,
    /// 2124d84db293 "module: make waiting for a concurrent module loader interruptible"
    /// (with cb5b81bc9a44 "module: warn about excessively long module waits"): the
    /// idempotent finit_module wait is interruptible (era F).
    InterruptibleIdempotentWait,
    /// 743f8cae549a "module: Override -EEXIST module return" (7.1): an init that fails with
    /// -EEXIST is reported as -EBUSY (silently), so that modprobe no longer takes the
    /// failure for "already loaded".
    InitEexistBecomesEbusy,
    /// 663385f9155f "module: Simplify warning on positive returns from module_init()"
    /// (7.1): a positive init return is warned about in one line, `M: init suspiciously
    /// returned N, it should follow 0/-E convention`, without the stack dump.
    ShortPositiveInitWarning,
    /// 9011e49d54dc "modules: only allow symbol_get of EXPORT_SYMBOL_GPL modules" (6.6):
    /// `__symbol_get()` of a symbol that is not `EXPORT_SYMBOL_GPL` fails (NULL) with
    /// "failing symbol_get of non-GPLONLY symbol X.".
    SymbolGetGplOnly,
    /// a6323bd4e611 "module: Prevent silent truncation of module name in delete_module(2)"
    /// (6.17): a name of `MODULE_NAME_LEN` bytes or more is ENOENT, no longer truncated.
    DeleteModuleNameNotTruncated,
    /// 25e9fbf0fd38 "driver core: Don't probe devices after bus_type.match() probe
    /// deferral" (6.0): a bus match returning -EPROBE_DEFER puts the device on the pending
    /// list and no longer probes it ([`crate::matchdefer`]).
    MatchDeferNoProbe,
}

/// One stable line's copy of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineBackport {
    /// The stable line `major.minor`.
    pub line: (u32, u32),
    /// The first patch level of that line with the change.
    pub first: u32,
    /// The commit in the stable tree, where found.
    pub commit: Option<&'static str>,
}

/// A change, where mainline got it, and which stable lines got it when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backport {
    /// Which rule.
    pub change: Change,
    /// The mainline commit (12 hex digits).
    pub mainline_commit: &'static str,
    /// Its subject line.
    pub subject: &'static str,
    /// The first mainline release with it.
    pub mainline: Version,
    /// Stable lines that got it, oldest line first.
    pub lines: &'static [LineBackport],
}

const fn at(major: u32, minor: u32, first: u32, commit: Option<&'static str>) -> LineBackport {
    LineBackport {
        line: (major, minor),
        first,
        commit,
    }
}

/// Every backport the era functions consult.
pub const BACKPORTS: &[Backport] = &[
    Backport {
        change: Change::WaitForNonLive,
        mainline_commit: "6e6de3dee51a",
        subject: "kernel/module.c: Only return -EEXIST for modules that have finished loading",
        mainline: Version::new(5, 3),
        // Stable review series of 5 Aug 2019 (4.4.188, 4.9.188, 4.14.137, 4.19.65, 5.2.7).
        lines: &[
            at(4, 4, 188, None),
            at(4, 9, 188, None),
            at(4, 14, 137, None),
            at(4, 19, 65, None),
            at(5, 2, 7, None),
        ],
    },
    Backport {
        change: Change::UnloadWakesModuleWq,
        mainline_commit: "5d603311615f",
        subject: "kernel/module.c: wakeup processes in module_wq on module unload",
        mainline: Version::new(5, 5),
        // 4.4.207 and 5.4.9 from their review series; 4.9.207, 4.14.159 and 4.19.90 from
        // their release announcements ("Linux 4.9.207", "Linux 4.14.159", "Linux
        // 4.19.90" each list the patch).
        // 5.2.y had ended: 5.2.7 – 5.2.21 have era B without this wakeup.
        lines: &[
            at(4, 4, 207, None),
            at(4, 9, 207, None),
            at(4, 14, 159, None),
            at(4, 19, 90, None),
            at(5, 4, 9, None),
        ],
    },
    Backport {
        change: Change::AutoloadDisabledEnoent,
        mainline_commit: "d7d27cfc5cf0",
        subject: "kmod: make request_module() return an error when autoloading is disabled",
        mainline: Version::new(5, 7),
        // Review series of 16 Apr 2020 (4.19.116-rc1 shortlog, 5.4.33, 5.6.5-rc1
        // `[PATCH 5.6 228/254]`; "Linux 5.5.18" lists it) and 22 Apr 2020 (4.4.220-rc1
        // `[PATCH 4.4 046/100]`, 4.9.220). 4.14.y: inferred, not seen: 4.14.177-rc1
        // (199 patches) was posted on 22 Apr 2020 with 4.4.220-rc1 and 4.9.220-rc1, which
        // carry it; the patch (Cc: stable) applies to 4.14's kernel/kmod.c as to theirs.
        lines: &[
            at(4, 4, 220, None),
            at(4, 9, 220, None),
            at(4, 14, 177, None),
            at(4, 19, 116, None),
            at(5, 4, 33, None),
            at(5, 5, 18, None),
            at(5, 6, 5, None),
        ],
    },
    Backport {
        change: Change::DontWaitForGoing,
        mainline_commit: "0254127ab977",
        subject: "module: Don't wait for GOING modules",
        mainline: Version::new(6, 2),
        // Review series of 30 Jan and 3 Feb 2023. 4.4.y and 4.9.y had ended by then.
        lines: &[
            at(4, 14, 305, None),
            at(4, 19, 272, Some("008368a9b4e5")),
            at(5, 4, 231, Some("c18bd4d5c33f")),
            at(5, 10, 166, None),
            at(5, 15, 91, Some("8020f7fbec22")),
            at(6, 1, 9, Some("448858dac526")),
        ],
    },
    Backport {
        change: Change::InterruptibleIdempotentWait,
        mainline_commit: "2124d84db293",
        subject: "module: make waiting for a concurrent module loader interruptible",
        mainline: Version::new(6, 11),
        // Review series of 12 Aug 2024 (6.6.46-rc1, 6.10.5-rc1), both with cb5b81bc9a44.
        lines: &[at(6, 6, 46, None), at(6, 10, 5, None)],
    },
    Backport {
        change: Change::InitEexistBecomesEbusy,
        mainline_commit: "743f8cae549a",
        subject: "module: Override -EEXIST module return",
        mainline: Version::new(7, 1),
        // Sasha Levin's "[PATCH AUTOSEL 7.0-5.15]" of 20 Apr 2026 proposed it for 7.0.y back
        // to 5.15.y; no stable review series carrying it was seen, so no line has it here
        // (docs/loader-versions.md says what the real kernels showed). Searched again: the
        // subject occurs only in the modules-next/mainline pushes, the modules-7.1-rc1
        // pull and the AUTOSEL mail; no `[PATCH 6.x nnn/mmm]` review, no stable-rc push.
        lines: &[],
    },
    Backport {
        change: Change::ShortPositiveInitWarning,
        mainline_commit: "663385f9155f",
        subject: "module: Simplify warning on positive returns from module_init()",
        mainline: Version::new(7, 1),
        // Not proposed for stable in the material read.
        lines: &[],
    },
    Backport {
        change: Change::SymbolGetGplOnly,
        mainline_commit: "9011e49d54dc",
        subject: "modules: only allow symbol_get of EXPORT_SYMBOL_GPL modules",
        // In the modules-6.6-rc1 pull (Luis Chamberlain, 29 Aug 2023, two days after 6.5's
        // release): 6.5.0 does not have it.
        mainline: Version::new(6, 6),
        // One stable batch (review series of 11 Sep 2023; linux-stable-rc pushes of that day
        // end at "Linux 4.14.326-rc1", "Linux 4.19.295-rc1", "Linux 5.10.195-rc1"; the 5.4.y
        // push of the same minute; Sasha Levin's pending-4.14 … pending-6.5 of 22 Sep 2023
        // carry it). Releases seen: the "Linux 5.4.257" announcement (its diffstat has the
        // series: arch/mips/alchemy/devboards, drivers/media/dvb-frontends), the 6.1.53-rc1
        // review (diffstat with the dvb_attach follow-up that "Fixes: 9011e49d54dc"). 5.15.132,
        // 6.4.16 and 6.5.3: same batch, not seen in an announcement. Commit ids are those of
        // the rc pushes (they may differ from the final tags'). Measured: Debian's 6.1.176
        // image has the line.
        lines: &[
            at(4, 14, 326, Some("e7b80de8b27b")),
            at(4, 19, 295, Some("cccf17df4c71")),
            at(5, 4, 257, Some("8e988ad8e972")),
            at(5, 10, 195, Some("6b6ad98ce01e")),
            at(5, 15, 132, None),
            at(6, 1, 53, None),
            at(6, 4, 16, None),
            at(6, 5, 3, None),
        ],
    },
    Backport {
        change: Change::DeleteModuleNameNotTruncated,
        mainline_commit: "a6323bd4e611",
        subject: "module: Prevent silent truncation of module name in delete_module(2)",
        // Petr Pavlu's series in the modules pull for 6.17-rc1.
        mainline: Version::new(6, 17),
        // Review series of 18 Aug 2025 (`[PATCH 6.16 424/570]`, `[PATCH 6.15 391/515]`; the
        // 6.12.43-rc1 review shortlog; linux-stable-rc pushes ending at "Linux 6.6.103-rc1"
        // and "Linux 6.1.149-rc1" carry it). Ids are those of the rc pushes.
        lines: &[
            at(6, 1, 149, Some("e1f08af4f603")),
            at(6, 6, 103, Some("bcab3e900ae3")),
            at(6, 12, 43, Some("b54f7788ccc1")),
            at(6, 15, 11, None),
            at(6, 16, 2, None),
        ],
    },
    Backport {
        change: Change::MatchDeferNoProbe,
        mainline_commit: "25e9fbf0fd38",
        subject: "driver core: Don't probe devices after bus_type.match() probe deferral",
        mainline: Version::new(6, 0),
        // Cc: stable. Two review batches carry it (each shortlog lists it, each diffstat has
        // `drivers/base/dd.c | 10 +`): 6 Sep 2022, `[PATCH 5.10 00/80] 5.10.142-rc1`,
        // `[PATCH 5.15 000/107] 5.15.66-rc1`, `[PATCH 5.19 000/155] 5.19.8-rc1` (the
        // linux-stable-rc queue/5.10 push of that day ends with it; 5.10.143-rc1's diffstat
        // has no dd.c); 13 Sep 2022, `[PATCH 4.9 00/42] 4.9.328-rc1`,
        // `[PATCH 5.4 000/108] 5.4.212-rc1`, with 4.14.293-rc1 and 4.19.258-rc1 (the queue
        // pushes of 11 Sep carry it for 4.14 and 4.19; Sasha Levin's for-greg/4.19 rebase
        // has it right after "Linux 4.19.257"). 4.4.y had ended (Feb 2022). Commit ids: the
        // queue ids seen are rebased before release, so none is recorded.
        lines: &[
            at(4, 9, 328, None),
            at(4, 14, 293, None),
            at(4, 19, 258, None),
            at(5, 4, 212, None),
            at(5, 10, 142, None),
            at(5, 15, 66, None),
            at(5, 19, 8, None),
        ],
    },
];

/// The table entry of `change`.
pub fn backport(change: Change) -> &'static Backport {
    BACKPORTS
        .iter()
        .find(|b| b.change == change)
        .expect("every change has an entry")
}

/// Whether kernel `v` has `change` (mainline at or before `v`, or its stable line's
/// backport at or before `v`'s patch level).
pub fn has(change: Change, v: Version) -> bool {
    let b = backport(change);
    if v >= b.mainline {
        return true;
    }
    b.lines
        .iter()
        .any(|l| l.line == (v.major, v.minor) && v.patch >= l.first)
}

/// The first version of `v`'s stable line with `change`, if the line has it at all.
pub fn first_in_line(change: Change, v: Version) -> Option<Version> {
    let b = backport(change);
    if Version::new(v.major, v.minor) >= b.mainline {
        return Some(Version::new(v.major, v.minor));
    }
    b.lines
        .iter()
        .find(|l| l.line == (v.major, v.minor))
        .map(|l| Version::with_patch(v.major, v.minor, l.first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for b in BACKPORTS {
            assert_eq!(b.mainline_commit.len(), 12, "{}", b.subject);
            assert_eq!(b.mainline.patch, 0);
            let mut prev = (0, 0);
            for l in b.lines {
                assert!(
                    Version::new(l.line.0, l.line.1) < b.mainline,
                    "{}: line {:?} is not before mainline",
                    b.subject,
                    l.line
                );
                assert!(l.line > prev, "{}: lines out of order", b.subject);
                assert!(l.first > 0);
                if let Some(c) = l.commit {
                    assert_eq!(c.len(), 12);
                }
                prev = l.line;
            }
        }
    }

    #[test]
    fn match_defer_no_probe_lines() {
        let c = Change::MatchDeferNoProbe;
        for (line, first) in [
            ((4, 9), 328),
            ((4, 14), 293),
            ((4, 19), 258),
            ((5, 4), 212),
            ((5, 10), 142),
            ((5, 15), 66),
            ((5, 19), 8),
        ] {
            let (ma, mi) = line;
            assert!(!has(c, Version::with_patch(ma, mi, first - 1)), "{ma}.{mi}");
            assert!(has(c, Version::with_patch(ma, mi, first)), "{ma}.{mi}");
        }
        assert!(!has(c, Version::new(5, 15)));
        assert!(!has(c, Version::with_patch(4, 4, 302)));
        assert!(has(c, Version::new(6, 0)));
    }

    #[test]
    fn autoload_enoent_lines() {
        let c = Change::AutoloadDisabledEnoent;
        for (line, first) in [((4, 4), 220), ((4, 19), 116), ((5, 5), 18), ((5, 6), 5)] {
            let (ma, mi) = line;
            assert!(!has(c, Version::with_patch(ma, mi, first - 1)), "{ma}.{mi}");
            assert!(has(c, Version::with_patch(ma, mi, first)), "{ma}.{mi}");
        }
        // 4.14.y: inferred from the batch of 22 Apr 2020 (4.14.177).
        assert!(!has(c, Version::with_patch(4, 14, 176)));
        assert!(has(c, Version::with_patch(4, 14, 177)));
    }

    #[test]
    fn the_7_1_init_changes_have_no_backports() {
        for c in [
            Change::InitEexistBecomesEbusy,
            Change::ShortPositiveInitWarning,
        ] {
            assert!(!has(c, Version::new(7, 0)));
            assert!(!has(c, Version::with_patch(7, 0, 9)));
            assert!(!has(c, Version::with_patch(6, 12, 117)));
            assert!(has(c, Version::new(7, 1)));
            assert!(has(c, Version::with_patch(7, 2, 13)));
            assert_eq!(first_in_line(c, Version::with_patch(6, 1, 176)), None);
        }
    }

    #[test]
    fn symbol_get_gpl_only_lines() {
        let c = Change::SymbolGetGplOnly;
        assert!(!has(c, Version::new(6, 5)));
        assert!(!has(c, Version::with_patch(6, 5, 2)));
        assert!(has(c, Version::with_patch(6, 5, 3)));
        assert!(has(c, Version::new(6, 6)));
        assert!(!has(c, Version::with_patch(6, 1, 52)));
        assert!(has(c, Version::with_patch(6, 1, 53)));
        assert!(has(c, Version::with_patch(6, 1, 176)));
        assert!(has(c, Version::with_patch(6, 12, 117)));
        assert!(!has(c, Version::with_patch(4, 14, 325)));
        assert!(has(c, Version::with_patch(4, 14, 326)));
        // 4.9.y had ended (4.9.337, Jan 2023); 6.2.y and 6.3.y too.
        assert!(!has(c, Version::with_patch(4, 9, 337)));
        assert!(!has(c, Version::with_patch(6, 3, 13)));
        assert_eq!(
            first_in_line(c, Version::with_patch(5, 15, 1)),
            Some(Version::with_patch(5, 15, 132))
        );
    }

    #[test]
    fn dont_wait_for_going_reached_6_1_9() {
        let c = Change::DontWaitForGoing;
        assert!(!has(c, Version::new(6, 1)));
        assert!(!has(c, Version::with_patch(6, 1, 8)));
        assert!(has(c, Version::with_patch(6, 1, 9)));
        assert!(has(c, Version::with_patch(6, 1, 176)));
        assert!(has(c, Version::new(6, 2)));
        assert!(!has(c, Version::with_patch(6, 0, 19)));
        assert!(has(c, Version::with_patch(5, 10, 166)));
        assert!(!has(c, Version::with_patch(5, 10, 165)));
        assert!(!has(c, Version::with_patch(4, 9, 337)));
        assert_eq!(
            first_in_line(c, Version::with_patch(5, 15, 3)),
            Some(Version::with_patch(5, 15, 91))
        );
        assert_eq!(first_in_line(c, Version::with_patch(6, 0, 3)), None);
        assert_eq!(
            first_in_line(c, Version::with_patch(6, 6, 3)),
            Some(Version::new(6, 6))
        );
    }
}
