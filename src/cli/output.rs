//! Terminal manners: stdout that a closed pipe ends quietly, colour only on a terminal.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stdout. A closed pipe (`| head`) is not an error: the output is
/// dropped from then on and the command finishes its work and exits with its own code.
/// Any other write error is reported once on stderr.
pub fn write_stdout(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("autoscaler: cannot write to stdout: {e}");
        }
    }
}

/// True once stdout was found closed (`status --watch` stops then).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Whether logs on stderr may carry ANSI colour: only on a terminal, and never with
/// `NO_COLOR` set (<https://no-color.org>).
pub fn stderr_colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `print!` to stdout through [`write_stdout`].
#[macro_export]
#[doc(hidden)]
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::write_stdout(&format!($($arg)*)) };
}

/// `println!` to stdout through [`write_stdout`].
#[macro_export]
#[doc(hidden)]
macro_rules! outln {
    () => { $crate::cli::output::write_stdout("\n") };
    ($($arg:tt)*) => { $crate::cli::output::write_stdout(&format!("{}\n", format_args!($($arg)*))) };
}
