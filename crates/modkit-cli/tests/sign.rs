//! Interoperability of `modkit sign` / `modkit verify-sig` with the kernel's format:
//! (a) OpenSSL verifies modkit's signatures (`openssl cms -verify`), (b) modkit verifies
//! the kernel's own `scripts/sign-file` output, byte-identical for RSA, (c) modkit
//! verifies Debian's signed modules against the certificates built into their kernels.
//!
//! The keys are the throwaway test keys of crates/modkit/src/plugin/signing/testdata.

use std::path::{Path, PathBuf};
use std::process::Command;

const MODKIT: &str = env!("CARGO_BIN_EXE_modkit");

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../modkit/src/plugin/signing/testdata")
        .join(name)
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("modkit-sign-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn content() -> Vec<u8> {
    // Some bytes that look like a plugin, different on every run.
    let mut v = b"\x7fELF\x02\x01\x01".to_vec();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut x = seed | 1;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn modkit_sign(key: &str, crt: &str, hash: &str, file: &Path, dest: &Path) {
    let (ok, text) = run(Command::new(MODKIT).args([
        "sign".as_ref(),
        "--hash".as_ref(),
        hash.as_ref(),
        testdata(key).as_os_str(),
        testdata(crt).as_os_str(),
        file.as_os_str(),
        dest.as_os_str(),
    ]));
    assert!(ok, "modkit sign {key}: {text}");
}

/// Splits a signed file into content and PKCS#7 blob (the trailer's sig_len).
fn split(signed: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let magic = b"~Module signature appended~\n";
    assert!(signed.ends_with(magic));
    let t = signed.len() - magic.len() - 12;
    let len = u32::from_be_bytes(signed[t + 8..t + 12].try_into().unwrap()) as usize;
    (signed[..t - len].to_vec(), signed[t - len..t].to_vec())
}

#[test]
fn openssl_verifies_what_modkit_signs() {
    assert!(
        Command::new("openssl").arg("version").output().is_ok(),
        "this test needs the openssl command (apt-get install openssl; .ci/run installs it)"
    );
    let d = tmpdir("openssl");
    let file = d.join("plugin.so");
    std::fs::write(&file, content()).unwrap();
    for (key, crt) in [
        ("rsa.key.pem", "rsa.crt.pem"),
        ("p256.key.pem", "p256.crt.pem"),
        ("p384.key.pem", "p384.crt.pem"),
    ] {
        for hash in ["sha256", "sha384", "sha512"] {
            let signed = d.join("signed.so");
            modkit_sign(key, crt, hash, &file, &signed);
            let (body, blob) = split(&std::fs::read(&signed).unwrap());
            assert_eq!(body, std::fs::read(&file).unwrap());
            std::fs::write(d.join("content"), &body).unwrap();
            std::fs::write(d.join("sig.p7"), &blob).unwrap();
            let verify = |content: &str| {
                run(Command::new("openssl")
                    .args(["cms", "-verify", "-binary", "-inform", "DER", "-noverify"])
                    .arg("-in")
                    .arg(d.join("sig.p7"))
                    .arg("-content")
                    .arg(d.join(content))
                    .arg("-certfile")
                    .arg(testdata(crt))
                    .args(["-out", "/dev/null"]))
            };
            let (ok, text) = verify("content");
            assert!(ok, "openssl cms -verify {key} {hash}: {text}");
            assert!(text.contains("Verification successful"), "{text}");
            // And OpenSSL is not just saying yes: changed content fails.
            let mut bad = body.clone();
            bad[100] ^= 1;
            std::fs::write(d.join("bad"), &bad).unwrap();
            let (ok, text) = verify("bad");
            assert!(!ok, "openssl accepted tampered content: {text}");
            // The kernel-format details: no certificates, no signed attributes.
            let (ok, text) = run(Command::new("openssl")
                .args(["cms", "-cmsout", "-print", "-inform", "DER", "-noout"])
                .arg("-in")
                .arg(d.join("sig.p7")));
            assert!(ok, "{text}");
            assert!(text.contains("certificates:\n      <ABSENT>"), "{text}");
            assert!(text.contains("signedAttrs:\n          <ABSENT>"), "{text}");
            assert!(text.contains("eContent: <ABSENT>"), "{text}");
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// The kernel's sign-file: $MODKIT_SIGN_FILE, an installed linux-kbuild, or the one in
/// CI's cached linux-kbuild-6.1 package (extracted into `d`).
fn sign_file(d: &Path) -> Option<PathBuf> {
    if let Ok(p) = std::env::var("MODKIT_SIGN_FILE") {
        return Some(PathBuf::from(p));
    }
    for kb in ["6.1", "6.12", "6.11", "6.10"] {
        let p = PathBuf::from(format!("/usr/lib/linux-kbuild-{kb}/scripts/sign-file"));
        if p.exists() {
            return Some(p);
        }
    }
    let cache = Path::new("/var/cache/modkit-ci/kernel");
    let deb = std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("linux-kbuild-6.1_"))
        })?;
    let x = d.join("kbuild");
    let ok = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&x)
        .status()
        .ok()?
        .success();
    let p = x.join("usr/lib/linux-kbuild-6.1/scripts/sign-file");
    (ok && p.exists()).then_some(p)
}

#[test]
fn modkit_verifies_the_kernels_sign_file() {
    let d = tmpdir("signfile");
    let Some(sf) = sign_file(&d) else {
        // The committed sign-file fixtures (unit tests of modkit::plugin::signing) still
        // cover this; this live run needs the program.
        eprintln!(
            "SKIPPED: no scripts/sign-file (set MODKIT_SIGN_FILE or install linux-kbuild-6.1)"
        );
        return;
    };
    let file = d.join("plugin.so");
    std::fs::write(&file, content()).unwrap();
    for (key, crt, hash) in [
        ("rsa.key.pem", "rsa.crt.pem", "sha256"),
        ("rsa.key.pem", "rsa.crt.der", "sha512"),
        ("p256.key.pem", "p256.crt.pem", "sha256"),
        ("p384.key.pem", "p384.crt.pem", "sha384"),
    ] {
        let by_kernel = d.join("by-sign-file.so");
        std::fs::copy(&file, &by_kernel).unwrap();
        let (ok, text) = run(Command::new(&sf)
            .arg(hash)
            .arg(testdata(key))
            .arg(testdata(crt))
            .arg(&by_kernel));
        assert!(ok, "sign-file {key}: {text}");
        let (ok, text) = run(Command::new(MODKIT)
            .args(["verify-sig", "--cert"])
            .arg(testdata(crt))
            .arg(&by_kernel));
        assert!(ok, "modkit verify-sig of sign-file's {key} {hash}: {text}");
        assert!(
            text.contains(": ok (signer \"modkit throwaway test"),
            "{text}"
        );
        assert!(text.contains(hash), "{text}");
        if key.starts_with("rsa") {
            // PKCS#1 v1.5 is deterministic: the same bytes as sign-file.
            let by_modkit = d.join("by-modkit.so");
            modkit_sign(key, crt, hash, &file, &by_modkit);
            assert!(
                std::fs::read(&by_modkit).unwrap() == std::fs::read(&by_kernel).unwrap(),
                "modkit sign and sign-file differ for {key} {hash}"
            );
        }
        // A wrong certificate: ENOKEY, and the file is refused.
        let (ok, text) = run(Command::new(MODKIT)
            .args(["verify-sig", "--cert"])
            .arg(testdata("other.crt.pem"))
            .arg(&by_kernel));
        assert!(!ok && text.contains("ENOKEY"), "{text}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn debian_modules_verify_against_their_kernels_certificate() {
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/debian-certs");
    let mut checked = 0;
    for kver in [
        "6.1.0-50-cloud-amd64",
        "6.12.117+deb12-cloud-amd64",
        "7.2.13+deb14-cloud-amd64",
    ] {
        let root = PathBuf::from(format!("/var/cache/modkit-ci/kernel/root-{kver}"));
        let mut mods = Vec::new();
        // /lib may be a link to /usr/lib (usrmerge): the first tree found.
        for base in ["usr/lib/modules", "lib/modules"] {
            if mods.is_empty() {
                collect(&root.join(base).join(kver).join("kernel"), &mut mods);
            }
        }
        if mods.is_empty() {
            eprintln!("SKIPPED {kver}: no module tree under {}", root.display());
            continue;
        }
        mods.sort();
        let cert = certs.join(format!("{kver}.der"));
        let (ok, text) = run(Command::new(MODKIT)
            .args(["verify-sig", "--cert"])
            .arg(&cert)
            .args(&mods));
        let bad: Vec<&str> = text.lines().filter(|l| !l.contains(": ok (")).collect();
        assert!(
            ok && bad.is_empty(),
            "{kver}: {} of {} fail: {:?}",
            bad.len(),
            mods.len(),
            &bad[..bad.len().min(5)]
        );
        assert_eq!(text.lines().count(), mods.len());
        // Another kernel's certificate does not verify them: ENOKEY.
        let other = certs.join(if kver.starts_with("6.1.") {
            "7.2.13+deb14-cloud-amd64.der"
        } else {
            "6.1.0-50-cloud-amd64.der"
        });
        let (ok, text) = run(Command::new(MODKIT)
            .args(["verify-sig", "--cert"])
            .arg(&other)
            .arg(&mods[0]));
        assert!(!ok && text.contains("ENOKEY"), "{text}");
        eprintln!("{kver}: {} signed modules verify", mods.len());
        checked += mods.len();
    }
    eprintln!("{checked} Debian modules verified");
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.to_string_lossy().contains(".ko") {
            out.push(p);
        }
    }
}
