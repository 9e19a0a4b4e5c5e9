//! A GNU `getopt_long` for the kmod-compatible tools: short option clusters, long options
//! and their unambiguous abbreviations, `--opt=value`, argument permutation (options after
//! operands), `--` and glibc 2.36's error texts, so that a bad command line fails with the
//! bytes kmod prints.

/// Whether an option takes an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HasArg {
    /// `no_argument`.
    No,
    /// `required_argument`.
    Required,
}

/// A long option: name, argument, and the value getopt returns for it (a short option
/// character or a private code).
#[derive(Debug, Clone, Copy)]
pub struct LongOpt {
    /// Name without the leading `--`.
    pub name: &'static str,
    /// Whether it takes an argument.
    pub has_arg: HasArg,
    /// What getopt returns.
    pub val: u32,
}

/// One parsed option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    /// The short option character (as u32) or the long option's private code.
    pub val: u32,
    /// Its argument.
    pub arg: Option<String>,
}

/// The result of parsing: options in command-line order, then the operands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Options in order.
    pub opts: Vec<Opt>,
    /// Operands (non-options), in order.
    pub operands: Vec<String>,
}

/// Parses `args` (without argv\[0\]); `prog` is argv\[0\] for error messages. On the first
/// error returns the options seen so far and glibc's message (one line, with newline).
pub fn getopt_long(
    prog: &str,
    args: &[String],
    shorts: &str,
    longs: &[LongOpt],
) -> Result<Parsed, (Parsed, String)> {
    let mut p = Parsed::default();
    let short_arg = |c: char| -> Option<HasArg> {
        let i = shorts.find(c)?;
        if c == ':' {
            return None;
        }
        Some(if shorts[i + c.len_utf8()..].starts_with(':') {
            HasArg::Required
        } else {
            HasArg::No
        })
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            p.operands.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let exact = longs.iter().find(|l| l.name == name);
            let lo = match exact {
                Some(l) => *l,
                None => {
                    let cands: Vec<&LongOpt> =
                        longs.iter().filter(|l| l.name.starts_with(name)).collect();
                    let same = cands
                        .windows(2)
                        .all(|w| w[0].val == w[1].val && w[0].has_arg == w[1].has_arg);
                    match cands.first() {
                        None => {
                            return Err((p, format!("{prog}: unrecognized option '--{name}'\n")));
                        }
                        Some(l) if same => **l,
                        Some(_) => {
                            let mut m =
                                format!("{prog}: option '--{name}' is ambiguous; possibilities:");
                            for c in cands {
                                m.push_str(&format!(" '--{}'", c.name));
                            }
                            m.push('\n');
                            return Err((p, m));
                        }
                    }
                }
            };
            match lo.has_arg {
                HasArg::No => {
                    if inline.is_some() {
                        return Err((
                            p,
                            format!("{prog}: option '--{}' doesn't allow an argument\n", lo.name),
                        ));
                    }
                    p.opts.push(Opt {
                        val: lo.val,
                        arg: None,
                    });
                }
                HasArg::Required => {
                    let arg = match inline {
                        Some(v) => v,
                        None if i < args.len() => {
                            i += 1;
                            args[i - 1].clone()
                        }
                        None => {
                            return Err((
                                p,
                                format!("{prog}: option '--{}' requires an argument\n", lo.name),
                            ));
                        }
                    };
                    p.opts.push(Opt {
                        val: lo.val,
                        arg: Some(arg),
                    });
                }
            }
            continue;
        }
        let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) else {
            p.operands.push(a.clone());
            continue;
        };
        for (k, c) in cluster.char_indices() {
            match short_arg(c) {
                None => return Err((p, format!("{prog}: invalid option -- '{c}'\n"))),
                Some(HasArg::No) => p.opts.push(Opt {
                    val: c as u32,
                    arg: None,
                }),
                Some(HasArg::Required) => {
                    let rest = &cluster[k + c.len_utf8()..];
                    let arg = if !rest.is_empty() {
                        rest.to_string()
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        return Err((p, format!("{prog}: option requires an argument -- '{c}'\n")));
                    };
                    p.opts.push(Opt {
                        val: c as u32,
                        arg: Some(arg),
                    });
                    break;
                }
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONGS: &[LongOpt] = &[
        LongOpt {
            name: "remove",
            has_arg: HasArg::No,
            val: 'r' as u32,
        },
        LongOpt {
            name: "remove-holders",
            has_arg: HasArg::No,
            val: 5,
        },
        LongOpt {
            name: "config",
            has_arg: HasArg::Required,
            val: 'C' as u32,
        },
        LongOpt {
            name: "show-depends",
            has_arg: HasArg::No,
            val: 'D' as u32,
        },
        LongOpt {
            name: "show-config",
            has_arg: HasArg::No,
            val: 'c' as u32,
        },
    ];

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn permutes_and_clusters() {
        let p = getopt_long(
            "modprobe",
            &v("fuse -qv a=1 -Cx --config=y -- -z"),
            "qvC:",
            LONGS,
        )
        .unwrap();
        let vals: Vec<u32> = p.opts.iter().map(|o| o.val).collect();
        assert_eq!(vals, vec!['q' as u32, 'v' as u32, 'C' as u32, 'C' as u32]);
        assert_eq!(p.opts[2].arg.as_deref(), Some("x"));
        assert_eq!(p.opts[3].arg.as_deref(), Some("y"));
        assert_eq!(p.operands, v("fuse a=1 -z"));
    }

    #[test]
    fn abbreviations_and_errors() {
        let p = getopt_long("m", &v("--remove x"), "", LONGS).unwrap();
        assert_eq!(p.opts[0].val, 'r' as u32);
        let p = getopt_long("m", &v("--remove-h x"), "", LONGS).unwrap();
        assert_eq!(p.opts[0].val, 5);
        let e = getopt_long("m", &v("--show x"), "", LONGS).unwrap_err().1;
        assert_eq!(
            e,
            "m: option '--show' is ambiguous; possibilities: '--show-depends' '--show-config'\n"
        );
        assert_eq!(
            getopt_long("m", &v("-z"), "q", LONGS).unwrap_err().1,
            "m: invalid option -- 'z'\n"
        );
        assert_eq!(
            getopt_long("m", &v("-C"), "C:", LONGS).unwrap_err().1,
            "m: option requires an argument -- 'C'\n"
        );
        assert_eq!(
            getopt_long("m", &v("--bogus"), "", LONGS).unwrap_err().1,
            "m: unrecognized option '--bogus'\n"
        );
        assert_eq!(
            getopt_long("m", &v("--remove=1"), "", LONGS).unwrap_err().1,
            "m: option '--remove' doesn't allow an argument\n"
        );
    }
}
