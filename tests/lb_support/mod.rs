//! Shared fixture for the lb integration tests: the nginx binary, a guard that stops a
//! test's nginx and removes its directory, in-process HTTP backends, and a client.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::net::TcpListener;

/// The nginx binary, or `None` (test skipped) when absent; with CI=true absence panics.
pub fn nginx_bin() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|p| p.is_file())
    });
    let found = from_path.or_else(|| {
        let p = PathBuf::from("/usr/sbin/nginx");
        p.is_file().then_some(p)
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "nginx binary not found and CI=true"
        );
        eprintln!("SKIP: nginx binary not found");
    }
    found
}

/// A temp directory whose nginx master (pid files `*.pid` inside it) is killed on drop.
pub struct NginxDir {
    pub dir: tempfile::TempDir,
}

impl NginxDir {
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("lb-test-{tag}-"))
            .tempdir()
            .unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NginxDir {
    fn drop(&mut self) {
        // Pid files at the top level or one directory down (a manager's prefix).
        let mut dirs = vec![self.dir.path().to_owned()];
        let mut pid_files = Vec::new();
        while let Some(dir) = dirs.pop() {
            let depth = dir
                .strip_prefix(self.dir.path())
                .map_or(0, |p| p.components().count());
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() && depth == 0 {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "pid") {
                    pid_files.push(path);
                }
            }
        }
        for path in pid_files {
            if let Some(pid) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
            {
                kill_master(pid);
            }
        }
        // Workers whose master was killed: recognised by a file of ours they hold open.
        for pid in nginx_holding_files_under(self.dir.path()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Kills an nginx master and its children, waiting briefly for them to go.
pub fn kill_master(pid: i32) {
    if !cmdline(pid).starts_with("nginx: master") {
        return;
    }
    let children = children(pid);
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while is_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    for child in children {
        if cmdline(child).starts_with("nginx:") {
            let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
        }
    }
}

pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Alive and not a zombie.
pub fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s[s.rfind(')')? + 1..].trim_start().to_owned();
            rest.chars().next()
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

fn ppid(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Live children of `pid`.
pub fn children(pid: i32) -> BTreeSet<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|c| ppid(*c) == Some(pid) && is_alive(*c))
        .collect()
}

/// Worker pids of `master` (including ones shutting down).
pub fn workers(master: i32) -> BTreeSet<i32> {
    children(master)
        .into_iter()
        .filter(|c| cmdline(*c).starts_with("nginx: worker"))
        .collect()
}

/// Live nginx processes holding a file under `dir` open.
pub fn nginx_holding_files_under(dir: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| is_alive(*p) && cmdline(*p).starts_with("nginx:"))
        .filter(|p| {
            std::fs::read_dir(format!("/proc/{p}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|target| target.starts_with(dir))
        })
        .collect()
}

/// Live nginx processes whose command line mentions `needle`.
pub fn nginx_processes_mentioning(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            is_alive(*p) && cmdline(*p).starts_with("nginx:") && cmdline(*p).contains(needle)
        })
        .collect()
}

/// An HTTP/1.1 backend on 127.0.0.1:`port` answering 200 with body `tag`; stops on drop.
pub struct Backend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start(port: u16, tag: &'static str) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| async move {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(tag))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A keep-alive HTTP client.
pub struct Client(HyperClient<HttpConnector, Empty<Bytes>>);

impl Client {
    pub fn new() -> Self {
        Self(HyperClient::builder(TokioExecutor::new()).build_http())
    }

    /// GET `url`: status and body, or the error as text.
    pub async fn get(&self, url: &str) -> Result<(StatusCode, String), String> {
        let fut = self.0.get(url.parse().unwrap());
        let response = tokio::time::timeout(Duration::from_secs(5), fut)
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Polls `url` until `accept(body)` holds for a 200, for at most `patience`.
    pub async fn wait_for(
        &self,
        url: &str,
        patience: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> bool {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok((StatusCode::OK, body)) = self.get(url).await
                && accept(&body)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// A client on one keep-alive connection that behaves like curl or Go's `net/http`: a GET
/// that dies on a *reused* connection before any response byte (the server closed the idle
/// connection as the request went out, as nginx's old workers do on reload) is retried once
/// on a fresh connection. Failures on a fresh connection are returned.
pub struct KeepAliveClient {
    addr: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>,
    /// Requests answered on the current connection.
    served: u32,
    /// Connections opened.
    pub connections: u32,
    /// Requests retried after a reused connection closed under them.
    pub retried: u32,
}

impl KeepAliveClient {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            sender: None,
            served: 0,
            connections: 0,
            retried: 0,
        }
    }

    async fn connect(&mut self) -> Result<(), String> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        self.served = 0;
        self.connections += 1;
        Ok(())
    }

    async fn once(&mut self) -> Result<(StatusCode, String), String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.connect().await?;
        }
        let sender = self.sender.as_mut().unwrap();
        sender.ready().await.map_err(|e| e.to_string())?;
        let request = hyper::Request::get("/")
            .header("host", self.addr.to_string())
            .body(Empty::new())
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        self.served += 1;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    pub async fn get(&mut self) -> Result<(StatusCode, String), String> {
        let reused = self.sender.as_ref().is_some_and(|s| !s.is_closed()) && self.served > 0;
        match self.once().await {
            Ok(r) => Ok(r),
            Err(_) if reused => {
                self.sender = None;
                self.retried += 1;
                self.once().await
            }
            Err(e) => Err(e),
        }
    }
}
