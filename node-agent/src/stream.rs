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

use crate::sparse::SparseFile;
use one_proto::agent::{AgentConfig, StreamEndpoint};
use one_proto::stream::{Accepted, KEY_LINE_MAX, ListEntry, MAX_DATA, Open};
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
        } => write_file(s, &path, max_bytes, WriteMode::new(durable), roots).await,
        Open::Put { path, max_bytes } => {
            write_file(s, &path, max_bytes, WriteMode::PUT, roots).await
        }
        Open::List { path } => list(s, &path, roots).await,
        Open::Remove { path } => remove(s, &path, roots).await,
        Open::Link { path, target } => link(s, &path, &target, roots).await,
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

/// How a stream writes its file.
#[derive(Clone, Copy)]
struct WriteMode {
    /// Flushed to the disk (fsync) before it is put in place.
    durable: bool,
    /// An existing file is replaced (a rename); otherwise it is never touched.
    replace: bool,
    /// Missing directories above the file are made (inside the roots).
    parents: bool,
}

impl WriteMode {
    const PUT: WriteMode = WriteMode {
        durable: true,
        replace: true,
        parents: true,
    };

    fn new(durable: bool) -> WriteMode {
        WriteMode {
            durable,
            replace: false,
            parents: false,
        }
    }
}

/// Refuses `path` unless the nearest existing directory at or above `from` lies inside
/// (or is) one of `roots`: where a missing file or directory would be made is ours.
fn nearest_existing_inside(path: &str, from: &Path, roots: &[PathBuf]) -> Result<(), String> {
    let mut existing = from;
    while std::fs::symlink_metadata(existing).is_err() {
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    let real = existing
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", existing.display()))?;
    let ok = roots.iter().any(|r| {
        r.canonicalize()
            .is_ok_and(|rr| real == rr || real.starts_with(&rr))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{path} is outside the directories this agent serves"
        ))
    }
}

/// Makes the missing directories above `path`, when its nearest existing ancestor lies
/// inside (or is) one of `roots`.
fn make_parents(path: &str, roots: &[PathBuf]) -> Result<(), String> {
    let p = one_drivers::paths::plain_absolute(Path::new(path)).map_err(|e| e.to_string())?;
    let Some(parent) = p.parent() else {
        return Ok(());
    };
    nearest_existing_inside(path, parent, roots)?;
    std::fs::create_dir_all(parent).map_err(|e| write_error(parent, &e))
}

/// Chunks a file writer may have queued (each at most a DATA frame).
const WRITE_QUEUE: usize = 16;

/// Writes the chunks of `rx` one after the other into `f` (sparse: [`SparseFile`]) and
/// flushes it to the disk when `durable`; answers the bytes written.
fn write_chunks(
    f: std::fs::File,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    durable: bool,
) -> std::io::Result<u64> {
    let mut out = SparseFile::new(f);
    while let Some(chunk) = rx.blocking_recv() {
        out.push(&chunk)?;
    }
    let (f, n) = out.finish()?;
    if durable {
        f.sync_all()?;
    }
    Ok(n)
}

async fn write_file(
    s: IncomingStream,
    path: &str,
    max: u64,
    mode: WriteMode,
    roots: &[PathBuf],
) -> Result<String, String> {
    if mode.parents
        && let Err(e) = make_parents(path, roots)
    {
        s.reject(&e);
        return Err(e);
    }
    let real = match inside(path, roots) {
        Ok(r) => r,
        Err(e) => {
            s.reject(&e);
            return Err(e);
        }
    };
    if !mode.replace && tokio::fs::symlink_metadata(&real).await.is_ok() {
        let why = format!("{path} exists: a stream writes new files only");
        s.reject(&why);
        return Err(why);
    }
    let part = PathBuf::from(format!("{}.part", real.display()));
    let _ = tokio::fs::remove_file(&part).await;
    let f = match tokio::fs::OpenOptions::new()
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
        // The file is written by a thread of its own, fed through a bounded queue: the
        // agent's single-threaded runtime keeps reading the stream meanwhile, and no chunk
        // makes a round trip through the blocking pool.
        let file = f.into_std().await;
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        let durable = mode.durable;
        let writer = tokio::task::spawn_blocking(move || write_chunks(file, rx, durable));
        let mut n = 0u64;
        let mut refused = None;
        loop {
            let chunk = match r.read().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    refused = Some(e.to_string());
                    break;
                }
            };
            if n + chunk.len() as u64 > max {
                refused = Some(format!(
                    "{path} would be larger than the {max} bytes allowed"
                ));
                break;
            }
            n += chunk.len() as u64;
            if tx.send(chunk).await.is_err() {
                // The writer stopped: its error says why.
                break;
            }
        }
        drop(tx);
        let written = writer
            .await
            .map_err(|e| format!("the writer of {path} failed: {e}"))?
            .map_err(|e| write_error(&real, &e));
        if let Some(why) = refused {
            return Err(why);
        }
        let written = written?;
        if written != n {
            return Err(format!("{path}: {written} of {n} bytes written"));
        }
        if mode.replace {
            tokio::fs::rename(&part, &real)
                .await
                .map_err(|e| format!("cannot put {path} in place: {e}"))?;
        } else {
            // Never over an existing file: a link fails if one appeared meanwhile.
            tokio::fs::hard_link(&part, &real)
                .await
                .map_err(|e| format!("cannot put {path} in place: {e}"))?;
            let _ = tokio::fs::remove_file(&part).await;
        }
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

/// Answers a finished request: EOF, or a reset with the reason.
async fn conclude(s: IncomingStream, res: Result<String, String>) -> Result<String, String> {
    match res {
        Ok(info) => {
            let (_r, mut w) = s.accept(&Accepted::default()).split();
            w.finish().await.map_err(|e| e.to_string())?;
            Ok(info)
        }
        Err(why) => {
            s.reject(&why);
            Err(why)
        }
    }
}

/// `path` inside the roots, or None when it (or the directory above it) does not exist.
fn inside_or_missing(path: &str, roots: &[PathBuf]) -> Result<Option<PathBuf>, String> {
    let p = one_drivers::paths::plain_absolute(Path::new(path)).map_err(|e| e.to_string())?;
    if std::fs::symlink_metadata(p).is_err() {
        // Missing: fine, when where it would be is ours.
        return nearest_existing_inside(path, p, roots).map(|()| None);
    }
    inside(path, roots).map(Some)
}

async fn list(s: IncomingStream, path: &str, roots: &[PathBuf]) -> Result<String, String> {
    let found = match inside_or_missing(path, roots) {
        Ok(Some(real)) if real.is_dir() => {
            match tokio::task::spawn_blocking(move || one_drivers::tm::local::walk(&real)).await {
                Ok(Ok(es)) => Some(es),
                Ok(Err(e)) => {
                    s.reject(&e.to_string());
                    return Err(e.to_string());
                }
                Err(e) => {
                    s.reject(&e.to_string());
                    return Err(e.to_string());
                }
            }
        }
        Ok(_) => None,
        Err(e) => {
            s.reject(&e);
            return Err(e);
        }
    };
    let entries: Option<Vec<ListEntry>> =
        found.map(|es| es.into_iter().map(ListEntry::from).collect());
    let body = serde_json::to_vec(&entries).map_err(|e| e.to_string())?;
    let (_r, mut w) = s.accept(&Accepted::default()).split();
    w.write(&body).await.map_err(|e| e.to_string())?;
    w.finish().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "listed {path}: {}",
        entries.map_or("missing".to_string(), |e| format!("{} entries", e.len()))
    ))
}

async fn remove(s: IncomingStream, path: &str, roots: &[PathBuf]) -> Result<String, String> {
    let res = match inside_or_missing(path, roots) {
        Ok(None) => Ok(format!("{path} was already gone")),
        Ok(Some(real)) => tokio::task::spawn_blocking(move || {
            one_drivers::tm::files::remove_tree(&real).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map(|_| format!("removed {path}")),
        Err(e) => Err(e),
    };
    conclude(s, res).await
}

/// A link target that stays inside the directory the link is in (`.`, `a/b`).
fn plain_relative(target: &str) -> bool {
    let t = Path::new(target);
    !target.is_empty()
        && t.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
}

async fn link(
    s: IncomingStream,
    path: &str,
    target: &str,
    roots: &[PathBuf],
) -> Result<String, String> {
    let res = if !plain_relative(target) {
        Err(format!(
            "a link to {target}: only relative links inside their directory are made"
        ))
    } else {
        make_parents(path, roots).and_then(|()| {
            let p = Path::new(path);
            let parent = p.parent().unwrap_or(p);
            let name = p
                .file_name()
                .ok_or_else(|| format!("{path} names no file"))?;
            // The directory is judged, not the link (it may point at itself: `.`).
            let dir = inside(&parent.display().to_string(), roots)?;
            one_drivers::tm::files::symlink_replace(Path::new(target), &dir.join(name))
                .map_err(|e| e.to_string())
                .map(|()| format!("{path} -> {target}"))
        })
    };
    conclude(s, res).await
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
