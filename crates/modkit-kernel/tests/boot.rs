//! Boots each Debian kernel (bookworm's 6.1 and 6.12, sid's 7.2) with a trivial module and a shell stand-in for the runner.
//! Ignored by default (downloads packages and boots QEMU: ~30 s per kernel); CI's
//! kernel-compare step covers the same path with real scenarios.

use std::path::Path;

use modkit_kernel::{assets, build, initramfs, qemu};

const KERNELS: &[&str] = &[
    "6.1.0-50-cloud-amd64",
    "6.12.117+deb12-cloud-amd64",
    "7.2.13+deb14-cloud-amd64",
];

#[test]
#[ignore]
fn hello_module_loads_on_each_kernel() {
    let tools = assets::guest_tools().unwrap();
    for k in KERNELS {
        let a = assets::kernel(k).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(
            src.join("hello.c"),
            "#include <linux/module.h>\nstatic int __init h(void){pr_info(\"hello\\n\");return 0;}\nmodule_init(h);\nMODULE_LICENSE(\"GPL\");\n",
        )
        .unwrap();
        std::fs::write(
            src.join("modkit_rt.c"),
            "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n",
        )
        .unwrap();
        std::fs::write(src.join("Kbuild"), "obj-m += hello.o modkit_rt.o\n").unwrap();
        let kos = build::build_modules(&a, &src).unwrap();
        let named: Vec<(String, std::path::PathBuf)> = kos
            .iter()
            .map(|p| {
                (
                    p.file_stem().unwrap().to_string_lossy().to_string(),
                    p.clone(),
                )
            })
            .collect();
        let root = dir.path().join("root");
        build::stage_tree(&a, &named, &[], &root).unwrap();
        let runner = dir.path().join("runner.sh");
        std::fs::write(
            &runner,
            "#!/bin/sh\n/sbin/modprobe hello\necho @@ start 0\ncat /proc/modules\necho @@ end 0\n",
        )
        .unwrap();
        let image = dir.path().join("initramfs.cpio");
        initramfs::guest_image(&a, &tools, &root, &runner, "", &[], &image).unwrap();
        let out = qemu::boot(&a, &image, &qemu::BootOptions::default()).unwrap();
        let report = String::from_utf8_lossy(&out.report);
        eprintln!("{k}: boot {:?}\n{report}", out.wall);
        assert!(
            report.contains("hello "),
            "{k}: {report}\nconsole:\n{}",
            out.console
        );
        assert!(Path::new(&image).exists());
    }
}
