//! Userspace `modprobe`, as kmod's `kmod_module_probe_insert_module()` does it: look the
//! name or alias up, build the probe list (softdeps pre, dependencies deepest first, the
//! module, softdeps post), skip what is LIVE or builtin, insert the rest, EEXIST is success.

use std::collections::BTreeSet;

use crate::errno::{Errno, Outcome};
use crate::kernel::{Kernel, ModId, ModState};
use crate::load::Load;
use crate::proc::{Proc, Resume, Step};
use crate::spec::ModuleDb;
use crate::waits::TaskId;

/// One entry of the probe list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    module: ModId,
    /// The module this one is loaded for.
    needed_by: Option<ModId>,
    /// A failure of a softdep is not a failure of the modprobe.
    required: bool,
    /// The module was in the kernel with a closed closure ([`ModuleDb::closed`]) when the
    /// list was built, so its dependencies were left out: all of them are live while it is.
    pruned: bool,
}

/// A modprobe run.
#[derive(Debug, Clone)]
pub struct Modprobe {
    /// The name or alias asked for.
    pub target: String,
    /// `-q`: no messages (request_module runs `modprobe -q -- NAME`).
    pub quiet: bool,
    list: Option<Vec<Entry>>,
    idx: usize,
    awaiting: bool,
    started: bool,
}

/// The kernel release modprobe reports in its messages.
pub const UNAME_R: &str = "6.1.0-modkit";

impl Modprobe {
    /// `modprobe [-q] TARGET`.
    pub fn new(target: &str, quiet: bool) -> Self {
        Modprobe {
            target: target.to_string(),
            quiet,
            list: None,
            idx: 0,
            awaiting: false,
            started: false,
        }
    }

    /// The probe list for `target` in insertion order, without repeats. `inkernel` tells
    /// which modules are LIVE or builtin now: the closure of such a module is left out when
    /// it is closed (the module alone stands for it), which keeps a modprobe proportional to
    /// what it may have to insert rather than to its whole closure; the modules left out
    /// are exactly ones kmod would find in the kernel and skip.
    fn probe_list(db: &ModuleDb, cands: &[ModId], inkernel: &dyn Fn(ModId) -> bool) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        let mut seen = BTreeSet::new();
        let starts: Vec<(ModId, Option<ModId>, bool)> =
            cands.iter().map(|&c| (c, None, true)).collect();
        Self::walk(db, &starts, inkernel, &mut out, &mut seen);
        out
    }

    /// Appends the probe list of each start `(module, needed_by, required)` to `out`,
    /// skipping modules in `seen`.
    fn walk(
        db: &ModuleDb,
        starts: &[(ModId, Option<ModId>, bool)],
        inkernel: &dyn Fn(ModId) -> bool,
        out: &mut Vec<Entry>,
        seen: &mut BTreeSet<ModId>,
    ) {
        /// Work of the depth-first walk, on an explicit stack so that a dependency chain
        /// of any depth fits.
        enum Work {
            Enter(ModId, Option<ModId>, bool),
            Emit(ModId, Option<ModId>, bool),
        }
        let mut stack: Vec<Work> = starts
            .iter()
            .rev()
            .map(|&(c, n, r)| Work::Enter(c, n, r))
            .collect();
        while let Some(w) = stack.pop() {
            match w {
                Work::Emit(m, needed_by, required) => out.push(Entry {
                    module: m,
                    needed_by,
                    required,
                    pruned: false,
                }),
                Work::Enter(m, needed_by, required) => {
                    if !seen.insert(m) {
                        continue;
                    }
                    if db.closed(m) && inkernel(m) {
                        out.push(Entry {
                            module: m,
                            needed_by,
                            required,
                            pruned: true,
                        });
                        continue;
                    }
                    // In execution order: softdeps pre, dependencies, the module, softdeps
                    // post; pushed in reverse.
                    let spec = db.spec(m);
                    let mut todo: Vec<Work> = Vec::new();
                    for pre in &spec.softdeps_pre {
                        todo.extend(
                            db.lookup(pre)
                                .into_iter()
                                .map(|p| Work::Enter(p, Some(m), false)),
                        );
                    }
                    todo.extend(
                        db.deps(m)
                            .iter()
                            .map(|&d| Work::Enter(d, Some(m), required)),
                    );
                    todo.push(Work::Emit(m, needed_by, required));
                    for post in &spec.softdeps_post {
                        todo.extend(
                            db.lookup(post)
                                .into_iter()
                                .map(|p| Work::Enter(p, Some(m), false)),
                        );
                    }
                    stack.extend(todo.into_iter().rev());
                }
            }
        }
    }

    /// True when module `m` is LIVE or builtin (`module_is_inkernel`).
    fn inkernel(k: &Kernel, m: ModId) -> bool {
        k.db.spec(m).builtin || k.state(m) == Some(ModState::Live)
    }

    /// modprobe only waits as a process starting up (userspace): SIGKILL ends it.
    pub fn killable_wait(&self) -> bool {
        true
    }

    /// Advances the modprobe.
    pub fn poll(&mut self, k: &mut Kernel, task: TaskId, r: Resume) -> Step {
        // SIGKILL: the process dies when its system call returns (or at once, in
        // userspace), before it inserts anything more. The value is never seen: the
        // driver reports the task as killed (crate::signal).
        if r == Resume::Killed || (matches!(r, Resume::Child(_)) && k.fatal_signal_pending(task)) {
            return Step::Done(Outcome::Err(Errno::EINTR));
        }
        if !self.started {
            self.started = true;
            if k.modprobe_exec > 0 {
                return crate::proc::wait(
                    crate::waits::WaitKey::Timer,
                    format!("modprobe {} starting", self.target),
                    None,
                    Some(k.now + k.modprobe_exec),
                );
            }
        }
        if self.list.is_none() {
            let cands = k.db.lookup(&self.target);
            if cands.is_empty() {
                if !self.quiet {
                    k.printk(format!(
                        "modprobe: FATAL: Module {} not found in directory /lib/modules/{}",
                        self.target, UNAME_R
                    ));
                }
                return Step::Done(Outcome::Err(Errno::ENOENT));
            }
            self.list = Some(Self::probe_list(&k.db, &cands, &|m| Self::inkernel(k, m)));
        }
        let list = self.list.as_ref().expect("built above");
        if self.awaiting && matches!(r, Resume::Child(_)) {
            self.awaiting = false;
            let e = list[self.idx];
            let Resume::Child(o) = r else {
                debug_assert!(false, "modprobe resumed with {r:?}");
                return Step::Done(Outcome::Err(Errno::EINVAL));
            };
            self.idx += 1;
            match o {
                Outcome::Ok | Outcome::Err(Errno::EEXIST) => {}
                Outcome::Err(err) if e.required => {
                    if !self.quiet {
                        let why = match err {
                            Errno::ENOENT => {
                                "Unknown symbol in module, or unknown parameter (see dmesg)"
                                    .to_string()
                            }
                            other => other.strerror().to_string(),
                        };
                        k.printk(format!(
                            "modprobe: ERROR: could not insert '{}': {why}",
                            k.name(e.module)
                        ));
                    }
                    return Step::Done(Outcome::Err(err));
                }
                _ => {}
            }
        }
        let list = self.list.as_mut().expect("built above");
        while self.idx < list.len() {
            let e = list[self.idx];
            if Self::inkernel(k, e.module) {
                self.idx += 1;
                continue;
            }
            if e.pruned {
                // It left the kernel since the list was built: put its closure back where
                // kmod's full list has it, before it, each module once.
                let mut seen: BTreeSet<ModId> = list[..self.idx].iter().map(|e| e.module).collect();
                let mut sub = Vec::new();
                let ink = |m| Self::inkernel(k, m);
                Self::walk(
                    &k.db,
                    &[(e.module, e.needed_by, e.required)],
                    &ink,
                    &mut sub,
                    &mut seen,
                );
                let again: BTreeSet<ModId> = sub.iter().map(|e| e.module).collect();
                let rest: Vec<Entry> = list[self.idx + 1..]
                    .iter()
                    .filter(|x| !again.contains(&x.module))
                    .copied()
                    .collect();
                list.truncate(self.idx);
                list.extend(sub);
                list.extend(rest);
                continue;
            }
            self.awaiting = true;
            return Step::Call(Box::new(Proc::Load(Load::new(e.module, e.needed_by))));
        }
        Step::Done(Outcome::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ExportSpec, ImportSpec, ModuleSpec};

    #[test]
    fn probe_list_order() {
        let mut a = ModuleSpec::new("a");
        a.exports.push(ExportSpec {
            name: "as".into(),
            namespace: None,
            gpl_only: false,
            crc: None,
        });
        let mut b = ModuleSpec::new("b");
        b.imports.push(ImportSpec {
            name: "as".into(),
            crc: None,
        });
        b.softdeps_pre = vec!["pre".into()];
        b.softdeps_post = vec!["post".into()];
        let db =
            ModuleDb::new(vec![a, b, ModuleSpec::new("pre"), ModuleSpec::new("post")]).unwrap();
        let l = Modprobe::probe_list(&db, &[1], &|_| false);
        let names: Vec<(&str, bool)> = l
            .iter()
            .map(|e| (db.spec(e.module).name.as_str(), e.required))
            .collect();
        assert_eq!(
            names,
            [("pre", false), ("a", true), ("b", true), ("post", false)]
        );
    }
}
