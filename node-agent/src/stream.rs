//! The agent's side of the byte stream (docs/node-agent.md, "Byte stream"): where its
//! connection comes from, and the streams it serves.
//!
//! * A local agent gets a socket from oned (`--stream-fd N`, a socketpair end).
//! * An agent reached over SSH listens on a Unix socket of its own (in `~/.one-rs/run`,
//!   mode 0600 in a 0700 directory), named with a random key in its hello; oned reaches it
//!   through a second channel of the same SSH connection (`direct-streamlocal`) and must
//!   send the key first.
//!
//! Streams served: `read` of a file and `write` of a new file inside the directories this
//! agent works in (the frontend: its datastores and upload staging area; a host: its
//! datastores), and `tcp` to a port of this host's loopback (a VM's VNC console). A write
//! goes to `<path>.part`, is renamed when the opener finished, and only then answered with
//! EOF; anything else removes the partial file and resets the stream with the reason.

use one_proto::agent::{AgentConfig, StreamEndpoint};
use one_proto::stream::{Accepted, KEY_LINE_MAX, MAX_DATA, Open};
use one_stream::{IncomingStream, Mux, Side, Stream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The directories streams may read and write in, as the configuration says now.
pub type Roots = Arc<dyn Fn() -> Vec<PathBuf> + Send + Sync>;

/// The roots of an agent's configuration: the frontend's datastores root, datastores and
/// staging area; a host's system datastores and shared datastores.
pub fn roots_of(cfg: &AgentConfig) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = Vec::new();
    if let Some(fe) = &cfg.frontend {
        v.push(fe.datastores_root.clone().into());
        v.push(fe.staging_dir.clone().into());
        v.extend(fe.datastores.iter().map(|d| PathBuf::from(&d.path)));
    }
    v.extend(cfg.datastores.iter().map(|d| PathBuf::from(&d.path)));
    v.extend(cfg.shared_datastores.iter().map(|d| PathBuf::from(&d.path)));
    v.retain(|p| !p.as_os_str().is_empty());
    v
}

/// `path` resolved, if it lies strictly inside one of `roots` (a new file is judged by its
/// directory).
fn inside(path: &str, roots: &[PathBuf]) -> Result<PathBuf, String> {
    let p = Path::new(path);
    let mut last = String::from("no directory is open to byte streams here");
    for r in roots {
        match one_drivers::paths::resolved_inside(r, p) {
            Ok(real) => return Ok(real),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "{path} is outside the directories this agent serves ({last})"
    ))
}

/// Serves the streams the other side opens on `mux`, until it closes.
pub async fn serve(mut incoming: one_stream::Incoming, roots: Roots) {
    while let Some(s) = incoming.recv().await {
        let roots = roots();
        tokio::spawn(async move { serve_one(s, &roots).await });
    }
}

async fn serve_one(s: IncomingStream, roots: &[PathBuf]) {
    let what = format!("{:?}", s.request);
    let res = match s.request.clone() {
        Open::Read { path, offset } => read_file(s, &path, offset, roots).await,
        Open::Write {
            path,
            max_bytes,
            durable,
        } => write_file(s, &path, max_bytes, durable, roots).await,
        Open::Tcp { port } => tcp(s, port).await,
    };
    match res {
        Ok(info) => tracing::info!(stream = %what, %info, "byte stream done"),
        Err(e) => tracing::warn!(stream = %what, error = %e, "byte stream failed"),
    }
}

async fn read_file(
    s: IncomingStream,
    path: &str,
    offset: u64,
    roots: &[PathBuf],
) -> Result<String, String> {
    let real = match inside(path, roots) {
        Ok(r) => r,
        Err(e) => {
            s.reject(&e);
            return Err(e);
        }
    };
    let mut f = match tokio::fs::File::open(&real).await {
        Ok(f) => f,
        Err(e) => {
            let why = format!("cannot open {path}: {e}");
            s.reject(&why);
            return Err(why);
        }
    };
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    if offset > 0
        && let Err(e) = f.seek(std::io::SeekFrom::Start(offset)).await
    {
        let why = format!("cannot seek {path}: {e}");
        s.reject(&why);
        return Err(why);
    }
    let st = s.accept(&Accepted {
        size: Some(len.saturating_sub(offset)),
    });
    let (_r, mut w) = st.split();
    let mut buf = vec![0u8; MAX_DATA];
    let mut n = 0u64;
    loop {
        let k = match f.read(&mut buf).await {
            Ok(k) => k,
            Err(e) => {
                let why = format!("cannot read {path}: {e}");
                w.reset(&why);
                return Err(why);
            }
        };
        if k == 0 {
            break;
        }
        w.write(&buf[..k]).await.map_err(|e| e.to_string())?;
        n += k as u64;
    }
    w.finish().await.map_err(|e| e.to_string())?;
    Ok(format!("{n} bytes of {path} sent"))
}

/// The words of a failed write: a full file system as OpenNebula says it.
fn write_error(path: &Path, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => format!(
            "Not enough space in {}: {e}",
            path.parent().unwrap_or(path).display()
        ),
        _ => format!("cannot write {}: {e}", path.display()),
    }
}

async fn write_file(
    s: IncomingStream,
    path: &str,
    max: u64,
    durable: bool,
    roots: &[PathBuf],
) -> Result<String, String> {
    let real = match inside(path, roots) {
        Ok(r) => r,
        Err(e) => {
            s.reject(&e);
            return Err(e);
        }
    };
    if tokio::fs::symlink_metadata(&real).await.is_ok() {
        let why = format!("{path} exists: a stream writes new files only");
        s.reject(&why);
        return Err(why);
    }
    let part = PathBuf::from(format!("{}.part", real.display()));
    let _ = tokio::fs::remove_file(&part).await;
    let mut f = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .await
    {
        Ok(f) => f,
        Err(e) => {
            let why = write_error(&part, &e);
            s.reject(&why);
            return Err(why);
        }
    };
    let st: Stream = s.accept(&Accepted::default());
    let (mut r, mut w) = st.split();
    let res: Result<u64, String> = async {
        let mut n = 0u64;
        while let Some(chunk) = r.read().await.map_err(|e| e.to_string())? {
            n += chunk.len() as u64;
            if n > max {
                return Err(format!(
                    "{path} would be larger than the {max} bytes allowed"
                ));
            }
            f.write_all(&chunk)
                .await
                .map_err(|e| write_error(&real, &e))?;
        }
        if durable {
            f.sync_all().await.map_err(|e| write_error(&real, &e))?;
        } else {
            f.flush().await.map_err(|e| write_error(&real, &e))?;
        }
        // Never over an existing file: a link fails if one appeared meanwhile.
        tokio::fs::hard_link(&part, &real)
            .await
            .map_err(|e| format!("cannot put {path} in place: {e}"))?;
        let _ = tokio::fs::remove_file(&part).await;
        Ok(n)
    }
    .await;
    match res {
        Ok(n) => {
            // The file is in place: the opener reads our end as the confirmation.
            w.finish().await.map_err(|e| e.to_string())?;
            Ok(format!("{n} bytes written to {path}"))
        }
        Err(why) => {
            let _ = tokio::fs::remove_file(&part).await;
            w.reset(&why);
            Err(why)
        }
    }
}

async fn tcp(s: IncomingStream, port: u16) -> Result<String, String> {
    if port == 0 {
        s.reject("port 0");
        return Err("port 0".into());
    }
    // The loopback only: a console listens there, nothing else is reached this way.
    let conn = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        Ok(c) => c,
        Err(_) => match tokio::net::TcpStream::connect(("::1", port)).await {
            Ok(c) => c,
            Err(e) => {
                let why = format!("nothing answers on port {port} of this host's loopback: {e}");
                s.reject(&why);
                return Err(why);
            }
        },
    };
    let st = s.accept(&Accepted::default());
    let (mut sr, mut sw) = st.split();
    let (mut cr, mut cw) = conn.into_split();
    let up = tokio::spawn(async move {
        let r = one_stream::send_all(&mut cr, &mut sw).await;
        if let Err(e) = &r {
            sw.reset(&e.to_string());
        }
        r
    });
    let down = one_stream::receive_all(&mut sr, &mut cw).await;
    let _ = cw.shutdown().await;
    let up = up.await.map_err(|e| e.to_string())?;
    Ok(format!(
        "port {port}: {} bytes in, {} bytes out",
        up.unwrap_or(0),
        down.unwrap_or(0)
    ))
}

/// A Unix socket for oned's stream connection, with its key: made before the hello (which
/// says where it is), removed when the agent ends.
pub struct Listener {
    pub endpoint: StreamEndpoint,
    listener: tokio::net::UnixListener,
    path: PathBuf,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The directory of the agents' sockets.
fn run_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h).join(".one-rs").join("run"),
        _ => std::env::temp_dir().join(format!("one-rs-run-{}", unsafe_uid())),
    }
}

fn unsafe_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Removes the sockets of agents that are gone (`agent-<pid>-...`).
fn sweep(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("agent-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Listener {
    pub fn bind() -> std::io::Result<Listener> {
        use std::os::unix::fs::PermissionsExt;
        let dir = run_dir();
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        sweep(&dir);
        let path = dir.join(format!(
            "agent-{}-{}.sock",
            std::process::id(),
            random_hex(4)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Listener {
            endpoint: StreamEndpoint {
                socket: path.display().to_string(),
                key: random_hex(16),
            },
            listener,
            path,
        })
    }

    /// Takes the connections that present the key, each as its own stream connection.
    pub async fn serve(self, roots: Roots, muxes: Arc<Mutex<Vec<Mux>>>) {
        loop {
            let Ok((mut conn, _)) = self.listener.accept().await else {
                continue;
            };
            let key = self.endpoint.key.clone();
            let roots = roots.clone();
            let muxes = muxes.clone();
            tokio::spawn(async move {
                let mut line = Vec::new();
                let got = tokio::time::timeout(Duration::from_secs(10), async {
                    let mut b = [0u8; 1];
                    while line.len() < KEY_LINE_MAX {
                        if conn.read_exact(&mut b).await.is_err() {
                            return false;
                        }
                        if b[0] == b'\n' {
                            return true;
                        }
                        line.push(b[0]);
                    }
                    false
                })
                .await;
                if got != Ok(true) || line != key.as_bytes() {
                    tracing::warn!("a byte stream connection without the key: closed");
                    return;
                }
                let (r, w) = conn.into_split();
                let (mux, incoming) = Mux::start(r, w, Side::Agent);
                if let Ok(mut m) = muxes.lock() {
                    m.push(mux);
                }
                tracing::info!("byte stream connection from oned");
                serve(incoming, roots).await;
            });
        }
    }
}

/// The stream connection oned handed over as file descriptor `fd`.
pub fn from_fd(fd: i32) -> std::io::Result<(Mux, one_stream::Incoming)> {
    use std::os::unix::io::FromRawFd;
    // SAFETY: oned passed this descriptor to this process for this use only (--stream-fd);
    // nothing else in the agent owns or closes it.
    let std_sock = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    std_sock.set_nonblocking(true)?;
    let sock = tokio::net::UnixStream::from_std(std_sock)?;
    let (r, w) = sock.into_split();
    Ok(Mux::start(r, w, Side::Agent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_stream::StreamError;

    fn connected(roots: Vec<PathBuf>) -> Mux {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let (oned, _) = Mux::start(ar, aw, Side::Oned);
        let (_agent, inc) = Mux::start(br, bw, Side::Agent);
        tokio::spawn(serve(inc, Arc::new(move || roots.clone())));
        oned
    }

    #[tokio::test]
    async fn writes_land_whole_or_not_at_all_and_only_inside_the_roots() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("ds");
        std::fs::create_dir(&root).unwrap();
        let mux = connected(vec![root.clone()]);
        let target = root.join("up1");
        let (st, _) = mux
            .open(&Open::Write {
                path: target.display().to_string(),
                max_bytes: 10,
                durable: true,
            })
            .await
            .unwrap();
        let (mut r, mut w) = st.split();
        w.write(b"0123456789").await.unwrap();
        w.finish().await.unwrap();
        assert_eq!(
            r.read().await.unwrap(),
            None,
            "the agent's end: the file is in place"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"0123456789");
        // Never over an existing file.
        let e = mux
            .open(&Open::Write {
                path: target.display().to_string(),
                max_bytes: 10,
                durable: true,
            })
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("exists"), "{e}");
        // Too large: reset, nothing left.
        let big = root.join("up2");
        let (st, _) = mux
            .open(&Open::Write {
                path: big.display().to_string(),
                max_bytes: 4,
                durable: true,
            })
            .await
            .unwrap();
        let (mut r, mut w) = st.split();
        let _ = w.write(b"0123456789").await;
        let _ = w.finish().await;
        let e = r.read().await.unwrap_err();
        assert!(
            matches!(e, StreamError::Reset(ref m) if m.contains("larger")),
            "{e:?}"
        );
        assert!(!big.exists());
        assert!(
            std::fs::read_dir(&root).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".part"))
        );
        // Outside the roots, and through a link out of them.
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        for p in [
            "/etc/x".to_string(),
            root.join("etc/passwd2").display().to_string(),
        ] {
            let e = mux
                .open(&Open::Write {
                    path: p.clone(),
                    max_bytes: 1,
                    durable: true,
                })
                .await
                .err()
                .unwrap();
            assert!(e.to_string().contains("outside"), "{p}: {e}");
            let e = mux
                .open(&Open::Read { path: p, offset: 0 })
                .await
                .err()
                .unwrap();
            assert!(e.to_string().contains("outside"), "{e}");
        }
        // A writer that goes away: the partial file is removed.
        let gone = root.join("up3");
        let (st, _) = mux
            .open(&Open::Write {
                path: gone.display().to_string(),
                max_bytes: 100,
                durable: true,
            })
            .await
            .unwrap();
        let (_r, mut w) = st.split();
        w.write(b"half").await.unwrap();
        drop((_r, w));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!gone.exists() && !root.join("up3.part").exists());
    }

    #[tokio::test]
    async fn reads_and_loopback_tcp() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("disk.0");
        std::fs::write(&f, b"hello disk").unwrap();
        let mux = connected(vec![d.path().to_path_buf()]);
        let (st, acc) = mux
            .open(&Open::Read {
                path: f.display().to_string(),
                offset: 6,
            })
            .await
            .unwrap();
        assert_eq!(acc.size, Some(4));
        let (mut r, _w) = st.split();
        assert_eq!(r.read_to_end().await.unwrap(), b"disk");

        // An echo server on the loopback, as a console would be.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).await.unwrap();
            c.write_all(&buf).await.unwrap();
        });
        let (st, _) = mux.open(&Open::Tcp { port }).await.unwrap();
        let (mut r, mut w) = st.split();
        w.write(b"RFB 0").await.unwrap();
        assert_eq!(r.read_to_end().await.unwrap(), b"RFB 0");
        let e = mux.open(&Open::Tcp { port: 1 }).await.err().unwrap();
        assert!(e.to_string().contains("nothing answers"), "{e}");
    }
}
