//! Measures the peak RSS of one replica scrape of a huge `/metrics` body (issue 11, item 5).
//!
//! Spawns itself as a child that serves `--bytes` of exposition text on 127.0.0.1 (close-
//! delimited, no `Content-Length`, so only a streaming cap can stop the read; pass
//! `--content-length` to announce the size), then scrapes it once with the operator's
//! `Scraper` and prints the process' peak RSS (`VmHWM`) before and after the scrape.
//!
//! ```text
//! cargo run --release --example scrape_rss -- --bytes 1610612736 --timeout-ms 1000
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use autoscaler::metrics::Scraper;

/// Reads `VmHWM` (peak resident set) from `/proc/self/status`, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The value of `--name N` on the command line, if given.
fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Child mode: serve one scrape of `bytes` bytes of exposition text, then exit.
fn serve(bytes: u64, content_length: bool) -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let line = b"http_requests_total{path=\"/padding/padding/padding\",code=\"200\"} 1\n";
    let whole_lines = (1 << 20) / line.len() * line.len();
    let block: Vec<u8> = line.iter().copied().cycle().take(whole_lines).collect();
    for stream in listener.incoming() {
        let mut s = stream?;
        let mut request = [0u8; 4096];
        let _ = s.read(&mut request)?;
        let length = if content_length {
            format!("Content-Length: {bytes}\r\n")
        } else {
            String::new()
        };
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{length}Connection: close\r\n\r\n"
        )?;
        let mut left = bytes;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            if s.write_all(&block[..n]).is_err() {
                break; // the client gave up: that is the point
            }
            left -= n as u64;
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bytes: u64 = arg("--bytes")
        .map(|b| b.parse())
        .transpose()?
        .unwrap_or(1_610_612_736);
    let content_length = std::env::args().any(|a| a == "--content-length");
    if std::env::args().any(|a| a == "--serve") {
        return Ok(serve(bytes, content_length)?);
    }
    let timeout = Duration::from_millis(
        arg("--timeout-ms")
            .map(|t| t.parse())
            .transpose()?
            .unwrap_or(1000),
    );
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["--serve", "--bytes", &bytes.to_string()]);
    if content_length {
        cmd.arg("--content-length");
    }
    let mut child: Child = cmd.stdout(Stdio::piped()).spawn()?;
    let mut out = child.stdout.take().ok_or("no child stdout")?;
    let mut addr_text = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte)? == 1 && byte[0] != b'\n' {
        addr_text.push(byte[0]);
    }
    let addr: SocketAddr = String::from_utf8(addr_text)?.trim().parse()?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let scraper = Scraper::new(timeout)?;
    let before = peak_rss_kib();
    let started = Instant::now();
    let result = rt.block_on(scraper.family_sum(addr, "/metrics", "http_requests_total"));
    let elapsed = started.elapsed();
    let after = peak_rss_kib();
    let _ = child.kill();
    let _ = child.wait();
    let shown = match &result {
        Ok(v) => format!("Ok({v})"),
        Err(e) => format!("Err({e})"),
    };
    println!(
        "body {bytes} B, timeout {timeout:?}: peak RSS before {before} KiB, after {after} KiB \
         (+{} KiB) in {elapsed:.2?}; result {shown}",
        after.saturating_sub(before)
    );
    Ok(())
}
