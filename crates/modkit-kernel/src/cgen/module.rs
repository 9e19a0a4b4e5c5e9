//! One scenario module as C: `NAME-main.c` and `NAME-syms.c`.

use std::fmt::Write as _;

use modkit_core::ModuleSpec;

use super::actions::{Body, Gen, Place};
use super::text::{c_comment, c_str, percent};
use super::{Ctx, Unsupported};

/// The two C files of a module.
#[derive(Debug, Clone)]
pub(crate) struct ModuleFiles {
    /// `NAME-main.c`.
    pub main: String,
    /// `NAME-syms.c`.
    pub syms: String,
}

/// Generates module `m` of the scenario.
pub(crate) fn generate(ctx: &Ctx, m: usize) -> Result<ModuleFiles, Unsupported> {
    let spec = ctx.spec(m);
    let steps = ctx.sc.steps.get(m).map(Vec::as_slice).unwrap_or(&[]);
    let mut g = Gen::new(ctx, m);
    for s in steps {
        g.collect_registrations(&s.run);
        if let Some(u) = &s.undo {
            g.collect_registrations(u);
        }
    }
    if !spec.has_exit && (!g.fs.is_empty() || !g.misc.is_empty()) {
        if let Some(ev) = ctx.sc.events.iter().find(|e| {
            matches!(&e.kind, modkit_sim::scenario::EventKind::Rmmod { name, force: true, .. } if *name == spec.name)
        }) {
            return Err(Unsupported::new(
                "forced unload of a module without exit that registers fs: or misc:",
                format!("module `{}`, event `{}`", spec.name, ev.id),
                "the kernel would keep pointers into the freed module and crash; modkit_rt cannot clean up without an exit function",
            ));
        }
    }

    // Step functions.
    let mut bodies = String::new();
    let mut has_undo = Vec::new();
    for (k, s) in steps.iter().enumerate() {
        let place = Place {
            text: format!("module `{}`, step `{}`", spec.name, s.name),
        };
        bodies.push_str(&g.function(&format!("modkit_step_{k}"), &s.run, Body::Init, &place)?);
        bodies.push('\n');
        match &s.undo {
            Some(u) if !u.is_empty() => {
                let place = Place {
                    text: format!("module `{}`, undo of step `{}`", spec.name, s.name),
                };
                bodies.push_str(&g.function(&format!("modkit_undo_{k}"), u, Body::Undo, &place)?);
                bodies.push('\n');
                has_undo.push(Some(true));
            }
            Some(_) => has_undo.push(Some(false)),
            None => has_undo.push(None),
        }
    }

    let mut c = String::new();
    header(&mut c, ctx, spec, "");
    includes(&mut c, &g);
    c.push('\n');
    c.push_str(&modinfo(ctx, spec));
    c.push_str("\n#define MODKIT_STOP 1 /* a step's early success: later steps are skipped */\n");
    if !steps.is_empty() {
        c.push_str(
            "static int modkit_init_ret; /* what the init returns after MODKIT_STOP: 0, or N for `ret = N` */\n",
        );
    }
    c.push('\n');

    // Imports: referenced so that the loader must resolve them.
    if !spec.imports.is_empty() {
        c.push_str(
            "/*\n * Imports. Each is referenced (the table is kept) so that the loader resolves it;\n * use_symbol calls it. The asm names keep these declarations apart from any\n * prototype the kernel's headers give the same name.\n */\n",
        );
        for (i, imp) in spec.imports.iter().enumerate() {
            let _ = writeln!(
                c,
                "extern void modkit_imp_{i}(void) __asm__({});",
                c_str(&imp.name)
            );
        }
        c.push_str("static void (*const modkit_imports[])(void) __used = {\n");
        for i in 0..spec.imports.len() {
            let _ = writeln!(c, "\tmodkit_imp_{i},");
        }
        c.push_str("};\n\n");
    }
    for (s, i) in &g.own_used {
        let _ = writeln!(
            c,
            "extern void modkit_own_{i}(void) __asm__({}); /* in {}-syms.c */",
            c_str(s),
            spec.name
        );
    }
    if !g.own_used.is_empty() {
        c.push('\n');
    }

    helpers(&mut c, &g);
    for f in &g.funcs {
        c.push_str(f);
        c.push('\n');
    }
    c.push_str(&bodies);

    // Init table.
    let n = steps.len();
    let settle = g.uses.spawn || !g.fs.is_empty() || !g.misc.is_empty();
    if n > 0 {
        c.push_str("static int modkit_progress; /* steps completed */\n\n");
        c.push_str("/* Undoes the first @done steps, last first. */\nstatic void modkit_unwind(int done)\n{\n");
        for k in (0..n).rev() {
            match has_undo[k] {
                Some(true) => {
                    let _ = writeln!(
                        c,
                        "\tif (done > {k})\n\t\tmodkit_undo_{k}(); /* {} */",
                        c_comment(&steps[k].name)
                    );
                }
                Some(false) => {
                    let _ = writeln!(
                        c,
                        "\t/* step {k} ({}): undo = true, nothing to run */",
                        c_comment(&steps[k].name)
                    );
                }
                None => {}
            }
        }
        c.push_str("}\n\n");
        c.push_str("static int modkit_fail(int done, int ret)\n{\n\tmodkit_unwind(done);\n");
        if settle {
            c.push_str("\tmodkit_settle();\n");
        }
        c.push_str("\treturn ret;\n}\n\n");
    }
    c.push_str("static int __init modkit_init(void)\n{\n");
    if n > 0 {
        c.push_str("\tint ret;\n\n");
    }
    c.push_str("\tprintk(KERN_INFO \"modkit-trace: init %s\\n\", KBUILD_MODNAME);\n");
    if g.uses.spawn {
        c.push_str(&wq_alloc(&g));
    }
    for (k, s) in steps.iter().enumerate() {
        let _ = write!(
            c,
            "\n\tret = modkit_step_{k}();\n\tprintk(KERN_INFO \"modkit-trace: step %s %s %d\\n\", KBUILD_MODNAME, {}, ret);\n\tif (ret == MODKIT_STOP)\n\t\treturn modkit_init_ret;\n\tif (ret)\n\t\treturn modkit_fail({k}, ret);\n\tmodkit_progress = {};\n",
            c_str(&percent(&s.name)),
            k + 1
        );
    }
    c.push_str("\treturn 0;\n}\nmodule_init(modkit_init);\n");
    if spec.has_exit {
        c.push_str("\nstatic void __exit modkit_exit(void)\n{\n\tprintk(KERN_INFO \"modkit-trace: exit %s\\n\", KBUILD_MODNAME);\n");
        if n > 0 {
            c.push_str("\tmodkit_unwind(modkit_progress);\n");
        }
        if settle {
            c.push_str("\tmodkit_settle();\n");
        }
        c.push_str("}\nmodule_exit(modkit_exit);\n");
    } else {
        c.push_str("/* has_exit = false: no module_exit, the module cannot be unloaded unless forced. */\n");
    }

    Ok(ModuleFiles {
        main: c,
        syms: syms_file(ctx, m),
    })
}

/// The main file of the stale build of module `m` (for depmod only): same modinfo,
/// imports only the `depends` modules' markers.
pub(crate) fn stale_main(ctx: &Ctx, m: usize) -> String {
    let spec = ctx.spec(m);
    let mut c = String::new();
    header(
        &mut c,
        ctx,
        spec,
        " * STALE BUILD, for depmod only: it imports just a marker of each module that\n * `depends` names, so that modules.dep says what the scenario's stale modules.dep says.\n",
    );
    c.push_str("#include <linux/module.h>\n#include <linux/init.h>\n\n");
    c.push_str(&modinfo(ctx, spec));
    let deps: Vec<&str> = spec
        .depends_override
        .iter()
        .flatten()
        .filter_map(|d| ctx.sc.db.id(d))
        .filter(|&j| ctx.dep_exporters.contains(&j) && j != m)
        .map(|j| ctx.spec(j).name.as_str())
        .collect();
    if !deps.is_empty() {
        c.push('\n');
        for (i, d) in deps.iter().enumerate() {
            let _ = writeln!(
                c,
                "extern void modkit_dep_{i}(void) __asm__(\"__modkit_dep_{d}\");"
            );
        }
        c.push_str("static void (*const modkit_deps[])(void) __used = {\n");
        for i in 0..deps.len() {
            let _ = writeln!(c, "\tmodkit_dep_{i},");
        }
        c.push_str("};\n");
    }
    c.push_str(
        "\nstatic int __init modkit_init(void)\n{\n\treturn 0;\n}\nmodule_init(modkit_init);\n",
    );
    if spec.has_exit {
        c.push_str("\nstatic void __exit modkit_exit(void)\n{\n}\nmodule_exit(modkit_exit);\n");
    }
    c
}

fn header(c: &mut String, ctx: &Ctx, spec: &ModuleSpec, extra: &str) {
    c.push_str("// SPDX-License-Identifier: GPL-2.0\n/*\n");
    let _ = writeln!(
        c,
        " * {}: generated by modkit for {}. Do not edit.",
        spec.name,
        c_comment(&ctx.target.kver)
    );
    if let Some(n) = &ctx.sc.name {
        let _ = writeln!(
            c,
            " * Scenario: {} ({})",
            c_comment(n),
            c_comment(&ctx.sc.file)
        );
    }
    c.push_str(extra);
    c.push_str(" */\n");
}

fn includes(c: &mut String, g: &Gen) {
    let mut inc = vec![
        "linux/module.h",
        "linux/init.h",
        "linux/kernel.h",
        "linux/errno.h",
        "linux/printk.h",
    ];
    if g.uses.request {
        inc.push("linux/kmod.h");
    }
    if g.uses.sleep {
        inc.extend(["linux/delay.h", "linux/jiffies.h", "linux/sched.h"]);
    }
    if g.uses.spawn {
        inc.extend(["linux/slab.h", "linux/workqueue.h"]);
    }
    if !g.fs.is_empty() || !g.misc.is_empty() {
        inc.push("linux/mutex.h");
    }
    if !g.fs.is_empty() {
        inc.extend(["linux/fs.h", "linux/fs_context.h"]);
    }
    if !g.misc.is_empty() {
        inc.extend(["linux/fs.h", "linux/miscdevice.h"]);
    }
    if g.uses.debugfs {
        inc.extend(["linux/debugfs.h", "linux/dcache.h", "linux/err.h"]);
    }
    let mut seen = std::collections::BTreeSet::new();
    for i in inc {
        if seen.insert(i) {
            let _ = writeln!(c, "#include <{i}>");
        }
    }
    if g.uses.rt {
        c.push_str("#include \"modkit_rt.h\"\n");
    }
}

/// MODULE_LICENSE, aliases, softdeps, imported namespaces.
pub(crate) fn modinfo(ctx: &Ctx, spec: &ModuleSpec) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "MODULE_LICENSE({});", c_str(&spec.license));
    // modpost adds `intree` only to modules built in the kernel tree; a module the
    // scenario does not call out of tree says so itself, so the loader does not taint (O).
    if !spec.provenance.out_of_tree {
        let _ = writeln!(c, "MODULE_INFO(intree, \"Y\");");
    }
    if spec.provenance.staging {
        let _ = writeln!(c, "MODULE_INFO(staging, \"Y\");");
    }
    let _ = writeln!(
        c,
        "MODULE_DESCRIPTION({});",
        c_str(&format!("modkit scenario module {}", spec.name))
    );
    for a in &spec.aliases {
        let _ = writeln!(c, "MODULE_ALIAS({});", c_str(a));
    }
    if !spec.softdeps_pre.is_empty() || !spec.softdeps_post.is_empty() {
        let mut s = String::new();
        if !spec.softdeps_pre.is_empty() {
            s.push_str("pre: ");
            s.push_str(&spec.softdeps_pre.join(" "));
        }
        if !spec.softdeps_post.is_empty() {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str("post: ");
            s.push_str(&spec.softdeps_post.join(" "));
        }
        let _ = writeln!(c, "MODULE_SOFTDEP({});", c_str(&s));
    }
    for ns in &spec.import_namespaces {
        if ctx.module_ns_import_after_build(ns) {
            // Added to the built .ko's .modinfo (Generated::modinfo_after_build).
            continue;
        }
        if ctx.ns_literals() {
            let _ = writeln!(c, "MODULE_IMPORT_NS({});", c_str(ns));
        } else {
            let _ = writeln!(c, "MODULE_IMPORT_NS({ns});");
        }
    }
    c
}

fn wq_alloc(g: &Gen) -> String {
    if g.gpl {
        "\tmodkit_wq = alloc_workqueue(\"modkit_%s\", WQ_UNBOUND, 0, KBUILD_MODNAME);\n\tif (!modkit_wq)\n\t\treturn -ENOMEM;\n".into()
    } else {
        "\tmodkit_wq = modkit_rt_alloc_wq(KBUILD_MODNAME);\n\tif (!modkit_wq)\n\t\treturn -ENOMEM;\n".into()
    }
}

/// Static helpers and objects the module's actions use.
fn helpers(c: &mut String, g: &Gen) {
    if g.uses.sleep {
        c.push_str(SLEEP_HELPER);
        c.push('\n');
    }
    if g.uses.spawn {
        c.push_str(
            "/* Work items run on the module's own workqueue, destroyed (drained) when the\n * module goes, so that no work item outlives the code it runs. */\nstatic struct workqueue_struct *modkit_wq;\n\n",
        );
        c.push_str(
            "static int modkit_spawn(work_func_t fn)\n{\n\tstruct work_struct *work = kmalloc(sizeof(*work), GFP_KERNEL);\n\n\tif (!work)\n\t\treturn -ENOMEM;\n\tINIT_WORK(work, fn);\n\tqueue_work(modkit_wq, work);\n\treturn 0;\n}\n\n",
        );
    }
    if !g.fs.is_empty() || !g.misc.is_empty() {
        c.push_str("static DEFINE_MUTEX(modkit_reg_lock);\n\n");
    }
    if !g.fs.is_empty() {
        c.push_str(
            "/* Never mounted: a mount attempt fails cleanly. */\nstatic int modkit_fs_init_fs_context(struct fs_context *fc)\n{\n\treturn -ENODEV;\n}\n\n",
        );
        for (name, slot) in &g.fs {
            let _ = write!(
                c,
                "static struct file_system_type modkit_fs_{slot} = {{\n\t.owner = THIS_MODULE,\n\t.name = {},\n\t.init_fs_context = modkit_fs_init_fs_context,\n\t.kill_sb = kill_anon_super,\n}};\nstatic bool modkit_fs_{slot}_on;\n\n",
                c_str(name)
            );
        }
        c.push_str(FS_HELPERS);
        c.push('\n');
    }
    if !g.misc.is_empty() {
        c.push_str(
            "/* misc_open() replaces the file's operations with these: an open file pins the module. */\nstatic const struct file_operations modkit_misc_fops = {\n\t.owner = THIS_MODULE,\n\t.llseek = noop_llseek,\n};\n\n",
        );
        for (name, slot) in &g.misc {
            let _ = write!(
                c,
                "static struct miscdevice modkit_misc_{slot} = {{\n\t.minor = MISC_DYNAMIC_MINOR,\n\t.name = {},\n\t.fops = &modkit_misc_fops,\n}};\nstatic bool modkit_misc_{slot}_on;\n\n",
                c_str(name)
            );
        }
        c.push_str(MISC_HELPERS);
        c.push('\n');
    }
    if g.uses.debugfs {
        c.push_str(DEBUGFS_HELPERS);
        c.push('\n');
    }
    if g.uses.spawn || !g.fs.is_empty() || !g.misc.is_empty() {
        c.push_str("/* After the undos, at exit or on a failed init. */\nstatic void modkit_settle(void)\n{\n");
        if g.uses.spawn {
            c.push_str("\tif (modkit_wq) {\n");
            if g.gpl {
                c.push_str("\t\tdestroy_workqueue(modkit_wq);\n");
            } else {
                c.push_str("\t\tmodkit_rt_destroy_wq(modkit_wq);\n");
            }
            c.push_str("\t\tmodkit_wq = NULL;\n\t}\n");
        }
        for (name, slot) in &g.fs {
            let _ = write!(
                c,
                "\tif (modkit_fs_{slot}_on) {{\n\t\tpr_warn(\"modkit: %s: fs:%s still registered as the module goes; unregistered, or the kernel would keep a pointer into freed memory\\n\",\n\t\t\tKBUILD_MODNAME, {});\n\t\tunregister_filesystem(&modkit_fs_{slot});\n\t\tmodkit_fs_{slot}_on = false;\n\t}}\n",
                c_str(name)
            );
        }
        for (name, slot) in &g.misc {
            let _ = write!(
                c,
                "\tif (modkit_misc_{slot}_on) {{\n\t\tpr_warn(\"modkit: %s: misc:%s still registered as the module goes; deregistered, or the kernel would keep a pointer into freed memory\\n\",\n\t\t\tKBUILD_MODNAME, {});\n\t\tmisc_deregister(&modkit_misc_{slot});\n\t\tmodkit_misc_{slot}_on = false;\n\t}}\n",
                c_str(name)
            );
        }
        c.push_str("}\n\n");
    }
}

const SLEEP_HELPER: &str = "\
/* Sleeps @ns without counting as a hung task (long scenario sleeps are fine). */
static void modkit_sleep_ns(u64 ns)
{
	unsigned long timeout;

	if (ns < NSEC_PER_MSEC) {
		unsigned long us = max_t(unsigned long, ns / NSEC_PER_USEC, 1);

		usleep_range(us, us);
		return;
	}
	timeout = msecs_to_jiffies((unsigned int)min_t(u64, DIV_ROUND_UP_ULL(ns, NSEC_PER_MSEC), UINT_MAX)) + 1;
	while (timeout)
		timeout = schedule_timeout_idle(timeout);
}
";

const FS_HELPERS: &str = "\
static int __maybe_unused modkit_fs_register(struct file_system_type *fs, bool *on)
{
	int ret;

	mutex_lock(&modkit_reg_lock);
	ret = register_filesystem(fs);
	if (!ret)
		*on = true;
	mutex_unlock(&modkit_reg_lock);
	return ret;
}

static int __maybe_unused modkit_fs_unregister(struct file_system_type *fs, bool *on)
{
	int ret = -ENOENT;

	mutex_lock(&modkit_reg_lock);
	if (*on) {
		ret = unregister_filesystem(fs);
		if (!ret)
			*on = false;
	}
	mutex_unlock(&modkit_reg_lock);
	return ret;
}
";

const MISC_HELPERS: &str = "\
static int __maybe_unused modkit_misc_register(struct miscdevice *misc, bool *on)
{
	int ret = -EEXIST;

	mutex_lock(&modkit_reg_lock);
	if (!*on) {
		ret = misc_register(misc);
		if (!ret)
			*on = true;
	}
	mutex_unlock(&modkit_reg_lock);
	return ret;
}

static int __maybe_unused modkit_misc_unregister(struct miscdevice *misc, bool *on)
{
	int ret = -ENOENT;

	mutex_lock(&modkit_reg_lock);
	if (*on) {
		misc_deregister(misc);
		*on = false;
		ret = 0;
	}
	mutex_unlock(&modkit_reg_lock);
	return ret;
}
";

const DEBUGFS_HELPERS: &str = "\
static int __maybe_unused modkit_debugfs_create(const char *name)
{
	struct dentry *d = debugfs_create_dir(name, NULL);

	return IS_ERR(d) ? PTR_ERR(d) : 0;
}

static int __maybe_unused modkit_debugfs_remove(const char *name)
{
	struct dentry *d = debugfs_lookup(name, NULL);

	if (!d)
		return -ENOENT;
	debugfs_remove(d);
	dput(d);
	return 0;
}
";

/// `NAME-syms.c`: the exported functions (and the stale-depends marker).
fn syms_file(ctx: &Ctx, m: usize) -> String {
    let spec = ctx.spec(m);
    let mut c = String::new();
    c.push_str("// SPDX-License-Identifier: GPL-2.0\n/*\n");
    let _ = writeln!(
        c,
        " * {}'s exports: generated by modkit. Only <linux/export.h> is included, so that a\n * scenario symbol may carry the name of anything the kernel's headers declare.\n */",
        spec.name
    );
    c.push_str("#include <linux/export.h>\n#include <linux/compiler.h>\n");
    let marker = ctx.dep_exporters.contains(&m);
    if spec.exports.is_empty() && !marker {
        return c;
    }
    c.push('\n');
    if !spec.exports.is_empty() {
        c.push_str("static unsigned long modkit_syms_calls;\n\n");
    }
    for e in &spec.exports {
        export_fn(
            &mut c,
            ctx,
            &e.name,
            e.gpl_only,
            e.namespace.as_deref(),
            "modkit_syms_calls",
        );
    }
    if marker {
        let _ = write!(
            c,
            "/* Marker for the stale builds of modules whose out-of-date modules.dep names {0}. */\nvoid __modkit_dep_{0}(void);\nvoid __modkit_dep_{0}(void)\n{{\n}}\nEXPORT_SYMBOL(__modkit_dep_{0});\n",
            spec.name
        );
    }
    c
}

/// A `void SYM(void)` with a side effect, and its export macro.
pub(crate) fn export_fn(
    c: &mut String,
    ctx: &Ctx,
    sym: &str,
    gpl: bool,
    ns: Option<&str>,
    counter: &str,
) {
    let _ = write!(
        c,
        "void {sym}(void);\nnoinline void {sym}(void)\n{{\n\tWRITE_ONCE({counter}, READ_ONCE({counter}) + 1);\n}}\n"
    );
    let g = if gpl { "_GPL" } else { "" };
    match ns {
        Some(ns) => {
            let ns = if ctx.ns_literals() {
                c_str(ns)
            } else {
                ns.to_string()
            };
            let _ = writeln!(c, "EXPORT_SYMBOL_NS{g}({sym}, {ns});\n");
        }
        None => {
            let _ = writeln!(c, "EXPORT_SYMBOL{g}({sym});\n");
        }
    }
}
