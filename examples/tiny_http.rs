//! A std-only HTTP responder for runtime tests: answers `200 ok` to every request.
//!
//! Built static (`rustc -C target-feature=+crt-static`) into a `FROM scratch` test image,
//! so the runtime's integration tests need no pull and no release build of the crate.
//! `--port N` picks the listening port (default 8000). SIGTERM exits at once with 0,
//! unless `--ignore-term` is given (then only SIGKILL ends it: tests the stop grace).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

unsafe extern "C" {
    /// libc `signal(2)`; std links libc already.
    fn signal(signum: i32, handler: usize) -> usize;
    /// libc `_exit(2)`: async-signal-safe.
    fn _exit(status: i32) -> !;
}

/// Signal number of SIGTERM on Linux.
const SIGTERM: i32 = 15;
/// `SIG_IGN` handler value.
const SIG_IGN: usize = 1;

extern "C" fn on_term(_signum: i32) {
    // SAFETY: `_exit` is async-signal-safe and takes no pointers.
    unsafe { _exit(0) }
}

fn main() {
    let mut port: u16 = 8000;
    let mut ignore_term = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => match args.next().and_then(|p| p.parse().ok()) {
                Some(p) => port = p,
                None => {
                    eprintln!("tiny_http: --port needs a number");
                    std::process::exit(2);
                }
            },
            "--ignore-term" => ignore_term = true,
            other => {
                eprintln!("tiny_http: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let handler = if ignore_term {
        SIG_IGN
    } else {
        on_term as extern "C" fn(i32) as usize
    };
    // SAFETY: installs a handler that only calls an async-signal-safe function (or SIG_IGN).
    unsafe { signal(SIGTERM, handler) };

    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tiny_http: cannot bind port {port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("tiny_http: listening on {port}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
}

/// Answers every request on one connection with `200 ok` until the peer closes.
fn serve(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    let mut pending = Vec::new();
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            let body = "ok\n";
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
        if pending.len() > 64 * 1024 {
            return;
        }
    }
}
