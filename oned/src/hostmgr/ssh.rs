//! The SSH [`Transport`]: how oned reaches the agent of a host that is not this machine.
//!
//! One SSH connection per session (russh), authenticated with oned's own ed25519 key
//! (`<data dir>/ssh/id_ed25519`, made at the first start; `oned ssh-key` prints the public
//! half). The host key must be in `<data dir>/ssh/known_hosts` (OpenSSH format, plain
//! entries, `[host]:port` for ports other than 22): an unknown host is refused with the way
//! to accept it, a changed key is refused as a possible man-in-the-middle.
//!
//! On that connection, exec channels: `sha256sum` of the remote agent (its build is the
//! SHA-256 of its file, what the hello carries), an upload of oned's own agent when it is
//! missing or another build (atomic replace), then the agent itself, `<path> --stdio`, whose
//! stdout/stdin become the [`AgentStream`] and whose stderr goes to its [`StderrTail`]. The
//! handshake and everything after it are the same as for the local pipe (`host.rs`).

use super::transport::{AgentStream, ConnectFuture, StderrTail, Target, Transport, TransportError};
use crate::config::HostsConfig;
use crate::daemon::Oned;
use one_proto::objects::host::Host;
use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::ssh_key::{LineEnding, private::Ed25519Keypair};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// File names under `<data dir>/ssh`.
pub const KEY_FILE: &str = "id_ed25519";
pub const PUB_FILE: &str = "id_ed25519.pub";
pub const KNOWN_HOSTS: &str = "known_hosts";

/// Template attributes of a host read at each connection.
pub const ATTR_PORT: &str = "SSH_PORT";
pub const ATTR_ACCEPT_NEW: &str = "SSH_ACCEPT_NEW_HOST_KEY";

/// Bytes of the agent's stdout buffered on oned's side (backpressure beyond).
const STDOUT_BUFFER: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Key {
        path: String,
        source: russh::keys::ssh_key::Error,
    },
    /// A connection, authentication or host key failure, said for the admin.
    #[error("{0}")]
    Refused(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SshError + '_ {
    move |source| SshError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn key_err(path: &Path) -> impl FnOnce(russh::keys::ssh_key::Error) -> SshError + '_ {
    move |source| SshError::Key {
        path: path.display().to_string(),
        source,
    }
}

// ---------------------------------------------------------------------------------------
// oned's key pair

/// This machine's name, for the key's comment.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Writes `data` to `path` with `mode` through a temporary file, so that a crash never
/// leaves half a file: renamed over `path`, or when `exclusive` linked to it, which fails
/// with `AlreadyExists` when another process made it first.
fn write_atomic(path: &Path, data: &[u8], mode: u32, exclusive: bool) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let res = (|| {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        if exclusive {
            std::fs::hard_link(&tmp, path)
        } else {
            std::fs::rename(&tmp, path)
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    res
}

fn read_key(path: &Path) -> Result<PrivateKey, SshError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    PrivateKey::from_openssh(text).map_err(key_err(path))
}

/// oned's key pair in `dir` (`<data dir>/ssh`), made when missing: `id_ed25519` (0600) and
/// `id_ed25519.pub`, OpenSSH formats, comment `oned@<hostname>`. The `.pub` is written
/// again when missing or not the private key's. Safe against a concurrent first use (oned
/// starting while `oned ssh-key` runs): one key wins, both use it.
pub fn ensure_key(dir: &Path) -> Result<PrivateKey, SshError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let (priv_path, pub_path) = (dir.join(KEY_FILE), dir.join(PUB_FILE));
    let key = if priv_path.exists() {
        read_key(&priv_path)?
    } else {
        let mut seed = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut seed);
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        key.set_comment(format!("oned@{}", hostname()));
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(key_err(&priv_path))?;
        match write_atomic(&priv_path, pem.as_bytes(), 0o600, true) {
            Ok(()) => {
                tracing::info!(file = %priv_path.display(), "oned's SSH key pair created");
                key
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key(&priv_path)?,
            Err(e) => return Err(io_err(&priv_path)(e)),
        }
    };
    let line = format!(
        "{}\n",
        key.public_key().to_openssh().map_err(key_err(&pub_path))?
    );
    if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(line.as_str()) {
        write_atomic(&pub_path, line.as_bytes(), 0o644, false).map_err(io_err(&pub_path))?;
    }
    Ok(key)
}

/// The public key line admins put in `authorized_keys` (`oned ssh-key`).
pub fn public_key_line(dir: &Path) -> Result<String, SshError> {
    ensure_key(dir)?;
    let p = dir.join(PUB_FILE);
    let text = std::fs::read_to_string(&p).map_err(io_err(&p))?;
    Ok(text.trim().to_string())
}

// ---------------------------------------------------------------------------------------
// known_hosts

/// How a host's entry is written: `host`, or `[host]:port` for ports other than 22.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

#[derive(Debug, PartialEq)]
pub enum Known {
    /// The key is recorded for the host.
    Yes,
    /// The host has no entry.
    Unknown,
    /// The host has entries, none with this key: `line` is the first (1-based).
    Mismatch { line: usize },
}

/// Whether `pattern` (one comma-separated entry list of a known_hosts line) names `name`
/// (a [`host_pattern`]). Plain names only, compared without case, `!` negations honoured;
/// hashed (`|1|`) and wildcard entries are not matched: oned writes plain entries.
fn names(patterns: &str, name: &str) -> bool {
    let mut hit = false;
    for p in patterns.split(',') {
        if let Some(neg) = p.strip_prefix('!') {
            if neg.eq_ignore_ascii_case(name) {
                return false;
            }
        } else if p.eq_ignore_ascii_case(name) {
            hit = true;
        }
    }
    hit
}

/// Looks `key` up for `host`:`port` in the text of a known_hosts file. Lines with a marker
/// (`@cert-authority`, `@revoked`) are skipped, and so are lines that do not parse.
pub fn check_known(text: &str, host: &str, port: u16, key: &PublicKey) -> Known {
    let name = host_pattern(host, port);
    let mut first = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(pats), Some(alg), Some(b64)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if !names(pats, &name) {
            continue;
        }
        let Ok(recorded) = PublicKey::from_openssh(&format!("{alg} {b64}")) else {
            continue;
        };
        if recorded.key_data() == key.key_data() {
            return Known::Yes;
        }
        first.get_or_insert(i + 1);
    }
    match first {
        Some(line) => Known::Mismatch { line },
        None => Known::Unknown,
    }
}

/// The known_hosts line for a key (without the key's comment).
pub fn known_line(host: &str, port: u16, key: &PublicKey) -> Result<String, SshError> {
    let mut k = key.clone();
    k.set_comment("");
    let text = k.to_openssh().map_err(|source| SshError::Key {
        path: KNOWN_HOSTS.into(),
        source,
    })?;
    Ok(format!("{} {}", host_pattern(host, port), text.trim()))
}

/// Appends the host's key to the file (after removing the host's entries when `replace`).
fn learn(
    path: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
    replace: bool,
) -> Result<(), SshError> {
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err(path)(e)),
    };
    let name = host_pattern(host, port);
    let mut out = String::new();
    for line in old.lines() {
        let t = line.trim();
        let drop = replace
            && !t.starts_with('#')
            && !t.starts_with('@')
            && t.split_whitespace().next().is_some_and(|p| names(p, &name));
        if !drop {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&known_line(host, port, key)?);
    out.push('\n');
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    write_atomic(path, out.as_bytes(), 0o644, false).map_err(io_err(path))
}

fn fingerprint(key: &PublicKey) -> String {
    format!(
        "{} key {}",
        key.algorithm(),
        key.fingerprint(HashAlg::Sha256)
    )
}

// ---------------------------------------------------------------------------------------
// Shell words for the remote commands

/// `s` as one word for the remote user's shell.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-+:,@%=".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A remote path as a shell word; `~/...` is relative to the remote user's home.
pub fn shell_path(p: &str) -> String {
    if p == "~" {
        "\"$HOME\"".into()
    } else if let Some(rest) = p.strip_prefix("~/") {
        format!("\"$HOME\"/{}", shell_quote(rest))
    } else {
        shell_quote(p)
    }
}

/// The directory of a remote path ("." for a bare name, which the shell takes from home).
fn remote_dir(p: &str) -> &str {
    match p.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((d, _)) => d,
        None => ".",
    }
}

/// Prints the SHA-256 of the remote agent, or `absent`.
pub fn check_command(path: &str) -> String {
    let p = shell_path(path);
    format!("if [ -f {p} ]; then sha256sum < {p}; else echo absent; fi")
}

/// Reads the agent from stdin into a temporary file next to `path`, then renames it over
/// `path`: an agent still running keeps its old file, and nobody sees half a binary.
pub fn install_command(path: &str) -> String {
    let p = shell_path(path);
    let tmp = format!("{}$$", shell_path(&format!("{path}.tmp.")));
    let dir = shell_path(remote_dir(path));
    format!(
        "T={tmp}; umask 077 && mkdir -p {dir} && cat > \"$T\" && chmod 755 \"$T\" && \
         mv -f \"$T\" {p} || {{ rm -f \"$T\"; exit 1; }}"
    )
}

/// Starts the agent in place of the shell.
pub fn agent_command(path: &str, target: &Target) -> String {
    let mut cmd = format!("exec {}", shell_path(path));
    for a in target.args() {
        cmd.push(' ');
        cmd.push_str(a);
    }
    cmd
}

/// The user oned runs as (its effective uid's name in /etc/passwd, else $USER).
pub fn current_user() -> Option<String> {
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
        })
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
}

// ---------------------------------------------------------------------------------------
// The connection

/// The host key policy of one connection.
#[derive(Clone)]
enum Policy {
    /// Check against known_hosts; accept (and record) an unknown host when `accept_new`.
    Check { accept_new: bool },
    /// Record what the host presents and refuse (`oned ssh-accept-host`).
    Capture,
}

struct Client {
    known_hosts: PathBuf,
    host: String,
    port: u16,
    policy: Policy,
    /// Why the key was refused, or the key captured.
    verdict: Arc<Mutex<Option<String>>>,
    captured: Arc<Mutex<Option<PublicKey>>>,
    /// Serializes writers of known_hosts within oned.
    file_lock: Arc<Mutex<()>>,
}

impl Client {
    fn refuse(&self, why: String) -> Result<bool, russh::Error> {
        if let Ok(mut v) = self.verdict.lock() {
            *v = Some(why);
        }
        Ok(false)
    }

    fn check(&self, key: &PublicKey) -> Result<bool, russh::Error> {
        let accept_new = match self.policy {
            Policy::Capture => {
                if let Ok(mut c) = self.captured.lock() {
                    *c = Some(key.clone());
                }
                return Ok(false);
            }
            Policy::Check { accept_new } => accept_new,
        };
        let (host, port, file) = (&self.host, self.port, self.known_hosts.display());
        let _guard = self.file_lock.lock();
        let text = match std::fs::read_to_string(&self.known_hosts) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return self.refuse(format!("cannot read {file}: {e}")),
        };
        match check_known(&text, host, port, key) {
            Known::Yes => Ok(true),
            Known::Mismatch { line } => self.refuse(format!(
                "host key mismatch for {host} port {port}, possible man-in-the-middle attack: \
                 the host presented the {}, which is not the key recorded in {file} line \
                 {line}. If the host's key was changed on purpose, delete that line or run: \
                 oned ssh-accept-host {host} --port {port} --replace",
                fingerprint(key)
            )),
            Known::Unknown if accept_new => {
                if let Err(e) = learn(&self.known_hosts, host, port, key, false) {
                    return self.refuse(format!("cannot record the host key: {e}"));
                }
                tracing::warn!(host = %host, port, key = %fingerprint(key), "new host key accepted and recorded (accept_new_host_keys)");
                Ok(true)
            }
            Known::Unknown => self.refuse(format!(
                "host key of {host} port {port} is not known ({}), so oned does not trust it. \
                 If that is the host's key, accept it with: oned ssh-accept-host {host} \
                 --port {port} (it adds it to {file}); or set {ATTR_ACCEPT_NEW}=YES in the \
                 host's template, or accept_new_host_keys = true in [hosts], to accept a new \
                 host's key at its first connection",
                fingerprint(key)
            )),
        }
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.check(key),
            PublicKeyOrCertificate::Certificate(_) => self.refuse(
                "the host presented a certificate: oned checks plain host keys only".into(),
            ),
        }
    }
}

/// The SSH settings of oned (`[hosts]`) and where its files are.
#[derive(Clone, Debug)]
pub struct SshSettings {
    /// `<data dir>/ssh`.
    pub dir: PathBuf,
    pub user: String,
    pub port: u16,
    pub accept_new: bool,
    pub remote_agent_path: String,
    pub connect_timeout: Duration,
    /// Bound of the version check and of the upload.
    pub command_timeout: Duration,
}

impl SshSettings {
    pub fn new(c: &HostsConfig, data_dir: &Path) -> SshSettings {
        let user = if c.ssh_user.is_empty() {
            current_user().unwrap_or_else(|| "root".into())
        } else {
            c.ssh_user.clone()
        };
        SshSettings {
            dir: data_dir.join("ssh"),
            user,
            port: c.ssh_port,
            accept_new: c.accept_new_host_keys,
            remote_agent_path: c.remote_agent_path.clone(),
            connect_timeout: Duration::try_from_secs_f64(c.ssh_connect_timeout_seconds)
                .unwrap_or(Duration::from_secs(10)),
            command_timeout: Duration::try_from_secs_f64(c.request_timeout_seconds)
                .unwrap_or(Duration::from_secs(60)),
        }
    }

    fn known_hosts(&self) -> PathBuf {
        self.dir.join(KNOWN_HOSTS)
    }
}

/// Opens an SSH connection with `policy`. Errors are said for the host's ERROR.
async fn open(
    s: &SshSettings,
    host: &str,
    port: u16,
    policy: Policy,
    file_lock: Arc<Mutex<()>>,
    captured: Arc<Mutex<Option<PublicKey>>>,
) -> Result<Handle<Client>, TransportError> {
    let verdict = Arc::new(Mutex::new(None));
    let handler = Client {
        known_hosts: s.known_hosts(),
        host: host.to_string(),
        port,
        policy,
        verdict: verdict.clone(),
        captured: captured.clone(),
        file_lock,
    };
    let config = Arc::new(client::Config {
        nodelay: true,
        ..Default::default()
    });
    let t = s.connect_timeout;
    let res = tokio::time::timeout(t, client::connect(config, (host, port), handler)).await;
    match res {
        Err(_) => Err(TransportError::Unreachable(format!(
            "cannot connect to {host} port {port} over SSH: no answer within {} s",
            t.as_secs_f64()
        ))),
        Ok(Ok(h)) => Ok(h),
        Ok(Err(e)) => {
            let why = verdict.lock().ok().and_then(|mut v| v.take());
            match why {
                // The host key was refused.
                Some(w) => Err(TransportError::Refused(w)),
                None if captured.lock().is_ok_and(|c| c.is_some()) => {
                    // Capture mode: the key is what was wanted.
                    Err(TransportError::Refused(String::new()))
                }
                None => Err(TransportError::Unreachable(format!(
                    "cannot connect to {host} port {port} over SSH: {}",
                    describe(&e)
                ))),
            }
        }
    }
}

fn describe(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// Output of a command run to its end.
struct Output {
    status: Option<u32>,
    signal: Option<String>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `cmd` on its own channel, with `stdin` as its input (or none), within `timeout`.
async fn run(
    h: &Handle<Client>,
    cmd: &str,
    stdin: Option<tokio::fs::File>,
    timeout: Duration,
) -> Result<Output, String> {
    let job = async {
        let mut ch = h
            .channel_open_session()
            .await
            .map_err(|e| format!("cannot open an SSH channel: {}", describe(&e)))?;
        ch.exec(true, cmd)
            .await
            .map_err(|e| format!("cannot run a command over SSH: {}", describe(&e)))?;
        if let Some(f) = stdin {
            ch.data(f)
                .await
                .map_err(|e| format!("cannot send data over SSH: {}", describe(&e)))?;
        }
        ch.eof()
            .await
            .map_err(|e| format!("cannot send data over SSH: {}", describe(&e)))?;
        let mut out = Output {
            status: None,
            signal: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, .. } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    out.signal = Some(format!("{signal_name:?}"));
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, job)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "a command over SSH took more than {} s",
                timeout.as_secs_f64()
            ))
        })
}

/// The SHA-256 a `check_command` printed, if it printed one.
fn parse_sha(stdout: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(stdout);
    let word = s.split_whitespace().next()?;
    (word.len() == 64 && word.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| word.to_ascii_lowercase())
}

/// What a session holds: the connection and the task pumping the agent's channel. Dropping
/// it closes both (the agent then reads EOF and exits).
struct Keep {
    handle: Option<Handle<Client>>,
    pump: tokio::task::JoinHandle<()>,
}

impl Drop for Keep {
    fn drop(&mut self) {
        self.pump.abort();
        if let (Some(h), Ok(rt)) = (self.handle.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                let _ = h
                    .disconnect(russh::Disconnect::ByApplication, "session ended", "en")
                    .await;
            });
        }
    }
}

/// Reaches hosts over SSH. Holds oned weakly (it is owned by oned's host manager) to read
/// the host's template and oned's agent build at each connection.
pub struct SshTransport {
    oned: Weak<Oned>,
    settings: SshSettings,
    key: Arc<PrivateKey>,
    file_lock: Arc<Mutex<()>>,
}

impl SshTransport {
    /// Loads (or makes) oned's key pair.
    pub fn new(oned: &Arc<Oned>) -> Result<SshTransport, SshError> {
        let settings = SshSettings::new(&oned.config.hosts, &oned.data_dir.root);
        let key = ensure_key(&settings.dir)?;
        tracing::info!(user = %settings.user, key = %fingerprint(key.public_key()), "SSH transport ready");
        Ok(SshTransport {
            oned: Arc::downgrade(oned),
            settings,
            key: Arc::new(key),
            file_lock: Arc::new(Mutex::new(())),
        })
    }

    /// The host's SSH port and whether its new key may be accepted (its template first).
    fn host_settings(&self, oned: &Oned, id: i64) -> Result<(u16, bool), String> {
        let h = oned.store.get::<Host>(id);
        let attr = |n: &str| {
            h.as_ref()
                .and_then(|h| h.template.get(n).map(|v| v.trim().to_string()))
        };
        let port =
            match attr(ATTR_PORT).filter(|p| !p.is_empty()) {
                Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    format!("{ATTR_PORT}={p} in the host's template is not a port")
                })?,
                None => self.settings.port,
            };
        let accept = attr(ATTR_ACCEPT_NEW)
            .map(|v| v.eq_ignore_ascii_case("yes"))
            .unwrap_or(self.settings.accept_new);
        Ok((port, accept))
    }

    /// Errors other than [`open`]'s are the host's answers (authentication refused, a
    /// failed install, ...): [`TransportError::Refused`].
    async fn connect_inner(&self, target: &Target) -> Result<AgentStream, TransportError> {
        let oned = self.oned.upgrade().ok_or("oned is stopping")?;
        let (id, host) = (target.host_id, target.host_name.as_str());
        let (port, accept_new) = self.host_settings(&oned, id)?;
        let s = &self.settings;
        let began = Instant::now();
        let mut h = open(
            s,
            host,
            port,
            Policy::Check { accept_new },
            self.file_lock.clone(),
            Arc::default(),
        )
        .await?;
        let auth = h
            .authenticate_publickey(&s.user, PrivateKeyWithHashAlg::new(self.key.clone(), None))
            .await
            .map_err(|e| format!("SSH authentication to {host} failed: {}", describe(&e)))?;
        if !auth.success() {
            return Err(format!(
                "SSH key authentication as {} on {host} port {port} was refused: add oned's \
                 public key (printed by: oned ssh-key) to that user's ~/.ssh/authorized_keys \
                 on the host",
                s.user
            )
            .into());
        }
        tracing::debug!(host = id, name = %host, port, ms = began.elapsed().as_millis() as u64, "SSH connection open");
        let path = s.remote_agent_path.as_str();
        let own = oned.hostmgr.inner.own_build(&target.agent_path).await?;
        let check = run(&h, &check_command(path), None, s.command_timeout).await?;
        let remote = parse_sha(&check.stdout);
        if remote.as_deref() != Some(own.build.as_str()) {
            let began = Instant::now();
            let file = tokio::fs::File::open(&target.agent_path)
                .await
                .map_err(|e| format!("agent binary {}: {e}", target.agent_path.display()))?;
            let out = run(&h, &install_command(path), Some(file), s.command_timeout).await?;
            if out.status != Some(0) {
                let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
                let how = match (&out.status, &out.signal) {
                    (Some(c), _) => format!("status {c}"),
                    (None, Some(sig)) => format!("signal {sig}"),
                    _ => "no status".into(),
                };
                return Err(
                    format!("agent install on {host} at {path} failed ({how}): {why}").into(),
                );
            }
            tracing::info!(
                host = id, name = %host, path, build = %own.build,
                previous = remote.as_deref().unwrap_or("absent"),
                ms = began.elapsed().as_millis() as u64,
                "agent installed over SSH"
            );
        }
        let mut ch = h
            .channel_open_session()
            .await
            .map_err(|e| format!("cannot open an SSH channel to {host}: {}", describe(&e)))?;
        ch.exec(true, agent_command(path, target))
            .await
            .map_err(|e| format!("cannot start the agent on {host}: {}", describe(&e)))?;
        let writer = ch.make_writer();
        let (mut out, reader) = tokio::io::duplex(STDOUT_BUFFER);
        let tail = StderrTail::default();
        let pump_tail = tail.clone();
        let pump = tokio::spawn(async move {
            let mut err_buf: Vec<u8> = Vec::new();
            let mut stdout_open = true;
            while let Some(msg) = ch.wait().await {
                match msg {
                    // When the session stopped reading, stderr and the status still count.
                    ChannelMsg::Data { data } if stdout_open => {
                        stdout_open = out.write_all(&data).await.is_ok();
                    }
                    ChannelMsg::ExtendedData { data, .. } => {
                        err_buf.extend_from_slice(&data);
                        while let Some(n) = err_buf.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = err_buf.drain(..=n).collect();
                            let line = String::from_utf8_lossy(&line).trim_end().to_string();
                            tracing::debug!(host = id, agent = %line, "agent stderr");
                            pump_tail.push(line);
                        }
                    }
                    ChannelMsg::ExitStatus { exit_status } if exit_status != 0 => {
                        pump_tail.push(format!("the agent exited with status {exit_status}"));
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        pump_tail.push(format!("the agent was killed by signal {signal_name:?}"));
                    }
                    ChannelMsg::Eof => {
                        let _ = out.shutdown().await;
                        stdout_open = false;
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            if !err_buf.is_empty() {
                pump_tail.push(String::from_utf8_lossy(&err_buf).trim_end().to_string());
            }
            // Dropping `out` ends the session's reader.
        });
        tracing::debug!(host = id, name = %host, path, "agent started over SSH");
        Ok(AgentStream {
            reader: Box::pin(reader),
            writer: Box::pin(writer),
            stderr: tail,
            keep: Some(Box::new(Keep {
                handle: Some(h),
                pump,
            })),
        })
    }
}

impl Transport for SshTransport {
    fn name(&self) -> &'static str {
        "ssh"
    }

    fn connect<'a>(&'a self, target: &'a Target) -> ConnectFuture<'a> {
        Box::pin(self.connect_inner(target))
    }
}

/// `oned ssh-accept-host`: connects to `host`, and records the key it presents in
/// known_hosts. A host already known with another key is refused unless `replace`. Returns
/// what was done, for the admin.
pub async fn accept_host(
    s: &SshSettings,
    host: &str,
    port: u16,
    replace: bool,
) -> Result<String, SshError> {
    let lock = Arc::new(Mutex::new(()));
    let captured = Arc::new(Mutex::new(None));
    // Capture refuses the key, so the connection "fails" once the key is recorded.
    match open(s, host, port, Policy::Capture, lock, captured.clone()).await {
        Ok(h) => {
            let _ = h
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
        Err(e) if e.to_string().is_empty() => {}
        Err(e) => return Err(SshError::Refused(e.to_string())),
    }
    let Some(key) = captured.lock().ok().and_then(|mut c| c.take()) else {
        return Err(SshError::Refused(format!(
            "{host} port {port} presented no host key"
        )));
    };
    let path = s.known_hosts();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err(&path)(e)),
    };
    match check_known(&text, host, port, &key) {
        Known::Yes => Ok(format!(
            "{} is already known with the {} ({})",
            host_pattern(host, port),
            fingerprint(&key),
            path.display()
        )),
        Known::Mismatch { line } if !replace => Err(SshError::Refused(format!(
            "host key mismatch for {host} port {port}: it presents the {}, {} line {line} \
             records another key; add --replace if the host's key was changed on purpose",
            fingerprint(&key),
            path.display()
        ))),
        _ => {
            learn(&path, host, port, &key, replace)?;
            Ok(format!(
                "added {} with the {} to {}",
                host_pattern(host, port),
                fingerprint(&key),
                path.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> PublicKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
            .public_key()
            .clone()
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("oned-ssh-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn known_hosts_match_unknown_and_mismatch() {
        let (a, b) = (key(1), key(2));
        let text = format!(
            "# comment\n\n{}\n{}\n@revoked * {}\nbroken line\n",
            known_line("10.0.0.5", 2222, &a).unwrap(),
            known_line("node1", 22, &a)
                .unwrap()
                .replace("node1", "other,NODE1"),
            b.to_openssh().unwrap(),
        );
        assert_eq!(check_known(&text, "10.0.0.5", 2222, &a), Known::Yes);
        assert_eq!(
            check_known(&text, "node1", 22, &a),
            Known::Yes,
            "case and lists"
        );
        assert_eq!(
            check_known(&text, "10.0.0.5", 22, &a),
            Known::Unknown,
            "other port"
        );
        assert_eq!(check_known(&text, "10.0.0.6", 2222, &a), Known::Unknown);
        assert_eq!(
            check_known(&text, "10.0.0.5", 2222, &b),
            Known::Mismatch { line: 3 },
            "line numbers count every line"
        );
        // A negated pattern excludes the host even when another pattern names it.
        let neg = format!("node2,!node2 {}\n", a.to_openssh().unwrap());
        assert_eq!(check_known(&neg, "node2", 22, &a), Known::Unknown);
        // A host with two entries matches either.
        let two = format!(
            "{}\n{}\n",
            known_line("h", 22, &a).unwrap(),
            known_line("h", 22, &b).unwrap()
        );
        assert_eq!(check_known(&two, "h", 22, &b), Known::Yes);
    }

    #[test]
    fn learn_appends_and_replaces() {
        let d = tmpdir("learn");
        let p = d.join(KNOWN_HOSTS);
        let (a, b) = (key(3), key(4));
        learn(&p, "h", 2200, &a, false).unwrap();
        learn(&p, "g", 22, &a, false).unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(t.starts_with("[h]:2200 ssh-ed25519 AAAA"), "{t}");
        assert_eq!(check_known(&t, "g", 22, &a), Known::Yes);
        learn(&p, "h", 2200, &b, true).unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        assert_eq!(t.lines().count(), 2, "{t}");
        assert_eq!(check_known(&t, "h", 2200, &b), Known::Yes);
        assert_eq!(check_known(&t, "h", 2200, &a), Known::Mismatch { line: 2 });
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn key_pair_is_made_once_with_private_modes() {
        let d = tmpdir("key");
        let k1 = ensure_key(&d).unwrap();
        let mode = |f: &str| std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(PUB_FILE), 0o644);
        let line = public_key_line(&d).unwrap();
        assert!(line.starts_with("ssh-ed25519 AAAA"), "{line}");
        assert!(line.ends_with(&format!("oned@{}", hostname())), "{line}");
        let pem = std::fs::read_to_string(d.join(KEY_FILE)).unwrap();
        assert!(pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        // Loaded again, not made again; a lost .pub is written again.
        std::fs::remove_file(d.join(PUB_FILE)).unwrap();
        let k2 = ensure_key(&d).unwrap();
        assert_eq!(k1.public_key().key_data(), k2.public_key().key_data());
        assert_eq!(public_key_line(&d).unwrap(), line);
        // A .pub of another key is corrected.
        std::fs::write(d.join(PUB_FILE), "ssh-ed25519 AAAA stale\n").unwrap();
        ensure_key(&d).unwrap();
        assert_eq!(public_key_line(&d).unwrap(), line);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn concurrent_first_uses_agree_on_one_key() {
        let d = tmpdir("race");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || ensure_key(&d).unwrap())
            })
            .collect();
        let keys: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().unwrap().public_key().key_data().clone())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
        let on_disk = read_key(&d.join(KEY_FILE)).unwrap();
        assert_eq!(on_disk.public_key().key_data(), &keys[0]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_quote("/a/b-c_1.2"), "/a/b-c_1.2");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_path("~/.one-rs/bin/a"), "\"$HOME\"/.one-rs/bin/a");
        assert_eq!(shell_path("~"), "\"$HOME\"");
        assert_eq!(remote_dir("~/.one-rs/bin/a"), "~/.one-rs/bin");
        assert_eq!(remote_dir("/agent"), "/");
        assert_eq!(remote_dir("agent"), ".");
        let t = Target {
            host_id: 1,
            host_name: "h".into(),
            agent_path: "/x".into(),
            simulate: true,
        };
        assert_eq!(
            agent_command("/o p/a", &t),
            "exec '/o p/a' --stdio --simulate"
        );
        assert_eq!(
            install_command("/var/x y/a"),
            "T='/var/x y/a.tmp.'$$; umask 077 && mkdir -p '/var/x y' && cat > \"$T\" && \
             chmod 755 \"$T\" && mv -f \"$T\" '/var/x y/a' || { rm -f \"$T\"; exit 1; }"
        );
        assert_eq!(parse_sha(b"absent\n"), None);
        let h = "ab".repeat(32);
        assert_eq!(parse_sha(format!("{h}  -\n").as_bytes()), Some(h));
    }

    /// The commands do what they say in a real shell (the remote side runs `sh -c`).
    #[test]
    fn commands_run_in_sh() {
        let d = tmpdir("sh");
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join("sub dir/agent").display().to_string();
        let sh = |cmd: &str, input: &[u8]| {
            let mut c = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(input).unwrap();
            let o = c.wait_with_output().unwrap();
            (o.status.success(), o.stdout)
        };
        assert_eq!(parse_sha(&sh(&check_command(&path), b"").1), None);
        assert!(sh(&install_command(&path), b"#!/bin/sh\necho hi\n").0);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        let sha = parse_sha(&sh(&check_command(&path), b"").1).unwrap();
        use sha2::Digest;
        assert_eq!(
            sha,
            hex::encode(sha2::Sha256::digest(b"#!/bin/sh\necho hi\n"))
        );
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(d.join("sub dir")).unwrap().collect();
        assert_eq!(left.len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }
}
