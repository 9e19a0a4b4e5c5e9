use std::path::{Path, PathBuf};

use super::*;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| {
            let t = std::fs::read_to_string(p).unwrap_or_default();
            !t.lines().any(|l| l.trim_start().starts_with("tree"))
        })
        // Device-model files are refused (`device_model_unsupported`), tested below.
        .filter(|p| !load(p).uses_devices())
        .collect();
    v.sort();
    v
}

fn load(p: &Path) -> Scenario {
    modkit_sim::load(p).unwrap_or_else(|e| panic!("{e}"))
}

fn parse(text: &str) -> Scenario {
    modkit_sim::parse("test.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

/// A target whose vmlinux exports what the examples' builtin modules use that the
/// Debian kernels really export.
fn target(upstream: (u32, u32, u32)) -> Target {
    let symvers = "0x6e50f0c3\tcpufreq_register_driver\tvmlinux\tEXPORT_SYMBOL_GPL\t\n\
                   0xeb233a45\t__kmalloc\tvmlinux\tEXPORT_SYMBOL\t\n\
                   0x12345678\tdrm_dev_register\tdrivers/gpu/drm/drm\tEXPORT_SYMBOL\t\n\
                   0x11111111\tcxl_ns_sym\tvmlinux\tEXPORT_SYMBOL_NS_GPL\tCXL\n";
    Target {
        kver: "test".into(),
        upstream,
        vmlinux_exports: parse_symvers(symvers),
    }
}

fn file<'a>(g: &'a Generated, name: &str) -> &'a str {
    g.files
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t.as_str())
        .unwrap_or_else(|| {
            panic!(
                "no {name} in {:?}",
                g.files.iter().map(|f| &f.0).collect::<Vec<_>>()
            )
        })
}

#[test]
fn symvers_keeps_vmlinux_exports_only() {
    let t = target((6, 1, 0));
    let e = &t.vmlinux_exports;
    assert_eq!(e.len(), 3);
    assert!(e["cpufreq_register_driver"].gpl_only);
    assert_eq!(e["__kmalloc"].crc, Some(0xeb233a45));
    assert_eq!(e["cxl_ns_sym"].namespace.as_deref(), Some("CXL"));
    assert!(!e.contains_key("drm_dev_register"));
}

#[test]
fn device_scenarios_are_refused_with_the_reason() {
    let sc = parse(
        "[[module]]\nname = \"a\"\n[[module.driver]]\nbus = \"platform\"\nmatch = [\"platform:a\"]\n",
    );
    let e = generate(&sc, &target((6, 1, 176))).unwrap_err();
    assert_eq!(e.feature, "the device model");
    assert!(e.reason.contains("modkit check FILE"), "{e}");
}

#[test]
fn every_example_generates() {
    let ex = examples();
    assert!(ex.len() >= 5, "{ex:?}");
    for p in ex {
        let sc = load(&p);
        for up in [(6, 1, 176), (6, 12, 117)] {
            let g = generate(&sc, &target(up)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(g.modules[0], "modkit_rt");
            let kbuild = file(&g, "Kbuild");
            assert!(kbuild.contains("ccflags-y := -Werror"));
            for m in &g.modules {
                assert!(kbuild.contains(&format!("obj-m += {m}.o")), "{m}");
            }
            for s in sc.db.specs() {
                assert_eq!(g.modules.contains(&s.name), !s.builtin, "{}", s.name);
            }
        }
    }
}

#[test]
fn module_shape() {
    let sc = load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios/i915-kvmgt.toml"),
    );
    let g = generate(&sc, &target((6, 1, 176))).unwrap();
    let i915 = file(&g, "i915-main.c");
    assert!(i915.contains("MODULE_ALIAS(\"pci:v00008086d00003E92sv*sd*bc03sc*i*\");"));
    assert!(i915.contains("__asm__(\"drm_dev_register\")"));
    assert!(i915.contains("request_module(\"%s\", \"kvmgt\");"));
    assert!(i915.contains("modkit-trace: step %s %s %d"));
    assert!(i915.contains("modkit_rt_register(\"pci_driver:i915\", THIS_MODULE)"));
    assert!(i915.contains("#include \"modkit_rt.h\""));
    let syms = file(&g, "i915-syms.c");
    assert!(syms.contains("EXPORT_SYMBOL(intel_ring_begin);"));
    assert!(!syms.contains("#include <linux/module.h>"));
    // kmalloc, pci_register_driver and shmem_pin_map are not vmlinux exports: stand-ins.
    let b = file(&g, "modkit_rt-builtin.c");
    assert!(b.contains("EXPORT_SYMBOL(kmalloc);"));
    assert!(b.contains("\"vmlinux\","));
    // drm needs nothing of modkit_rt.
    let drm = file(&g, "drm-main.c");
    assert!(!drm.contains("modkit_rt"), "{drm}");
    assert!(g.stale.is_empty());
}

#[test]
fn stale_depends_build() {
    let sc = load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/scenarios/i915-kvmgt-stale-dep.toml"),
    );
    let g = generate(&sc, &target((6, 1, 176))).unwrap();
    assert_eq!(g.stale.len(), 1);
    let (name, files) = &g.stale[0];
    assert_eq!(name, "kvmgt");
    let main = files.iter().find(|f| f.0 == "kvmgt-main.c").unwrap();
    assert!(main.1.contains("STALE BUILD"));
    assert!(!main.1.contains("intel_ring_begin"));
    assert!(files.iter().any(|f| f.0 == "Kbuild"));
    // The real kvmgt imports i915's symbols.
    assert!(file(&g, "kvmgt-main.c").contains("__asm__(\"intel_ring_begin\")"));
}

#[test]
fn init_table_unwinds_and_stops() {
    let sc = parse(
        r#"
[[module]]
name = "m"
[[module.init]]
step = "a"
run = [{ register = "debugfs:a" }]
undo = [{ unregister = "debugfs:a" }]
[[module.init]]
step = "b"
undo = true
[[module.init]]
step = "c"
run = [{ sleep = "100us" }, { stop = true }]
[[module.init]]
step = "d"
run = [{ fail = "ENOMEM" }]
"#,
    );
    let g = generate(&sc, &target((6, 12, 117))).unwrap();
    let c = file(&g, "m-main.c");
    assert!(c.contains("if (done > 0)\n\t\tmodkit_undo_0();"), "{c}");
    assert!(c.contains("return MODKIT_STOP;"));
    assert!(c.contains("return -12; /* -ENOMEM */"));
    assert!(c.contains("debugfs_create_dir"));
    assert!(c.contains("modkit_sleep_ns(100000ULL);"));
    assert!(c.contains("module_exit(modkit_exit);"));
}

#[test]
fn ret_makes_the_init_return_its_value() {
    let sc = parse(
        r#"
[[module]]
name = "m"
[[module.init]]
step = "a"
undo = true
[[module.init]]
step = "b"
run = [{ ret = 255 }]
[[module.init]]
step = "c"
run = [{ fail = "ENODEV" }]

[[module]]
name = "plain"
"#,
    );
    let g = generate(&sc, &target((6, 1, 176))).unwrap();
    let c = file(&g, "m-main.c");
    let decl = c.find("static int modkit_init_ret;").expect("declared");
    let set = c.find("modkit_init_ret = 255;").expect("set by the step");
    assert!(decl < set, "declared before the steps use it:\n{c}");
    assert!(c.contains("modkit_init_ret = 255; /* the init returns 255 */\n\treturn MODKIT_STOP;"));
    assert!(
        c.contains("if (ret == MODKIT_STOP)\n\t\treturn modkit_init_ret;"),
        "{c}"
    );
    // A module without an init table has no such variable (gcc would warn it is unused).
    assert!(!file(&g, "plain-main.c").contains("modkit_init_ret"));
}

#[test]
fn namespaces_follow_the_kernel_version() {
    let text = r#"
[[module]]
name = "a"
exports = [{ name = "a_sym", namespace = "A_NS", gpl_only = true }]
[[module]]
name = "b"
imports = ["a_sym"]
import_namespaces = ["A_NS"]
"#;
    let sc = parse(text);
    let old = generate(&sc, &target((6, 12, 117))).unwrap();
    assert!(file(&old, "a-syms.c").contains("EXPORT_SYMBOL_NS_GPL(a_sym, A_NS);"));
    assert!(file(&old, "b-main.c").contains("MODULE_IMPORT_NS(A_NS);"));
    let new = generate(&sc, &target((6, 13, 0))).unwrap();
    assert!(file(&new, "a-syms.c").contains("EXPORT_SYMBOL_NS_GPL(a_sym, \"A_NS\");"));
    assert!(file(&new, "b-main.c").contains("MODULE_IMPORT_NS(\"A_NS\");"));
}

#[test]
fn module_namespaces_are_emitted_as_the_namespace_string() {
    let text = r#"
[[module]]
name = "a"
exports = [{ name = "a_sym", namespace = "module:b-x*", gpl_only = true }]
[[module]]
name = "b"
imports = ["a_sym"]
import_namespaces = ["module:b-x*"]
"#;
    let sc = parse(text);
    let old = generate(&sc, &target((6, 1, 176))).unwrap();
    assert!(file(&old, "a-syms.c").contains("EXPORT_SYMBOL_NS_GPL(a_sym, module:b-x*);"));
    assert!(file(&old, "b-main.c").contains("MODULE_IMPORT_NS(module:b-x*);"));
    assert!(old.modinfo_after_build.is_empty());
    let new = generate(&sc, &target((6, 16, 0))).unwrap();
    assert!(file(&new, "a-syms.c").contains("EXPORT_SYMBOL_NS_GPL(a_sym, \"module:b-x*\");"));
    // 6.16+'s modpost refuses the explicit import: it goes into .modinfo after the build.
    assert!(!file(&new, "b-main.c").contains("MODULE_IMPORT_NS"));
    assert_eq!(
        new.modinfo_after_build,
        vec![("b".to_string(), vec!["import_ns=module:b-x*".to_string()])]
    );
    let before = generate(&sc, &target((6, 15, 0))).unwrap();
    assert!(file(&before, "b-main.c").contains("MODULE_IMPORT_NS(\"module:b-x*\");"));
    assert!(before.modinfo_after_build.is_empty());
    // A comma cannot pass through the pre-6.13 macros; a string literal can carry it.
    let commas = text.replace("module:b-x*", "module:b,c*");
    let e = generate(&parse(&commas), &target((6, 12, 117))).expect_err("comma before 6.13");
    assert_eq!(e.feature, "namespace name");
    assert!(e.to_string().contains("comma"), "{e}");
    assert!(generate(&parse(&commas), &target((6, 13, 0))).is_ok());
    for bad in ["module:", "module:a b", "module:a*b", "module:a,,b"] {
        let t = text.replace("module:b-x*", bad);
        let e = generate(&parse(&t), &target((6, 16, 0))).expect_err(bad);
        assert_eq!(e.feature, "namespace name", "{bad}");
    }
}

fn unsupported(text: &str) -> Unsupported {
    let sc = parse(text);
    generate(&sc, &target((6, 1, 176))).expect_err("must be refused")
}

#[test]
fn refusals_name_the_feature() {
    let e = unsupported("modprobe_time = \"5ms\"\n[[module]]\nname = \"a\"\n");
    assert_eq!(e.feature, "modprobe_time");
    let e = unsupported(
        "[[module]]\nname = \"a\"\nexports = [{ name = \"s\", crc = 1 }]\n[[module]]\nname = \"b\"\nimports = [{ name = \"s\", crc = 2 }]\n",
    );
    assert_eq!(e.feature, "CRC mismatch");
    let e = unsupported(
        "[[module]]\nname = \"vmlinux\"\nbuiltin = true\nexports = [\"cpufreq_register_driver\"]\n[[module]]\nname = \"b\"\nimports = [\"cpufreq_register_driver\"]\n[[module.init]]\nstep = \"s\"\nrun = [{ use_symbol = \"cpufreq_register_driver\" }]\n",
    );
    assert_eq!(e.feature, "use_symbol of a vmlinux symbol");
    assert!(e.place.contains("module `b`"), "{e}");
    let e = unsupported(
        "[[module]]\nname = \"a\"\nlicense = \"Proprietary\"\nimports = [\"cpufreq_register_driver\"]\n[[module]]\nname = \"vmlinux\"\nbuiltin = true\nexports = [{ name = \"cpufreq_register_driver\", gpl_only = true }]\n",
    );
    assert_eq!(e.feature, "GPL-only import by a non-GPL module");
    let e = unsupported("[[module]]\nname = \"a\"\nexports = [\"__kmalloc\"]\n");
    assert_eq!(e.feature, "export of a vmlinux symbol");
    let e = unsupported(
        "[[module]]\nname = \"a\"\n[[module.init]]\nstep = \"s\"\nrun = [{ unregister = \"fs:x\" }]\n",
    );
    assert!(e.feature.starts_with("unregister of fs:"), "{e}");
    let e = unsupported(
        "[[module]]\nname = \"a\"\n[[event]]\nrun = [{ open = \"debugfs:x\", as = \"f\" }]\n",
    );
    assert!(e.feature.contains("debugfs"), "{e}");
    let e = unsupported(
        "[[module]]\nname = \"a\"\n[[module.init]]\nstep = \"s\"\nrun = [{ register = \"fs:a.b\" }]\n",
    );
    assert_eq!(e.feature, "fs: name");
    let e = unsupported(
        "[[module]]\nname = \"vmlinux\"\nbuiltin = true\nexports = [{ name = \"cxl_ns_sym\", gpl_only = true }]\n",
    );
    assert_eq!(e.feature, "builtin export namespace");
}

#[test]
fn modules_without_runtime_needs_do_not_import_it() {
    let sc = parse(
        "[[module]]\nname = \"a\"\n[[module.init]]\nstep = \"s\"\nrun = [{ sleep = \"5ms\" }, { request_module = \"b\", wait = false }, { register = \"fs:afs\" }]\nundo = [{ unregister = \"fs:afs\" }]\n[[module]]\nname = \"b\"\n",
    );
    let g = generate(&sc, &target((6, 1, 176))).unwrap();
    let a = file(&g, "a-main.c");
    assert!(!a.contains("modkit_rt"), "{a}");
    assert!(a.contains("request_module_nowait(\"%s\", \"b\");"));
    assert!(a.contains(".owner = THIS_MODULE"));
}

/// Builds every example's generated modules against the Debian headers, when present.
#[test]
fn examples_build_on_both_kernels() {
    let cache = std::env::var("MODKIT_KERNEL_CACHE")
        .unwrap_or_else(|_| "/var/cache/modkit-ci/kernel".into());
    let kernels = ["6.1.0-50-cloud-amd64", "6.12.117+deb12-cloud-amd64"];
    for kver in kernels {
        let headers = Path::new(&cache).join(format!("root-{kver}/usr/src/linux-headers-{kver}"));
        if !headers.join("Makefile").exists() {
            println!("skipped: no headers at {}", headers.display());
            return;
        }
        let symvers = std::fs::read_to_string(headers.join("Module.symvers")).unwrap();
        let upstream = if kver.starts_with("6.1.") {
            (6, 1, 176)
        } else {
            (6, 12, 117)
        };
        let target = Target {
            kver: kver.into(),
            upstream,
            vmlinux_exports: parse_symvers(&symvers),
        };
        let mut all = examples();
        all.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cgen/every-action.toml"));
        for p in all {
            let sc = load(&p);
            let g = generate(&sc, &target).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let stem = p.file_stem().unwrap().to_string_lossy().to_string();
            build(&headers, &format!("{kver}-{stem}"), &g.files, &g.modules);
            for (name, files) in &g.stale {
                build(
                    &headers,
                    &format!("{kver}-{stem}-stale-{name}"),
                    files,
                    &g.modules,
                );
            }
        }
    }
}

fn build(headers: &Path, tag: &str, files: &[(String, String)], modules: &[String]) {
    let dir = std::env::temp_dir().join(format!("modkit-cgen-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (n, t) in files {
        std::fs::write(dir.join(n), t).unwrap();
    }
    let out = std::process::Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(headers)
        .arg(format!("M={}", dir.display()))
        .arg("CONFIG_DEBUG_INFO_BTF_MODULES=")
        .arg("modules")
        .output()
        .expect("make");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{tag}: build failed in {}:\n{stdout}\n{stderr}",
        dir.display()
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.contains("warning") || l.contains("WARNING"))
        // What the scenario asks for: a module the kernel must refuse at load.
        .filter(|l| {
            !(l.starts_with("WARNING: modpost:")
                && (l.ends_with("undefined!") || l.ends_with("but does not import it.")))
        })
        .collect();
    assert!(
        warnings.is_empty(),
        "{tag}: warnings in {}:\n{}",
        dir.display(),
        warnings.join("\n")
    );
    for m in modules {
        assert!(dir.join(format!("{m}.ko")).exists(), "{tag}: no {m}.ko");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn symbol_get_calls_the_kernels_lookup() {
    let prov = r#"
[[module]]
name = "prov"
exports = [{ name = "p_gpl", gpl_only = true }]
"#;
    let sc = parse(&format!(
        r#"{prov}
[[module]]
name = "user"
[[module.init]]
step = "get"
run = [{{ symbol_get = "p_gpl" }}]
undo = [{{ symbol_put = "p_gpl" }}]
"#
    ));
    let g = generate(&sc, &target((6, 1, 176))).unwrap();
    let c = file(&g, "user-main.c");
    assert!(
        c.contains("ret = __symbol_get(\"p_gpl\") ? 0 : -ENOENT; /* symbol_get */\n\tif (ret)\n\t\treturn ret;"),
        "{c}"
    );
    assert!(
        c.contains("__symbol_put(\"p_gpl\"); /* symbol_put */"),
        "{c}"
    );
    // __symbol_get is EXPORT_SYMBOL_GPL: a proprietary caller cannot be built faithfully.
    let sc = parse(&format!(
        r#"{prov}
[[module]]
name = "prop"
license = "Proprietary"
[[module.init]]
step = "get"
run = [{{ symbol_get = "p_gpl" }}]
"#
    ));
    assert!(generate(&sc, &target((6, 1, 176))).is_err());
}
