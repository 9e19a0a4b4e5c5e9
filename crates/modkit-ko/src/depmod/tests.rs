//! End-to-end depmod tests on synthetic module trees.

use std::path::{Path, PathBuf};

use super::{run, DepmodOptions};
use crate::testutil::FakeModule;

pub(crate) fn temp_tree(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("modkit-ko-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("lib/modules/4.4.4/kernel")).unwrap();
    d
}

pub(crate) fn put(base: &Path, rel: &str, m: &FakeModule) {
    let p = base.join("lib/modules/4.4.4").join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, m.build()).unwrap();
}

fn depmod(base: &Path) -> (i32, String) {
    let opts = DepmodOptions {
        basedir: Some(base.to_path_buf()),
        kversion: "4.4.4".into(),
        config_paths: Some(Vec::new()),
        ..Default::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&opts, &mut out, &mut err).unwrap();
    (code, String::from_utf8(err).unwrap())
}

/// kmod's testsuite `detect-loop` fixture: the same graph must give kmod's exact report
/// (`testsuite/rootfs-pristine/test-depmod/detect-loop/correct.txt`).
#[test]
fn detects_loops_like_kmod() {
    let base = temp_tree("loop");
    let graph: [(&str, &[&str]); 11] = [
        ("a", &["printB", "printF", "printG"]),
        ("b", &["printC", "printF", "printG"]),
        ("c", &["printA"]),
        ("d", &["printE"]),
        ("e", &["printD"]),
        ("f", &[]),
        ("g", &[]),
        ("h", &["printI"]),
        ("i", &["printJ"]),
        ("j", &["printH", "printK"]),
        ("k", &["printH"]),
    ];
    for (n, imports) in graph {
        let export = format!("print{}", n.to_uppercase());
        let m = FakeModule::new(&format!("mod_loop_{n}"), &[&export], imports);
        put(&base, &format!("kernel/mod-loop-{n}.ko"), &m);
    }
    std::fs::write(base.join("lib/modules/4.4.4/modules.order"), "").unwrap();
    let (code, err) = depmod(&base);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "depmod: ERROR: Cycle detected: mod_loop_d -> mod_loop_e -> mod_loop_d\n\
         depmod: ERROR: Cycle detected: mod_loop_i -> mod_loop_j -> mod_loop_k -> mod_loop_h -> mod_loop_i\n\
         depmod: ERROR: Cycle detected: mod_loop_i -> mod_loop_j -> mod_loop_h -> mod_loop_i\n\
         depmod: ERROR: Cycle detected: mod_loop_c -> mod_loop_a -> mod_loop_b -> mod_loop_c\n\
         depmod: ERROR: Found 9 modules in dependency cycles!\n"
    );
    assert!(!base.join("lib/modules/4.4.4/modules.dep").exists());
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn writes_dependencies_aliases_and_devnames() {
    let base = temp_tree("deps");
    let mut fuse = FakeModule::new("fuse", &["fuse_x"], &["core_y"]);
    fuse.modinfo = vec![
        "alias=devname:fuse".into(),
        "alias=char-major-10-229".into(),
        "softdep=pre: core".into(),
    ];
    put(&base, "kernel/fs/fuse.ko", &fuse);
    put(
        &base,
        "kernel/lib/core.ko",
        &FakeModule::new("core", &["core_y"], &[]),
    );
    let mut top = FakeModule::new("top-mod", &[], &["fuse_x"]);
    top.modinfo = vec!["alias=pci:v-1[a-b]*".into()];
    put(&base, "kernel/top-mod.ko", &top);
    std::fs::write(
        base.join("lib/modules/4.4.4/modules.order"),
        "kernel/top-mod.ko\nkernel/fs/fuse.ko\nkernel/lib/core.ko\n",
    )
    .unwrap();
    let (code, err) = depmod(&base);
    assert_eq!(code, 0, "{err}");
    let read = |f: &str| std::fs::read_to_string(base.join("lib/modules/4.4.4").join(f)).unwrap();
    assert_eq!(
        read("modules.dep"),
        "kernel/top-mod.ko: kernel/fs/fuse.ko kernel/lib/core.ko\nkernel/fs/fuse.ko: kernel/lib/core.ko\nkernel/lib/core.ko:\n"
    );
    assert_eq!(
        read("modules.alias"),
        "# Aliases extracted from modules themselves.\nalias pci:v-1[a-b]* top_mod\nalias devname:fuse fuse\nalias char-major-10-229 fuse\n"
    );
    assert_eq!(
        read("modules.devname"),
        "# Device nodes to trigger on-demand module loading.\nfuse fuse c10:229\n"
    );
    assert_eq!(
        read("modules.softdep"),
        "# Soft dependencies extracted from modules themselves.\nsoftdep fuse pre: core\n"
    );
    assert!(read("modules.symbols").contains("alias symbol:core_y core\n"));
    assert!(err.contains("could not open modules.builtin at"));
    assert_eq!(
        std::fs::metadata(base.join("lib/modules/4.4.4/modules.builtin.bin"))
            .unwrap()
            .len(),
        0
    );
    let idx = crate::index::IndexReader::new(
        std::fs::read(base.join("lib/modules/4.4.4/modules.alias.bin")).unwrap(),
    )
    .unwrap();
    let hits = idx.search_wild("pci:v_1a00");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].value, "top_mod");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn corrupt_module_is_reported_and_kept() {
    let base = temp_tree("corrupt");
    let p = base.join("lib/modules/4.4.4/kernel/bad.ko");
    std::fs::write(
        &p,
        b"\x7fELF\x02\x01\x01garbage-garbage-garbage-garbage-garbage",
    )
    .unwrap();
    std::fs::write(base.join("lib/modules/4.4.4/kernel/empty.ko"), b"").unwrap();
    let (code, err) = depmod(&base);
    assert_eq!(code, 0);
    assert!(err.contains("failed to load symbols from"), "{err}");
    // kmod's text, then modkit's detail on a second line.
    assert!(
        err.contains("bad.ko: Invalid argument\ndepmod: DETAIL: malformed ELF"),
        "{err}"
    );
    assert!(
        err.contains("empty.ko: Invalid argument\ndepmod: DETAIL: file is too short (0 bytes)"),
        "{err}"
    );
    let dep = std::fs::read_to_string(base.join("lib/modules/4.4.4/modules.dep")).unwrap();
    let mut lines: Vec<&str> = dep.lines().collect();
    lines.sort();
    assert_eq!(lines, ["kernel/bad.ko:", "kernel/empty.ko:"]);
    std::fs::remove_dir_all(&base).unwrap();
}

/// A `dir -> ..` link is found by (device, inode) and reported once, where it closes; the
/// module is indexed under its real path only (kmod 30 descends until it runs out of
/// descriptors and indexes it as `kernel/loop/kernel/loop/.../a.ko`).
#[test]
fn symlink_loop_is_reported_once() {
    let base = temp_tree("symcycle");
    put(&base, "kernel/a.ko", &FakeModule::new("a", &[], &[]));
    std::os::unix::fs::symlink("..", base.join("lib/modules/4.4.4/kernel/loop")).unwrap();
    let (code, err) = depmod(&base);
    assert_eq!(code, 0);
    let dir = base.join("lib/modules/4.4.4").display().to_string();
    let loops: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("directory loop"))
        .collect();
    assert_eq!(
        loops,
        [format!(
            "depmod: ERROR: {dir}/kernel/loop: a directory loop: the same directory (device and inode) as {dir}, not descending"
        )],
        "{err}"
    );
    let dep = std::fs::read_to_string(base.join("lib/modules/4.4.4/modules.dep")).unwrap();
    assert_eq!(dep, "kernel/a.ko:\n");
    std::fs::remove_dir_all(&base).unwrap();
}

/// No depth bound: a module 100 directories down is indexed (kmod has none either).
#[test]
fn deep_trees_are_walked_whole() {
    let base = temp_tree("deep");
    let rel = format!("kernel/{}deep.ko", "d/".repeat(100));
    put(&base, &rel, &FakeModule::new("deep", &[], &[]));
    let (code, err) = depmod(&base);
    assert_eq!(code, 0, "{err}");
    let dep = std::fs::read_to_string(base.join("lib/modules/4.4.4/modules.dep")).unwrap();
    assert_eq!(dep, format!("{rel}:\n"));
    std::fs::remove_dir_all(&base).unwrap();
}

/// The extraction cache (`modules.modkit-cache`) never changes the outputs: a rerun, a
/// module whose bytes change in place with the same size and its old mtime, and a module
/// added afterwards all give what a run without the cache gives.
#[test]
fn the_cache_notices_every_change_and_never_changes_outputs() {
    let base = temp_tree("cache");
    let dir = base.join("lib/modules/4.4.4");
    put(
        &base,
        "kernel/core.ko",
        &FakeModule::new("core", &["core_y"], &[]),
    );
    put(
        &base,
        "kernel/user.ko",
        &FakeModule::new("user", &[], &["core_y"]),
    );
    let outputs = |cache: bool| {
        let opts = DepmodOptions {
            basedir: Some(base.clone()),
            kversion: "4.4.4".into(),
            config_paths: Some(Vec::new()),
            no_cache: !cache,
            ..Default::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run(&opts, &mut out, &mut err).unwrap(), 0);
        ["modules.dep", "modules.symbols", "modules.dep.bin"]
            .map(|f| std::fs::read(dir.join(f)).unwrap())
    };
    let plain = outputs(false);
    assert!(
        !dir.join(super::CACHE_FILE).exists(),
        "--no-cache writes none"
    );
    assert_eq!(outputs(true), plain);
    assert!(dir.join(super::CACHE_FILE).exists());
    assert_eq!(outputs(true), plain, "a rerun served by the cache");

    // `user` now imports `core_z` instead of `core_y` (same length), in place, old mtime.
    let p = dir.join("kernel/user.ko");
    let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
    let edited = FakeModule::new("user", &[], &["core_z"]).build();
    assert_eq!(edited.len(), std::fs::metadata(&p).unwrap().len() as usize);
    std::fs::write(&p, edited).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let after_edit = outputs(true);
    assert_eq!(after_edit, outputs(false));
    assert_ne!(after_edit[0], plain[0], "user no longer depends on core");

    // A new module, and a cache file that is garbage: still the same outputs.
    put(
        &base,
        "kernel/late.ko",
        &FakeModule::new("late", &[], &["core_y"]),
    );
    std::fs::write(
        dir.join(super::CACHE_FILE),
        b"modkit depmod cache v2\n\0junk",
    )
    .unwrap();
    assert_eq!(outputs(true), outputs(false));
    assert_eq!(outputs(true), outputs(false));
    let _ = std::fs::remove_dir_all(&base);
}

/// kmod 33+'s `modules.weakdep` (one `weakdep MOD DEP` line per `weakdep=` entry, after the
/// header) and kmod 31+'s `--outdir` (outputs and cache under OUTDIR/lib/modules/VERSION,
/// created, the module directory left untouched).
#[test]
fn weakdeps_and_outdir_follow_kmod_34() {
    let base = temp_tree("weakdep");
    let mut m = FakeModule::new("mod-weakdep", &[], &[]);
    m.modinfo = vec!["weakdep=mod-simple".into(), "weakdep=other".into()];
    put(&base, "kernel/mod-weakdep.ko", &m);
    put(
        &base,
        "kernel/mod-simple.ko",
        &FakeModule::new("mod-simple", &[], &[]),
    );
    let out = base.join("out");
    let opts = DepmodOptions {
        basedir: Some(base.clone()),
        kversion: "4.4.4".into(),
        config_paths: Some(Vec::new()),
        outdir: Some(out.clone()),
        ..Default::default()
    };
    let (mut o, mut e) = (Vec::new(), Vec::new());
    assert_eq!(
        run(&opts, &mut o, &mut e).unwrap(),
        0,
        "{}",
        String::from_utf8_lossy(&e)
    );
    let outdir = out.join("lib/modules/4.4.4");
    assert_eq!(
        std::fs::read_to_string(outdir.join("modules.weakdep")).unwrap(),
        "# Weak dependencies extracted from modules themselves.\n\
         weakdep mod_weakdep mod-simple\nweakdep mod_weakdep other\n"
    );
    assert!(outdir.join("modules.dep.bin").exists());
    assert!(outdir.join(super::CACHE_FILE).exists());
    assert!(!base.join("lib/modules/4.4.4/modules.dep").exists());
    // `-n` prints the section between softdep and symbols, as kmod 34 does.
    let opts = DepmodOptions {
        dry_run: true,
        outdir: None,
        ..opts
    };
    let (mut o, mut e) = (Vec::new(), Vec::new());
    assert_eq!(run(&opts, &mut o, &mut e).unwrap(), 0);
    let text = String::from_utf8(o).unwrap();
    let soft = text.find("# Soft dependencies").unwrap();
    let weak = text.find("# Weak dependencies").unwrap();
    let syms = text.find("# Aliases for symbols").unwrap();
    assert!(soft < weak && weak < syms);
    let _ = std::fs::remove_dir_all(&base);
}

/// Issue 11: modkit plugins (`.so` with a modkit vermagic) are indexed by the same code
/// into the same files: modules.dep from `depends=`, modules.alias from `alias=`.
#[test]
fn indexes_modkit_plugins() {
    let base = temp_tree("plugins");
    let plugin = |name: &str, extra: &[&str]| {
        let mut m = FakeModule::new(name, &[], &[]);
        m.modinfo = vec!["vermagic=modkit-abi-1 rustc_x target panic=unwind".into()];
        m.modinfo.extend(extra.iter().map(|s| s.to_string()));
        m
    };
    put(
        &base,
        "plugins/mathcore.so",
        &plugin("mathcore", &["depends="]),
    );
    put(
        &base,
        "plugins/stats.so",
        &plugin("stats", &["alias=calc:*", "depends=mathcore"]),
    );
    let (code, err) = depmod(&base);
    assert_eq!(code, 0, "{err}");
    let read = |f: &str| std::fs::read_to_string(base.join("lib/modules/4.4.4").join(f)).unwrap();
    let dep = read("modules.dep");
    assert!(
        dep.contains("plugins/stats.so: plugins/mathcore.so\n"),
        "{dep}"
    );
    assert!(dep.contains("plugins/mathcore.so:\n"), "{dep}");
    assert!(read("modules.alias").contains("alias calc:* stats\n"));
    std::fs::remove_dir_all(&base).unwrap();
}

/// Issue 11: a plugin's dependencies are computed from its `import=` entries against the
/// other plugins' `export=` entries (as from a module's undefined symbols), without a
/// `depends=`; a declared `depends=` still counts.
#[test]
fn plugin_dependencies_come_from_imports() {
    let base = temp_tree("plugin-imports");
    let plugin = |name: &str, extra: &[&str]| {
        let mut m = FakeModule::new(name, &[], &[]);
        m.modinfo = vec!["vermagic=modkit-abi-1 rustc_x target panic=unwind".into()];
        m.modinfo.extend(extra.iter().map(|s| s.to_string()));
        m
    };
    put(
        &base,
        "plugins/mathcore.so",
        &plugin("mathcore", &["export=add", "export=scale", "depends="]),
    );
    put(
        &base,
        "plugins/stats.so",
        &plugin("stats", &["export=weighted", "import=add", "import=scale"]),
    );
    put(
        &base,
        "plugins/report.so",
        &plugin("report", &["import=weighted", "depends=extra"]),
    );
    put(&base, "plugins/extra.so", &plugin("extra", &[]));
    let (code, err) = depmod(&base);
    assert_eq!(code, 0, "{err}");
    let read = |f: &str| std::fs::read_to_string(base.join("lib/modules/4.4.4").join(f)).unwrap();
    let dep = read("modules.dep");
    assert!(
        dep.contains("plugins/stats.so: plugins/mathcore.so\n"),
        "{dep}"
    );
    let report = dep
        .lines()
        .find(|l| l.starts_with("plugins/report.so:"))
        .unwrap();
    for d in [
        "plugins/stats.so",
        "plugins/mathcore.so",
        "plugins/extra.so",
    ] {
        assert!(report.contains(d), "{report}");
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// A base directory, output directory and version that are not UTF-8 are used byte for
/// byte: the tree is found, the outputs are written under `--outdir`, and messages name
/// the directories with their bytes.
#[test]
fn non_utf8_base_outdir_and_version_are_bytes() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    // The byte 0xE9 (Latin-1 é) in the base directory's name.
    let mut name = b"modkit-ko-b\xe9se-".to_vec();
    name.extend_from_slice(std::process::id().to_string().as_bytes());
    let base = std::env::temp_dir().join(OsStr::from_bytes(&name));
    let _ = std::fs::remove_dir_all(&base);
    let ver = OsStr::from_bytes(b"4.4.4-\xff");
    let moddir = base.join("lib/modules").join(ver);
    std::fs::create_dir_all(moddir.join("kernel")).unwrap();
    std::fs::write(
        moddir.join("kernel/a.ko"),
        FakeModule::new("a", &["a_sym"], &[]).build(),
    )
    .unwrap();
    std::fs::write(
        moddir.join("kernel/b.ko"),
        FakeModule::new("b", &[], &["a_sym"]).build(),
    )
    .unwrap();
    let out = base.join(OsStr::from_bytes(b"out-\xe9"));
    let opts = DepmodOptions {
        basedir: Some(base.clone()),
        kversion: crate::bytestr::from_bytes(b"4.4.4-\xff"),
        config_paths: Some(Vec::new()),
        outdir: Some(out.clone()),
        ..Default::default()
    };
    let (mut o, mut e) = (Vec::new(), Vec::new());
    assert_eq!(run(&opts, &mut o, &mut e).unwrap(), 0);
    // No modules.order (nor modules.builtin…): kmod's warnings, naming the module
    // directory by its bytes.
    let mut want = b"depmod: WARNING: could not open modules.order at ".to_vec();
    want.extend_from_slice(moddir.as_os_str().as_bytes());
    want.extend_from_slice(b": No such file or directory\n");
    assert!(e.starts_with(&want), "{}", String::from_utf8_lossy(&e));
    let dep = std::fs::read(out.join("lib/modules").join(ver).join("modules.dep")).unwrap();
    assert_eq!(dep, b"kernel/b.ko: kernel/a.ko\nkernel/a.ko:\n");
    assert!(!moddir.join("modules.dep").exists());
    // In place (no --outdir).
    let opts = DepmodOptions {
        outdir: None,
        ..opts
    };
    assert_eq!(run(&opts, &mut Vec::new(), &mut Vec::new()).unwrap(), 0);
    assert_eq!(std::fs::read(moddir.join("modules.dep")).unwrap(), dep);
    std::fs::remove_dir_all(&base).unwrap();
}
