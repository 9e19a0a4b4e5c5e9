//! `lsmod`, as kmod 30's `tools/lsmod.c`: /proc/modules' names in order, each with
//! `/sys/module/NAME/coresize`, `refcnt` and `holders`.

use std::io::Write;

use super::state;

/// Formats the listing for `mods` (name, size, refcount, holders).
pub fn format(mods: &[(String, i64, i64, Vec<String>)]) -> String {
    let mut s = String::from("Module                  Size  Used by\n");
    for (name, size, refs, holders) in mods {
        s.push_str(&format!("{name:<19} {size:>8}  {refs}"));
        for (i, h) in holders.iter().enumerate() {
            s.push(if i == 0 { ' ' } else { ',' });
            s.push_str(h);
        }
        s.push('\n');
    }
    s
}

/// Runs lsmod. Returns the exit status.
pub fn run(argv: &[String]) -> i32 {
    if argv.len() != 1 {
        eprintln!("Usage: {}", argv[0]);
        return 1;
    }
    let names = match state::loaded() {
        Ok(n) => n,
        Err(e) => {
            eprintln!(
                "libkmod: ERROR ../libkmod/libkmod-module.c:1725 kmod_module_new_from_loaded: could not open /proc/modules: {}",
                super::sys::strerror(e)
            );
            eprintln!(
                "Error: could not get list of modules: {}",
                super::sys::strerror(e)
            );
            return 1;
        }
    };
    let mods: Vec<_> = names
        .into_iter()
        .map(|n| {
            let size = state::size(&n).unwrap_or_else(|e| -(e as i64));
            let refs = state::refcnt(&n).unwrap_or_else(|e| -(e as i64));
            let holders = state::holders(&n).unwrap_or_default();
            (n, size, refs, holders)
        })
        .collect();
    let out = std::io::stdout();
    let mut out = out.lock();
    let _ = out.write_all(format(&mods).as_bytes());
    let _ = out.flush();
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_like_kmod() {
        let s = format(&[
            ("mt_a".into(), 16384, 1, vec!["mt_b".into()]),
            ("mt_b".into(), 12288, 0, vec![]),
            ("x".into(), 4096, 2, vec!["p".into(), "q".into()]),
        ]);
        assert_eq!(
            s,
            "Module                  Size  Used by\n\
             mt_a                   16384  1 mt_b\n\
             mt_b                   12288  0\n\
             x                       4096  2 p,q\n"
        );
    }
}
