//! Signed plugins: a host that checks signatures against a keyring before dlopen.
//!
//! `plugin-host signed SIGNED_DIR TAMPERED_DIR CERT`: SIGNED_DIR holds mathcore.so signed
//! by `modkit sign` (with a key run.sh generated for this run, whose certificate is CERT)
//! and stats.so unsigned; TAMPERED_DIR holds a signed mathcore.so with one byte changed
//! after signing. What the kernel's `module_sig_check()` does, the host does:
//!
//! - enforce (`module.sig_enforce=1`): the signed plugin loads, untainted; the unsigned
//!   one is refused with EKEYREJECTED before dlopen;
//! - permissive: the unsigned one loads with the `E` taint and the kernel's line
//!   "module verification failed: signature and/or required key missing - tainting
//!   kernel";
//! - a signature that does not match its content is refused under both policies
//!   (EKEYREJECTED: "signature check failures" are fatal "even if signatures aren't
//!   required").

use std::path::Path;

use modkit::plugin::signing::{Keyring, SigPolicy};
use modkit::{Errno, Host};

use crate::{check, Result};

pub fn run(signed_dir: &Path, tampered_dir: &Path, cert: &Path) -> Result<()> {
    let mut keyring = Keyring::new();
    keyring.add_file(cert)?;

    // Enforce: the signed mathcore loads and carries no taint.
    let host = Host::new("modkit".parse()?)
        .with_plugin_dir(signed_dir)
        .with_keyring(keyring.clone(), SigPolicy::Enforce);
    host.modprobe("mathcore")?;
    let scale = host.plugin_fn::<(i64,), i64>("scale")?;
    check(scale.call((4,))? == 40, "the signed mathcore runs")?;
    drop(scale);
    println!(
        "enforce: signed mathcore loaded, taints \"{}\"",
        host.module_taints("mathcore").unwrap_or_default()
    );
    check(
        host.tainted().is_empty(),
        "a verified plugin does not taint",
    )?;

    // Enforce: the unsigned stats is refused before dlopen.
    let e = host.modprobe("calc:stats").unwrap_err();
    println!("enforce: modprobe calc:stats (unsigned): {e}");
    check(
        e.errno() == Some(Errno::EKEYREJECTED),
        "an unsigned plugin is refused with EKEYREJECTED",
    )?;
    host.rmmod("mathcore")?;

    // A signature that does not match the content: refused under both policies.
    for policy in [SigPolicy::Enforce, SigPolicy::Permissive] {
        let host = Host::new("modkit".parse()?)
            .with_plugin_dir(tampered_dir)
            .with_keyring(keyring.clone(), policy);
        let e = host.modprobe("mathcore").unwrap_err();
        println!("{policy:?}: modprobe mathcore (tampered after signing): {e}");
        check(
            e.errno() == Some(Errno::EKEYREJECTED),
            "a tampered plugin is refused with EKEYREJECTED",
        )?;
    }

    // Permissive: the unsigned stats loads, tainted E, with the kernel's log line.
    let host = Host::new("modkit".parse()?)
        .with_plugin_dir(signed_dir)
        .with_keyring(keyring, SigPolicy::Permissive);
    host.modprobe("calc:stats")?;
    let w = host
        .plugin_fn::<(i64, i64), i64>("weighted")?
        .call((2, 3))?;
    check(w == 50, "the unsigned stats runs under permissive")?;
    let line =
        "module verification failed: signature and/or required key missing - tainting kernel";
    let logged = host.log().into_iter().find(|l| l.contains(line));
    println!(
        "permissive: calc:stats loaded; taints stats \"{}\", mathcore \"{}\", host \"{}\"; log: {}",
        host.module_taints("stats").unwrap_or_default(),
        host.module_taints("mathcore").unwrap_or_default(),
        host.tainted(),
        logged.as_deref().unwrap_or("(none)")
    );
    check(
        host.module_taints("stats").as_deref() == Some("E"),
        "the unsigned plugin carries E",
    )?;
    check(
        host.module_taints("mathcore").as_deref() == Some(""),
        "the signed plugin does not",
    )?;
    check(logged.is_some(), "the kernel's line is logged")?;
    host.shutdown_with(modkit::Rmmod::default())?;
    Ok(())
}
