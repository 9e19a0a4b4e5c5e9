//! depmod against the system's kmod 30 (`/sbin/depmod`), byte for byte, on synthetic
//! trees holding what kmod handles as plain C strings and `fstatat` results: non-UTF-8
//! file names, symlinked module files and directories, a dangling link and a FIFO.
//! Skipped, with the reason printed, where kmod 30 is not installed (CI installs it).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::tests::{put, temp_tree};
use super::{run, DepmodOptions};
use crate::testutil::FakeModule;

/// kmod 30's depmod, if installed.
pub(crate) fn kmod30_depmod() -> Option<PathBuf> {
    for p in [
        "/sbin/depmod",
        "/usr/sbin/depmod",
        "/usr/bin/depmod",
        "/bin/depmod",
    ] {
        let Ok(out) = Command::new(p).arg("--version").output() else {
            continue;
        };
        if String::from_utf8_lossy(&out.stdout).starts_with("kmod version 30\n") {
            return Some(PathBuf::from(p));
        }
    }
    None
}

/// [`kmod30_depmod`], saying why the test is skipped when it is not installed.
fn kmod30_or_skip() -> Option<PathBuf> {
    let k = kmod30_depmod();
    if k.is_none() {
        println!("skipped: kmod 30's depmod is not installed (/sbin/depmod)");
    }
    k
}

const OUTPUTS: [&str; 10] = [
    "modules.dep",
    "modules.dep.bin",
    "modules.alias",
    "modules.alias.bin",
    "modules.softdep",
    "modules.symbols",
    "modules.symbols.bin",
    "modules.builtin.bin",
    "modules.builtin.alias.bin",
    "modules.devname",
];

/// A directory's descriptor number in kmod's messages (`fstatat(5, ...)`) depends on the
/// process's open descriptors; the test process has others open, so numbers are masked.
fn mask_fds(b: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(b);
    let mut out = String::new();
    let mut rest = s.as_ref();
    while let Some(i) = rest.find("at(") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        if n > 0 {
            out.push('N');
            rest = &rest[n..];
        }
    }
    out.push_str(rest);
    out.into_bytes()
}

/// Runs kmod's depmod and modkit's on `base` with `args`; compares exit status, stdout,
/// stderr and every output file.
fn compare(kmod: &Path, base: &Path, args: &[&str]) {
    let dir = base.join("lib/modules/4.4.4");
    let clean = || {
        for f in OUTPUTS
            .iter()
            .chain(["modules.weakdep", super::CACHE_FILE].iter())
        {
            let _ = std::fs::remove_file(dir.join(f));
        }
    };
    clean();
    let k = Command::new(kmod)
        .arg("-b")
        .arg(base)
        .args(args)
        .arg("4.4.4")
        .output()
        .unwrap();
    let kfiles: Vec<Option<Vec<u8>>> = OUTPUTS
        .iter()
        .map(|f| std::fs::read(dir.join(f)).ok())
        .collect();
    clean();
    let opts = DepmodOptions {
        basedir: Some(base.to_path_buf()),
        kversion: "4.4.4".into(),
        config_paths: Some(Vec::new()),
        dry_run: args.contains(&"-n"),
        ..Default::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&opts, &mut out, &mut err).unwrap();
    // modules.weakdep is kmod 33+'s; kmod 30's -n output has no such section.
    let out = String::from_utf8_lossy(&out).to_string();
    let kout = String::from_utf8_lossy(&k.stdout).to_string();
    let out: String = out
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("# Weak dependencies") && !l.starts_with("weakdep "))
        .collect();
    assert_eq!(k.status.code(), Some(code), "exit status, {args:?}");
    assert_eq!(kout, out, "stdout, {args:?}");
    assert_eq!(
        String::from_utf8_lossy(&mask_fds(&k.stderr)),
        String::from_utf8_lossy(&mask_fds(&err)),
        "stderr, {args:?}"
    );
    for (f, kf) in OUTPUTS.iter().zip(kfiles) {
        let mf = std::fs::read(dir.join(f)).ok();
        assert!(
            kf == mf,
            "{f} differs ({args:?}): kmod {kf:?}\nmodkit {mf:?}"
        );
    }
}

#[test]
fn non_utf8_names_and_symlinks_like_kmod_30() {
    let Some(kmod) = kmod30_or_skip() else {
        return;
    };
    let base = temp_tree("vs-kmod-bytes");
    let dir = base.join("lib/modules/4.4.4");
    let cafe = std::ffi::OsStr::from_bytes(b"kernel/caf\xe9.ko");
    let mut m = FakeModule::new("cafe", &["cafe_sym"], &[]);
    m.modinfo = vec!["alias=caf-alias".into(), "softdep=pre: user".into()];
    std::fs::write(dir.join(cafe), m.build()).unwrap();
    put(
        &base,
        "kernel/user.ko",
        &FakeModule::new("user", &[], &["cafe_sym"]),
    );
    // A directory named in Latin-1 too, holding a module that needs the one above.
    let sub = dir.join(std::ffi::OsStr::from_bytes(b"kernel/r\xe9seau"));
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(
        sub.join("net-x.ko"),
        FakeModule::new("net_x", &[], &["cafe_sym"]).build(),
    )
    .unwrap();
    // Symlinks: to a module file, to a directory (its module is found twice: kept once,
    // by readdir order as in kmod), a dangling one and a FIFO.
    put(&base, "other/real.ko", &FakeModule::new("real", &[], &[]));
    std::os::unix::fs::symlink("../other/real.ko", dir.join("kernel/linked.ko")).unwrap();
    std::os::unix::fs::symlink("../other", dir.join("kernel/linkdir")).unwrap();
    std::os::unix::fs::symlink("nowhere.ko", dir.join("kernel/dangling.ko")).unwrap();
    let fifo = Command::new("mkfifo").arg(dir.join("kernel/fifo")).status();
    assert!(fifo.is_ok_and(|s| s.success()), "mkfifo");
    std::fs::write(
        dir.join("modules.order"),
        b"kernel/user.ko\nkernel/caf\xe9.ko\nkernel/r\xe9seau/net-x.ko\n",
    )
    .unwrap();
    compare(&kmod, &base, &[]);
    compare(&kmod, &base, &["-n"]);
    // modkit's outputs name the module as the file does.
    run(
        &DepmodOptions {
            basedir: Some(base.clone()),
            kversion: "4.4.4".into(),
            config_paths: Some(Vec::new()),
            ..Default::default()
        },
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .unwrap();
    let dep = std::fs::read(dir.join("modules.dep")).unwrap();
    assert!(
        dep.starts_with(b"kernel/user.ko: kernel/caf\xe9.ko\nkernel/caf\xe9.ko:\n"),
        "{}",
        String::from_utf8_lossy(&dep)
    );
    std::fs::remove_dir_all(&base).unwrap();
}

/// modinfo on a module whose file name is not UTF-8, by name, alias and path, against
/// kmod 30's modinfo (both reading the indexes kmod's depmod wrote).
#[test]
fn modinfo_of_a_non_utf8_name_like_kmod_30() {
    let Some(kmod) = kmod30_or_skip() else {
        return;
    };
    let modinfo = kmod.with_file_name("modinfo");
    if !modinfo.exists() {
        println!("skipped: no {} beside kmod's depmod", modinfo.display());
        return;
    }
    let base = temp_tree("vs-kmod-modinfo");
    let dir = base.join("lib/modules/4.4.4");
    let mut m = FakeModule::new("cafe", &["cafe_sym"], &[]);
    m.modinfo = vec!["alias=caf-alias".into(), "license=GPL".into()];
    std::fs::write(
        dir.join(std::ffi::OsStr::from_bytes(b"kernel/caf\xe9.ko")),
        m.build(),
    )
    .unwrap();
    let st = Command::new(&kmod)
        .arg("-b")
        .arg(&base)
        .arg("4.4.4")
        .status()
        .unwrap();
    assert!(st.success());
    let file = [dir.as_os_str().as_bytes(), b"/kernel/caf\xe9.ko"].concat();
    let cases: [(&[&[u8]], bool); 4] = [
        (&[b"caf\xe9"], false),
        (&[b"caf-alias"], false),
        (&[b"-F", b"filename", b"caf\xe9"], false),
        (&[&file], true),
    ];
    for (args, is_file) in cases {
        let mut k = Command::new(&modinfo);
        if !is_file {
            k.arg("-b").arg(&base).arg("-k").arg("4.4.4");
        }
        let k = k
            .args(args.iter().map(|a| std::ffi::OsStr::from_bytes(a)))
            .output()
            .unwrap();
        let mut field = None;
        let mut names = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if *a == b"-F" {
                field = it.next().map(|f| crate::bytestr::from_bytes(f));
            } else {
                names.push(crate::bytestr::from_bytes(a));
            }
        }
        let opts = crate::modinfo::ModinfoOptions {
            field,
            dirname: dir.display().to_string(),
            ..Default::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = crate::modinfo::run(
            &opts,
            &names,
            &mut crate::bytestr::Raw(&mut out),
            &mut crate::bytestr::Raw(&mut err),
        );
        assert_eq!(k.status.code(), Some(code), "{args:?}");
        assert_eq!(k.stdout, out, "{args:?}: {}", String::from_utf8_lossy(&out));
        assert_eq!(k.stderr, err, "{args:?}");
        assert!(!out.is_empty());
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// modkit's stderr without its `TOOL: DETAIL: ...` second lines.
fn without_details(b: &[u8]) -> (Vec<u8>, usize) {
    let s = String::from_utf8_lossy(b);
    let mut n = 0;
    let kept: String = s
        .split_inclusive('\n')
        .filter(|l| {
            let d = l.starts_with("depmod: DETAIL: ") || l.starts_with("modinfo: DETAIL: ");
            n += d as usize;
            !d
        })
        .collect();
    (kept.into_bytes(), n)
}

/// Malformed module files: kmod 30's texts ("Exec format error", "Invalid argument",
/// "No such file or directory" for a missing `.modinfo`), same stream and exit status,
/// with modkit's detail on a second line; and depmod's FATAL for a missing explicit file.
#[test]
fn error_texts_of_malformed_files_like_kmod_30() {
    let Some(kmod) = kmod30_or_skip() else {
        return;
    };
    let modinfo = kmod.with_file_name("modinfo");
    let base = temp_tree("vs-kmod-errors");
    let dir = base.join("lib/modules/4.4.4");
    let good = FakeModule::new("good", &["good_sym"], &[]).build();
    // Not ELF; ELF magic but 7 bytes; headers cut off; an ELF without .modinfo; empty.
    let files: [(&str, Vec<u8>); 5] = [
        ("kernel/empty.ko", Vec::new()),
        ("kernel/bad.ko", b"garbage".to_vec()),
        ("kernel/trunc.ko", b"\x7fELF\x02\x01\x01".to_vec()),
        ("kernel/cut.ko", good[..200.min(good.len())].to_vec()),
        (
            "kernel/noinfo.ko",
            std::fs::read("/bin/true").unwrap_or_default(),
        ),
    ];
    for (rel, bytes) in &files {
        std::fs::write(dir.join(rel), bytes).unwrap();
    }
    std::fs::write(dir.join("kernel/good.ko"), &good).unwrap();
    compare_with_details(&kmod, &base, &[]);
    for (rel, _) in &files {
        let path = dir.join(rel);
        if rel.ends_with("noinfo.ko") && !std::path::Path::new("/bin/true").exists() {
            continue;
        }
        let k = Command::new(&modinfo).arg(&path).output().unwrap();
        let opts = crate::modinfo::ModinfoOptions {
            dirname: dir.display().to_string(),
            ..Default::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = crate::modinfo::run(&opts, &[path.display().to_string()], &mut out, &mut err);
        let (err, details) = without_details(&err);
        assert_eq!(k.status.code(), Some(code), "{rel}");
        assert_eq!(
            String::from_utf8_lossy(&k.stdout),
            String::from_utf8_lossy(&out),
            "{rel}"
        );
        assert_eq!(
            String::from_utf8_lossy(&k.stderr),
            String::from_utf8_lossy(&err),
            "{rel}"
        );
        assert_eq!(details, 1, "{rel}: one detail line");
    }
    // An explicit module file that does not exist.
    let k = Command::new(&kmod)
        .args(["-n", "-b"])
        .arg(&base)
        .args(["4.4.4", "/nonexistent/x.ko"])
        .output()
        .unwrap();
    let opts = DepmodOptions {
        basedir: Some(base.clone()),
        kversion: "4.4.4".into(),
        config_paths: Some(Vec::new()),
        dry_run: true,
        module_files: vec!["/nonexistent/x.ko".into()],
        ..Default::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&opts, &mut out, &mut err).unwrap();
    assert_eq!(
        (k.status.code(), k.stdout, k.stderr),
        (Some(code), out, err)
    );
    std::fs::remove_dir_all(&base).unwrap();
}

/// [`compare`]'s depmod run, with modkit's detail lines required and then dropped.
fn compare_with_details(kmod: &Path, base: &Path, args: &[&str]) {
    let k = Command::new(kmod)
        .arg("-n")
        .arg("-b")
        .arg(base)
        .args(args)
        .arg("4.4.4")
        .output()
        .unwrap();
    let opts = DepmodOptions {
        basedir: Some(base.to_path_buf()),
        kversion: "4.4.4".into(),
        config_paths: Some(Vec::new()),
        dry_run: true,
        no_cache: true,
        ..Default::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&opts, &mut out, &mut err).unwrap();
    let (err, details) = without_details(&err);
    assert_eq!(k.status.code(), Some(code));
    assert_eq!(
        String::from_utf8_lossy(&k.stderr),
        String::from_utf8_lossy(&err)
    );
    assert!(details >= 4, "a detail line per malformed module");
    let out: String = String::from_utf8_lossy(&out)
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("# Weak dependencies") && !l.starts_with("weakdep "))
        .collect();
    assert_eq!(String::from_utf8_lossy(&k.stdout), out);
}

/// `-b` naming a directory that is not UTF-8: the same outputs and the same warning (the
/// missing modules.order, naming the module directory with its bytes) as kmod 30.
#[test]
fn non_utf8_base_directory_like_kmod_30() {
    let Some(kmod) = kmod30_or_skip() else {
        return;
    };
    let mut name = b"modkit-ko-vs-kmod-b\xe9se-".to_vec();
    name.extend_from_slice(std::process::id().to_string().as_bytes());
    let base = std::env::temp_dir().join(std::ffi::OsStr::from_bytes(&name));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("lib/modules/4.4.4/kernel")).unwrap();
    put(&base, "kernel/a.ko", &FakeModule::new("a", &["a_sym"], &[]));
    put(&base, "kernel/b.ko", &FakeModule::new("b", &[], &["a_sym"]));
    compare(&kmod, &base, &[]);
    compare(&kmod, &base, &["-n"]);
    std::fs::remove_dir_all(&base).unwrap();
}
