//! Finding the endpoint and credentials the way OpenNebula's own clients do.
//!
//! Everything the search looks at is a field of [`Discovery`], so tests (and callers with their
//! own configuration) never touch the real environment or home directory.

use crate::OcaError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The endpoint every OpenNebula client falls back to.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:2633/RPC2";

/// Where the system-wide `one_auth`/`one_endpoint` live (oneadmin's home on a front-end).
pub const SYSTEM_ONE_DIR: &str = "/var/lib/one/.one";

/// The inputs of endpoint and credential discovery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    /// `$ONE_XMLRPC`: the endpoint URL.
    pub one_xmlrpc: Option<String>,
    /// `$ONE_AUTH`: the path of a file holding `user:password`.
    pub one_auth: Option<PathBuf>,
    /// `$ONE_XMLRPC_TIMEOUT`: seconds per call, as the Ruby OCA reads it.
    pub timeout: Option<String>,
    /// `$HOME`, for `~/.one/one_endpoint` and `~/.one/one_auth`.
    pub home: Option<PathBuf>,
    /// The last resort directory, [`SYSTEM_ONE_DIR`] for real use.
    pub system_dir: Option<PathBuf>,
}

impl Discovery {
    /// The real process environment. Empty variables count as unset, as in the Ruby OCA.
    pub fn from_process() -> Self {
        Self::from_lookup(
            |name| std::env::var(name).ok(),
            Some(Path::new(SYSTEM_ONE_DIR)),
        )
    }

    /// Discovery from any variable lookup (`name -> value`), for tests and embedding.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>, system_dir: Option<&Path>) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        Discovery {
            one_xmlrpc: var("ONE_XMLRPC"),
            one_auth: var("ONE_AUTH").map(PathBuf::from),
            timeout: var("ONE_XMLRPC_TIMEOUT"),
            home: var("HOME").map(PathBuf::from),
            system_dir: system_dir.map(Path::to_path_buf),
        }
    }

    /// `$ONE_XMLRPC`, else the first line of `~/.one/one_endpoint`, else the system
    /// `one_endpoint`, else [`DEFAULT_ENDPOINT`].
    pub fn endpoint(&self) -> Result<String, OcaError> {
        if let Some(url) = &self.one_xmlrpc {
            return Ok(url.trim().to_owned());
        }
        for dir in self.one_dirs() {
            let path = dir.join("one_endpoint");
            if let Some(text) = read_if_present(&path)? {
                let line = text.lines().next().unwrap_or("").trim();
                if line.is_empty() {
                    return Err(OcaError::Config(format!("{} is empty", path.display())));
                }
                return Ok(line.to_owned());
            }
        }
        Ok(DEFAULT_ENDPOINT.to_owned())
    }

    /// The session string `user:password` from the file `$ONE_AUTH`, else `~/.one/one_auth`, else
    /// the system `one_auth`, trailing whitespace stripped.
    ///
    /// Unlike the Ruby OCA, a `$ONE_AUTH` naming a missing file is an error rather than a silent
    /// fall back to another user's credentials.
    pub fn session(&self) -> Result<String, OcaError> {
        if let Some(path) = &self.one_auth {
            let text = std::fs::read_to_string(path)
                .map_err(|e| OcaError::Config(format!("ONE_AUTH file {}: {e}", path.display())))?;
            return parse_auth(path, &text);
        }
        for dir in self.one_dirs() {
            let path = dir.join("one_auth");
            if let Some(text) = read_if_present(&path)? {
                return parse_auth(&path, &text);
            }
        }
        Err(OcaError::Config(
            "no credentials: set ONE_AUTH or create ~/.one/one_auth with user:password".into(),
        ))
    }

    /// `$ONE_XMLRPC_TIMEOUT` as a duration; `None` means no per-call timeout.
    pub fn call_timeout(&self) -> Result<Option<Duration>, OcaError> {
        let Some(text) = &self.timeout else {
            return Ok(None);
        };
        match text.trim().parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(secs) => Ok(Some(Duration::from_secs(secs))),
            Err(_) => Err(OcaError::Config(format!(
                "ONE_XMLRPC_TIMEOUT must be a number of seconds, not {text:?}"
            ))),
        }
    }

    fn one_dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        let home = self.home.as_ref().map(|h| h.join(".one"));
        home.into_iter().chain(self.system_dir.iter().cloned())
    }
}

/// The file's text, `None` if it does not exist; any other failure is an error worth showing.
fn read_if_present(path: &Path) -> Result<Option<String>, OcaError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(OcaError::Config(format!("{}: {e}", path.display()))),
    }
}

fn parse_auth(path: &Path, text: &str) -> Result<String, OcaError> {
    let session = text.trim_end();
    if !session.contains(':') {
        return Err(OcaError::Config(format!(
            "{} must contain user:password",
            path.display()
        )));
    }
    Ok(session.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "oca-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn discovery(vars: &[(&str, &str)], system_dir: Option<&Path>) -> Discovery {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Discovery::from_lookup(|k| vars.get(k).cloned(), system_dir)
    }

    #[test]
    fn endpoint_default() {
        let home = TempDir::new();
        let d = discovery(&[("HOME", home.0.to_str().unwrap())], None);
        assert_eq!(d.endpoint().unwrap(), DEFAULT_ENDPOINT);
        assert_eq!(discovery(&[], None).endpoint().unwrap(), DEFAULT_ENDPOINT);
    }

    #[test]
    fn endpoint_from_env_wins() {
        let home = TempDir::new();
        home.write(".one/one_endpoint", "http://file:2633/RPC2\n");
        let d = discovery(
            &[
                ("HOME", home.0.to_str().unwrap()),
                ("ONE_XMLRPC", "http://env:2633/RPC2"),
            ],
            None,
        );
        assert_eq!(d.endpoint().unwrap(), "http://env:2633/RPC2");
    }

    #[test]
    fn empty_env_counts_as_unset() {
        let home = TempDir::new();
        home.write(".one/one_endpoint", "http://file:2633/RPC2\n");
        let d = discovery(
            &[("HOME", home.0.to_str().unwrap()), ("ONE_XMLRPC", "")],
            None,
        );
        assert_eq!(d.endpoint().unwrap(), "http://file:2633/RPC2");
    }

    #[test]
    fn endpoint_file_first_line() {
        let home = TempDir::new();
        home.write(
            ".one/one_endpoint",
            "  http://front:2633/RPC2  \nsecond line\n",
        );
        let d = discovery(&[("HOME", home.0.to_str().unwrap())], None);
        assert_eq!(d.endpoint().unwrap(), "http://front:2633/RPC2");
    }

    #[test]
    fn endpoint_system_dir_after_home() {
        let home = TempDir::new();
        let system = TempDir::new();
        system.write("one_endpoint", "http://system:2633/RPC2");
        let d = discovery(&[("HOME", home.0.to_str().unwrap())], Some(&system.0));
        assert_eq!(d.endpoint().unwrap(), "http://system:2633/RPC2");
        home.write(".one/one_endpoint", "http://home:2633/RPC2");
        assert_eq!(d.endpoint().unwrap(), "http://home:2633/RPC2");
    }

    #[test]
    fn empty_endpoint_file_is_an_error() {
        let home = TempDir::new();
        home.write(".one/one_endpoint", "\n");
        let d = discovery(&[("HOME", home.0.to_str().unwrap())], None);
        let e = d.endpoint().unwrap_err().to_string();
        assert!(e.contains("one_endpoint is empty"), "{e}");
    }

    #[test]
    fn session_from_one_auth_env() {
        let dir = TempDir::new();
        let home = TempDir::new();
        home.write(".one/one_auth", "home:pw\n");
        let path = dir.write("auth", "oneadmin:s3cr3t \n\t\n");
        let d = discovery(
            &[
                ("ONE_AUTH", path.to_str().unwrap()),
                ("HOME", home.0.to_str().unwrap()),
            ],
            None,
        );
        assert_eq!(d.session().unwrap(), "oneadmin:s3cr3t");
    }

    #[test]
    fn session_from_home_then_system() {
        let home = TempDir::new();
        let system = TempDir::new();
        system.write("one_auth", "oneadmin:sys");
        let d = discovery(&[("HOME", home.0.to_str().unwrap())], Some(&system.0));
        assert_eq!(d.session().unwrap(), "oneadmin:sys");
        home.write(".one/one_auth", "alice:pw:with:colons\r\n");
        assert_eq!(d.session().unwrap(), "alice:pw:with:colons");
    }

    #[test]
    fn session_errors() {
        let home = TempDir::new();
        let d = discovery(&[("HOME", home.0.to_str().unwrap())], None);
        let e = d.session().unwrap_err().to_string();
        assert!(e.contains("no credentials"), "{e}");

        let missing = home.0.join("nope");
        let d = discovery(
            &[
                ("ONE_AUTH", missing.to_str().unwrap()),
                ("HOME", home.0.to_str().unwrap()),
            ],
            None,
        );
        let e = d.session().unwrap_err().to_string();
        assert!(e.contains("ONE_AUTH file") && e.contains("nope"), "{e}");

        home.write(".one/one_auth", "no-colon\n");
        let d = discovery(&[("HOME", home.0.to_str().unwrap())], None);
        let e = d.session().unwrap_err().to_string();
        assert!(e.contains("must contain user:password"), "{e}");
    }

    #[test]
    fn timeout() {
        assert_eq!(discovery(&[], None).call_timeout().unwrap(), None);
        let d = discovery(&[("ONE_XMLRPC_TIMEOUT", "30")], None);
        assert_eq!(d.call_timeout().unwrap(), Some(Duration::from_secs(30)));
        let d = discovery(&[("ONE_XMLRPC_TIMEOUT", "0")], None);
        assert_eq!(d.call_timeout().unwrap(), None);
        let d = discovery(&[("ONE_XMLRPC_TIMEOUT", "soon")], None);
        assert!(d.call_timeout().is_err());
    }

    #[test]
    fn from_lookup_reads_the_documented_variables() {
        let d = discovery(
            &[
                ("ONE_XMLRPC", "http://x/RPC2"),
                ("ONE_AUTH", "/a"),
                ("ONE_XMLRPC_TIMEOUT", "5"),
                ("HOME", "/h"),
            ],
            Some(Path::new("/s")),
        );
        assert_eq!(
            d,
            Discovery {
                one_xmlrpc: Some("http://x/RPC2".into()),
                one_auth: Some("/a".into()),
                timeout: Some("5".into()),
                home: Some("/h".into()),
                system_dir: Some("/s".into()),
            }
        );
    }
}
