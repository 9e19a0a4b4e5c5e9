//! kmod's two loggers, reproduced: the tool's `log_printf` (`tools/log.c`: `PROG:
//! PRIORITY: message`, exiting with status 1 after a `FATAL` line) and libkmod's messages,
//! which reach stderr through the tool's logger once it is installed (`PROG: PRIORITY:
//! ../libkmod/FILE:LINE FUNC() message`, Debian builds kmod 30 with `--enable-debug`) or
//! through libkmod's default logger before that (`libkmod: PRIORITY ../libkmod/FILE:LINE
//! FUNC: message`, threshold `LOG_ERR`).

use std::io::Write;

/// `LOG_EMERG`.
pub const LOG_EMERG: i32 = 0;
/// `LOG_CRIT`: printed as `FATAL`, and the tool exits.
pub const LOG_CRIT: i32 = 2;
/// `LOG_ERR`.
pub const LOG_ERR: i32 = 3;
/// `LOG_WARNING`.
pub const LOG_WARNING: i32 = 4;
/// `LOG_NOTICE`.
pub const LOG_NOTICE: i32 = 5;
/// `LOG_INFO`.
pub const LOG_INFO: i32 = 6;

/// kmod's `prio_to_str`.
pub fn prio_name(prio: i32) -> String {
    match prio {
        LOG_CRIT => "FATAL".into(),
        LOG_ERR => "ERROR".into(),
        LOG_WARNING => "WARNING".into(),
        LOG_NOTICE => "NOTICE".into(),
        LOG_INFO => "INFO".into(),
        7 => "DEBUG".into(),
        p => format!("LOG-{p:03}"),
    }
}

/// The loggers of one tool run.
pub struct Log {
    /// `program_invocation_short_name`.
    pub prog: String,
    /// `log.c`'s threshold (`log_priority`).
    pub priority: i32,
    /// libkmod's threshold once the tool's logger is installed (`log_setup_kmod_log`);
    /// `None`: libkmod's default logger.
    pub kmod: Option<i32>,
    err: Counted,
}

/// The logger's writer, counting the bytes written through it.
struct Counted(Box<dyn Write>, usize);

impl Write for Counted {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(b)?;
        self.1 += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("prog", &self.prog)
            .field("priority", &self.priority)
            .field("kmod", &self.kmod)
            .finish()
    }
}

impl Log {
    /// A logger writing to stderr.
    pub fn stderr(prog: &str) -> Log {
        Log::to(prog, Box::new(crate::bytestr::Raw(std::io::stderr())))
    }

    /// A logger writing to `err`.
    pub fn to(prog: &str, err: Box<dyn Write>) -> Log {
        Log {
            prog: prog.to_string(),
            priority: LOG_WARNING,
            kmod: None,
            err: Counted(err, 0),
        }
    }

    /// Bytes written so far (0: the run has printed nothing through this logger).
    pub fn written(&self) -> usize {
        self.err.1
    }

    /// `log_setup_kmod_log(ctx, priority)`.
    pub fn setup_kmod(&mut self, priority: i32) {
        self.priority = priority;
        self.kmod = Some(priority);
    }

    /// `log_printf(prio, msg)`: a `FATAL` line that is printed ends the process with
    /// status 1, as kmod's does.
    pub fn printf(&mut self, prio: i32, msg: &str) {
        if prio > self.priority {
            return;
        }
        let _ = write!(self.err, "{}: {}: {msg}", self.prog, prio_name(prio));
        if prio <= LOG_CRIT {
            let _ = self.err.flush();
            std::process::exit(1);
        }
    }

    /// [`Log::printf`] followed by modkit's detail on a second line
    /// ([`crate::error::detail_line`]), before a `FATAL` line ends the process.
    pub fn printf_detail(&mut self, prio: i32, msg: &str, detail: &str) {
        if prio > self.priority {
            return;
        }
        let _ = write!(self.err, "{}: {}: {msg}", self.prog, prio_name(prio));
        let _ = write!(
            self.err,
            "{}",
            crate::error::detail_line(&self.prog, detail)
        );
        if prio <= LOG_CRIT {
            let _ = self.err.flush();
            std::process::exit(1);
        }
    }

    /// `ERR(...)` of a tool.
    pub fn err(&mut self, msg: &str) {
        self.printf(LOG_ERR, msg);
    }

    /// Text straight to stderr (kmod's `fprintf(stderr, ...)`).
    pub fn raw(&mut self, text: &str) {
        let _ = write!(self.err, "{text}");
    }

    /// A libkmod message from `libkmod/FILE` at `line` in `func`.
    pub fn kmod(&mut self, prio: i32, file: &str, line: u32, func: &str, msg: &str) {
        match self.kmod {
            Some(p) => {
                if prio <= p {
                    let _ = write!(
                        self.err,
                        "{}: {}: ../libkmod/{file}:{line} {func}() {msg}",
                        self.prog,
                        prio_name(prio)
                    );
                }
            }
            None => {
                if prio <= LOG_ERR {
                    let _ = write!(
                        self.err,
                        "libkmod: {} ../libkmod/{file}:{line} {func}: {msg}",
                        prio_name(prio)
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn formats_like_kmod() {
        let b = Buf::default();
        let mut l = Log::to("rmmod", Box::new(b.clone()));
        l.kmod(
            LOG_ERR,
            "libkmod-module.c",
            856,
            "kmod_module_remove_module",
            "x\n",
        );
        l.setup_kmod(LOG_ERR);
        l.kmod(
            LOG_ERR,
            "libkmod-module.c",
            856,
            "kmod_module_remove_module",
            "y\n",
        );
        l.kmod(
            LOG_INFO,
            "libkmod-module.c",
            949,
            "kmod_module_insert_module",
            "z\n",
        );
        l.err("could not remove module a: b\n");
        l.printf(LOG_WARNING, "hidden\n");
        let s = String::from_utf8(b.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            s,
            "libkmod: ERROR ../libkmod/libkmod-module.c:856 kmod_module_remove_module: x\n\
             rmmod: ERROR: ../libkmod/libkmod-module.c:856 kmod_module_remove_module() y\n\
             rmmod: ERROR: could not remove module a: b\n"
        );
    }
}
