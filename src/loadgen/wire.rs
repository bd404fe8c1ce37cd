//! Closed-loop workers' connections: one pre-built `GET` written, one HTTP/1.1 response read in place.
//!
//! A closed-loop worker owns its connection, so it needs none of the pool's machinery
//! (lock, connection task, channels, header maps): the request bytes are built once per
//! run, the response head is parsed with `httparse` straight from a reused buffer, and
//! the body is skipped by `content-length` or chunked framing. One timer per worker is
//! re-armed for each request. The retry rule is [`Client::get`]'s: once, on a fresh
//! connection, only when the request went out on a reused connection that had not sent
//! one response byte, and never after the timeout.

use std::pin::Pin;
use std::sync::Arc;

use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::client::{Attempted, Client, Outcome};

/// Largest response head accepted (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per response; a response with more is malformed here.
const MAX_HEADERS: usize = 64;

/// One closed-loop worker's keep-alive connection (made or remade as needed) and timer.
pub struct Session {
    client: Arc<Client>,
    conn: Option<Wire>,
    timer: Pin<Box<Sleep>>,
}

impl Client {
    /// A session on this client that owns one connection at a time (closed-loop workers).
    pub fn session(self: &Arc<Self>) -> Session {
        Session {
            client: Arc::clone(self),
            conn: None,
            timer: Box::pin(tokio::time::sleep(self.timeout)),
        }
    }
}

impl Session {
    /// Sends one `GET` and reads the whole response, within the per-request timeout.
    pub async fn get(&mut self) -> Attempted {
        self.timer
            .as_mut()
            .reset(Instant::now() + self.client.timeout);
        let mut retried = false;
        let client = &*self.client;
        let conn = &mut self.conn;
        let work = async {
            let reused = conn.is_some();
            let first = match conn {
                Some(c) => c,
                None => match Wire::connect(client).await {
                    Ok(c) => conn.insert(c),
                    Err(outcome) => return outcome,
                },
            };
            match first.exchange(&client.raw).await {
                Ok((status, keep)) => {
                    if !keep {
                        *conn = None;
                    }
                    return Outcome::Status(status);
                }
                Err(e) if reused && !e.response_started => {
                    tracing::debug!(
                        "reused connection closed before any response byte; retrying once"
                    );
                    retried = true;
                }
                Err(e) => {
                    *conn = None;
                    return e.outcome;
                }
            }
            *conn = None;
            let fresh = match Wire::connect(client).await {
                Ok(c) => conn.insert(c),
                Err(outcome) => return outcome,
            };
            match fresh.exchange(&client.raw).await {
                Ok((status, keep)) => {
                    if !keep {
                        *conn = None;
                    }
                    Outcome::Status(status)
                }
                Err(e) => {
                    *conn = None;
                    e.outcome
                }
            }
        };
        let outcome = tokio::select! {
            biased;
            outcome = work => Some(outcome),
            () = self.timer.as_mut() => None,
        };
        let outcome = outcome.unwrap_or_else(|| {
            // Whatever state the connection is in, it cannot carry the next request.
            self.conn = None;
            Outcome::Timeout
        });
        Attempted { outcome, retried }
    }
}

/// Why one exchange failed, with what the retry rule needs to know.
#[derive(Debug)]
struct Failed {
    outcome: Outcome,
    /// At least one response byte arrived for this request.
    response_started: bool,
}

fn failed(response_started: bool) -> Failed {
    Failed {
        outcome: Outcome::Other,
        response_started,
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// A parsed response head: status, body framing, whether the connection stays open, its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: StatusCode,
    framing: Framing,
    keep_alive: bool,
    len: usize,
}

/// Parses a response head at the start of `buf`; `Ok(None)` when more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        _ => return Err(()),
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(())?;
    let mut keep_alive = resp.version == Some(1);
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(())?;
            if length.is_some_and(|l| l != n) {
                return Err(());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let framing = if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        keep_alive = false;
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        framing,
        keep_alive,
        len,
    }))
}

/// Where a chunked body stands after consuming what is buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunks {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data: this many bytes left, then CRLF.
    Data(u64),
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd,
    /// After the last chunk: trailers up to an empty line.
    Trailers,
    /// The body is complete.
    Done,
}

/// Consumes as much of a chunked body from `buf` as possible; returns bytes consumed.
fn step_chunks(state: &mut Chunks, buf: &[u8]) -> Result<usize, ()> {
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        match *state {
            Chunks::Done => return Ok(pos),
            Chunks::Size => match httparse::parse_chunk_size(rest) {
                Ok(httparse::Status::Complete((used, 0))) => {
                    pos += used;
                    *state = Chunks::Trailers;
                }
                Ok(httparse::Status::Complete((used, n))) => {
                    pos += used;
                    *state = Chunks::Data(n);
                }
                Ok(httparse::Status::Partial) => return Ok(pos),
                Err(_) => return Err(()),
            },
            Chunks::Data(n) => {
                let take = usize::try_from(n).unwrap_or(usize::MAX).min(rest.len());
                pos += take;
                let left = n - take as u64;
                *state = if left == 0 {
                    Chunks::DataEnd
                } else {
                    Chunks::Data(left)
                };
                if left > 0 {
                    return Ok(pos);
                }
            }
            Chunks::DataEnd => {
                if rest.len() < 2 {
                    return Ok(pos);
                }
                if &rest[..2] != b"\r\n" {
                    return Err(());
                }
                pos += 2;
                *state = Chunks::Size;
            }
            Chunks::Trailers => {
                if rest.starts_with(b"\r\n") {
                    pos += 2;
                    *state = Chunks::Done;
                } else if let Some(i) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                    pos += i + 4;
                    *state = Chunks::Done;
                } else if rest.len() > MAX_HEAD {
                    return Err(());
                } else {
                    return Ok(pos);
                }
            }
        }
    }
}

/// A connection owned by one session, with its read buffer.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    async fn connect(client: &Client) -> Result<Wire, Outcome> {
        let stream = TcpStream::connect(client.addr).await.map_err(|err| {
            tracing::debug!(addr = %client.addr, %err, "connect failed");
            Outcome::Connect
        })?;
        let _ = stream.set_nodelay(true);
        Ok(Wire {
            stream,
            buf: Vec::with_capacity(8 * 1024),
        })
    }

    /// Reads more bytes into the buffer; `Ok(0)` is end of stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8 * 1024);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    /// Writes `request` and reads the whole response: its status and whether the
    /// connection can carry another request.
    async fn exchange(&mut self, request: &[u8]) -> Result<(StatusCode, bool), Failed> {
        self.buf.clear();
        if let Err(err) = self.stream.write_all(request).await {
            tracing::debug!(%err, "request write failed");
            return Err(failed(false));
        }
        let head = loop {
            match parse_head(&self.buf) {
                Ok(Some(head))
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    // 100 Continue and friends precede the real response.
                    self.buf.drain(..head.len);
                    continue;
                }
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(()) => {
                    tracing::debug!("malformed response head");
                    return Err(failed(true));
                }
            }
            match self.fill().await {
                Ok(0) => return Err(failed(!self.buf.is_empty())),
                Ok(_) => {}
                Err(err) => {
                    tracing::debug!(%err, "response read failed");
                    return Err(failed(!self.buf.is_empty()));
                }
            }
        };
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok((head.status, false));
        }
        self.buf.drain(..head.len);
        let clean = match head.framing {
            Framing::Empty => self.buf.is_empty(),
            Framing::Length(n) => self.skip_length(n).await?,
            Framing::Chunked => self.skip_chunked().await?,
            Framing::UntilClose => self.skip_to_close().await?,
        };
        Ok((head.status, head.keep_alive && clean))
    }

    /// Skips a `content-length` body; false when bytes beyond it arrived.
    async fn skip_length(&mut self, n: u64) -> Result<bool, Failed> {
        let mut left = n;
        loop {
            let have = self.buf.len() as u64;
            if have >= left {
                return Ok(have == left);
            }
            left -= have;
            self.buf.clear();
            match self.fill().await {
                Ok(0) | Err(_) => return Err(failed(true)),
                Ok(_) => {}
            }
        }
    }

    /// Skips a chunked body; false when bytes beyond it arrived.
    async fn skip_chunked(&mut self) -> Result<bool, Failed> {
        let mut state = Chunks::Size;
        loop {
            let used = step_chunks(&mut state, &self.buf).map_err(|()| {
                tracing::debug!("malformed chunked body");
                failed(true)
            })?;
            self.buf.drain(..used);
            if state == Chunks::Done {
                return Ok(self.buf.is_empty());
            }
            match self.fill().await {
                Ok(0) | Err(_) => return Err(failed(true)),
                Ok(_) => {}
            }
        }
    }

    /// Reads a body delimited by the end of the connection.
    async fn skip_to_close(&mut self) -> Result<bool, Failed> {
        loop {
            self.buf.clear();
            match self.fill().await {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(_) => return Err(failed(true)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_give_status_framing_and_keep_alive() {
        type Want = Result<Option<(u16, Framing, bool)>, ()>;
        let cases: [(&str, &[u8], Want); 11] = [
            (
                "content-length",
                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n",
                Ok(Some((200, Framing::Length(6), true))),
            ),
            (
                "chunked wins over length",
                b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
                Ok(Some((200, Framing::Chunked, true))),
            ),
            (
                "connection close",
                b"HTTP/1.1 503 x\r\ncontent-length: 0\r\nconnection: Close\r\n\r\n",
                Ok(Some((503, Framing::Length(0), false))),
            ),
            (
                "http/1.0 without keep-alive",
                b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
                Ok(Some((200, Framing::Length(0), false))),
            ),
            (
                "http/1.0 with keep-alive",
                b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n",
                Ok(Some((200, Framing::Length(0), true))),
            ),
            (
                "no framing reads to close",
                b"HTTP/1.1 200 OK\r\n\r\nbody",
                Ok(Some((200, Framing::UntilClose, false))),
            ),
            (
                "204 has no body",
                b"HTTP/1.1 204 No Content\r\n\r\n",
                Ok(Some((204, Framing::Empty, true))),
            ),
            ("partial head", b"HTTP/1.1 200 O", Ok(None)),
            ("nothing yet", b"", Ok(None)),
            (
                "bad content-length",
                b"HTTP/1.1 200 OK\r\ncontent-length: six\r\n\r\n",
                Err(()),
            ),
            (
                "conflicting content-lengths",
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                Err(()),
            ),
        ];
        for (name, input, want) in cases {
            let head = parse_head(input);
            let got = head.map(|h| h.map(|h| (h.status.as_u16(), h.framing, h.keep_alive)));
            assert_eq!(got, want, "{name}");
            if let Ok(Some(h)) = head {
                let end = input.windows(4).position(|w| w == b"\r\n\r\n");
                assert_eq!(Some(h.len), end.map(|e| e + 4), "{name}: head length");
            }
        }
        assert_eq!(parse_head(b"garbage\r\n\r\n"), Err(()), "not http");
    }

    #[test]
    fn chunked_bodies_are_consumed_across_any_split() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nx-trailer: 1\r\n\r\n";
        for split in 0..=body.len() {
            let mut state = Chunks::Size;
            let mut buf = body[..split].to_vec();
            let used = step_chunks(&mut state, &buf).unwrap();
            buf.drain(..used);
            buf.extend_from_slice(&body[split..]);
            let used = step_chunks(&mut state, &buf).unwrap();
            assert_eq!((state, used), (Chunks::Done, buf.len()), "split at {split}");
        }
        let cases: [(&[u8], Result<Chunks, ()>); 4] = [
            (b"0\r\n\r\n", Ok(Chunks::Done)),
            (b"3\r\nab", Ok(Chunks::Data(1))),
            (b"2\r\nabXY", Err(())),
            (b"zz\r\n", Err(())),
        ];
        for (input, want) in cases {
            let mut state = Chunks::Size;
            let got = step_chunks(&mut state, input).map(|_| state);
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
        }
    }
}
