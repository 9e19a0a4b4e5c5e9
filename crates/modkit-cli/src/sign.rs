//! `modkit sign` and `modkit verify-sig`: the kernel's `scripts/sign-file` for plugins
//! (and for `.ko` files: the format is the same), and its counterpart that checks a file
//! against certificates the way the kernel (and `Host::with_keyring`) does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use modkit::plugin::signing::{self, HashAlgo, Keyring, SigningKey};

/// `modkit sign`.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// Digest algorithm (sign-file's first argument).
    #[arg(long, default_value = "sha256", value_parser = ["sha256", "sha384", "sha512"])]
    pub hash: String,
    /// Sign a file that is already signed: strip its signature first (without this an
    /// already-signed file is refused, where sign-file would append a second signature).
    #[arg(long)]
    pub replace: bool,
    /// The private key: PEM (PKCS#8, PKCS#1 RSA or SEC1 EC; the kernel's signing_key.pem
    /// with key and certificate in one file works) or PKCS#8 DER; unencrypted.
    pub key: PathBuf,
    /// The signer's X.509 certificate, PEM or DER (the kernel's signing_key.x509).
    pub cert: PathBuf,
    /// The file to sign (a plugin .so or a .ko).
    pub file: PathBuf,
    /// Where to write the signed file (default: FILE itself, replaced atomically).
    pub dest: Option<PathBuf>,
}

/// `modkit verify-sig`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A certificate file of the keyring (PEM with one or more certificates, or DER);
    /// repeat for several.
    #[arg(long = "cert", short = 'c', value_name = "CERT", required = true)]
    pub certs: Vec<PathBuf>,
    /// The signed files (compressed .ko files are decompressed first).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_atomically(dest: &Path, data: &[u8], mode_from: &Path) -> Result<(), String> {
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty());
    let name = dest
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", dest.display()))?;
    let tmp = dir
        .unwrap_or(Path::new("."))
        .join(format!(".{}.modkit-sign.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, data).map_err(|e| format!("{}: {e}", tmp.display()))?;
    if let Ok(m) = std::fs::metadata(mode_from) {
        let _ = std::fs::set_permissions(&tmp, m.permissions());
    }
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", dest.display())
    })
}

fn sign(a: &SignArgs) -> Result<(), String> {
    let hash = HashAlgo::from_name(&a.hash).ok_or_else(|| format!("unknown hash {}", a.hash))?;
    let key = SigningKey::from_pem_or_der(&read(&a.key)?)
        .map_err(|e| format!("{}: {e}", a.key.display()))?;
    let cert = signing::certificate_from_pem_or_der(&read(&a.cert)?)
        .map_err(|e| format!("{}: {e}", a.cert.display()))?;
    let data = read(&a.file)?;
    let out = signing::sign(&data, &key, &cert, hash, a.replace)
        .map_err(|e| format!("{}: {e}", a.file.display()))?;
    let dest = a.dest.as_deref().unwrap_or(&a.file);
    write_atomically(dest, &out, &a.file)?;
    tracing::info!(file = %dest.display(), hash = hash.name(), bytes = out.len() - data.len(), "signed");
    Ok(())
}

/// Runs `modkit sign`: 0 signed, 1 error (printed as `modkit sign: FILE: reason`).
pub fn run_sign(a: &SignArgs) -> ExitCode {
    match sign(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("modkit sign: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs `modkit verify-sig`: one line per file, `FILE: ok (...)` or
/// `FILE: ERRNO: reason`; 0 when every file verifies, 1 otherwise, 2 on a bad keyring.
pub fn run_verify(a: &VerifyArgs) -> ExitCode {
    let mut ring = Keyring::new();
    for c in &a.certs {
        if let Err(e) = ring.add_file(c) {
            eprintln!("modkit verify-sig: {e}");
            return ExitCode::from(2);
        }
    }
    let mut bad = false;
    for f in &a.files {
        // A compressed .ko (.ko.xz, .ko.zst, .ko.gz) is signed before compression: check
        // the decompressed module, as the kernel (or kmod) sees it.
        let r = read(f).and_then(|d| {
            let plain = match modkit_ko::compress::decompress(&d) {
                Ok((_, m)) => m.into_owned(),
                Err(_) => d,
            };
            signing::verify(&plain, &ring).map_err(|e| format!("{}: {e}", e.errno().name()))
        });
        match r {
            Ok(i) => println!(
                "{}: ok (signer \"{}\", serial {}, {}, {}, {} bytes signed)",
                f.display(),
                i.signer,
                i.serial,
                i.hash.name(),
                i.key,
                i.content_len
            ),
            Err(e) => {
                bad = true;
                println!("{}: {e}", f.display());
            }
        }
    }
    if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
