//! The host's side of TM_MAD `local` (docs/storage-hosts.md, "`local`: disks copied to each host"):
//! a [`Transport`] whose bytes go through the byte stream to oned, which relays each
//! stream to its frontend agent (oned checks the path, the frontend agent checks it again
//! and does the file work). Called from the transfer driver's blocking code: each call
//! runs its stream on the agent's runtime and waits for it.

use crate::sparse::SparseFile;
use one_drivers::tm::local::{Entry, Transport};
use one_drivers::{Error, Result};
use one_proto::stream::{ListEntry, MAX_DATA, Open};
use one_stream::{Mux, StreamError};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The agent's stream connections to oned (the session keeps the list).
pub type Muxes = Arc<Mutex<Vec<Mux>>>;

pub struct StreamTransport {
    muxes: Muxes,
    rt: tokio::runtime::Handle,
}

impl StreamTransport {
    pub fn new(muxes: Muxes, rt: tokio::runtime::Handle) -> StreamTransport {
        StreamTransport { muxes, rt }
    }

    /// The newest open connection.
    fn mux(&self) -> Result<Mux> {
        self.muxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find(|m| !m.is_closed())
            .cloned()
            .ok_or_else(|| {
                Error::Refused(
                    "TM_MAD local: this agent has no byte stream to oned (the frontend's files \
                     cannot be reached); see the agent's log"
                        .into(),
                )
            })
    }
}

/// A stream's failure in the driver's words; a full frontend datastore stays recognisable.
fn stream_err(what: &str, path: &Path, e: StreamError) -> Error {
    let why = e.to_string();
    if why.contains("Not enough space") {
        Error::NoSpace {
            path: path.display().to_string(),
            what: format!("{what} on the frontend: {why}"),
        }
    } else {
        Error::Refused(format!("{what} {} on the frontend: {why}", path.display()))
    }
}

fn path_str(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| Error::Refused(format!("{} is not UTF-8", p.display())))
}

/// Opens `req` and waits for the other side's end (EOF), for requests whose answer is
/// only "done".
async fn done(mux: &Mux, req: &Open, what: &str, path: &Path) -> Result<Vec<u8>> {
    let (st, _) = mux.open(req).await.map_err(|e| stream_err(what, path, e))?;
    let (mut r, mut w) = st.split();
    w.finish().await.map_err(|e| stream_err(what, path, e))?;
    r.read_to_end().await.map_err(|e| stream_err(what, path, e))
}

impl Transport for StreamTransport {
    fn fetch(&self, remote: &Path, local: &Path) -> Result<u64> {
        let mux = self.mux()?;
        let req = Open::Read {
            path: path_str(remote)?,
            offset: 0,
        };
        let part = one_drivers::tm::files::part(local);
        let res = self.rt.block_on(async {
            let (st, _) = mux
                .open(&req)
                .await
                .map_err(|e| stream_err("cannot read", remote, e))?;
            let (mut r, mut w) = st.split();
            let _ = w.finish().await;
            let mut out = SparseFile::new(
                std::fs::File::create(&part)
                    .map_err(one_drivers::error::io_err("cannot create", &part))?,
            );
            while let Some(chunk) = r
                .read()
                .await
                .map_err(|e| stream_err("cannot read", remote, e))?
            {
                out.push(&chunk)
                    .map_err(one_drivers::error::io_err("cannot write", &part))?;
            }
            let (f, n) = out
                .finish()
                .map_err(one_drivers::error::io_err("cannot write", &part))?;
            f.sync_all()
                .map_err(one_drivers::error::io_err("cannot flush", &part))?;
            Ok(n)
        });
        match res {
            Ok(n) => {
                one_drivers::tm::files::rename(&part, local)?;
                Ok(n)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                Err(e)
            }
        }
    }

    fn send(&self, local: &Path, remote: &Path) -> Result<u64> {
        let mux = self.mux()?;
        let mut f =
            std::fs::File::open(local).map_err(one_drivers::error::io_err("cannot open", local))?;
        let len = f
            .metadata()
            .map_err(one_drivers::error::io_err("cannot read", local))?
            .len();
        let req = Open::Put {
            path: path_str(remote)?,
            max_bytes: len,
        };
        self.rt.block_on(async {
            let (st, _) = mux
                .open(&req)
                .await
                .map_err(|e| stream_err("cannot write", remote, e))?;
            let (mut r, mut w) = st.split();
            let mut buf = vec![0u8; MAX_DATA];
            let mut n = 0u64;
            loop {
                let k = match f.read(&mut buf) {
                    Ok(k) => k,
                    Err(e) => {
                        let err = Error::io(format!("cannot read {}", local.display()), local, e);
                        w.reset(&err.to_string());
                        return Err(err);
                    }
                };
                if k == 0 {
                    break;
                }
                w.write(&buf[..k])
                    .await
                    .map_err(|e| stream_err("cannot write", remote, e))?;
                n += k as u64;
            }
            w.finish()
                .await
                .map_err(|e| stream_err("cannot write", remote, e))?;
            // The frontend's EOF says the file is in place.
            r.read_to_end()
                .await
                .map_err(|e| stream_err("cannot write", remote, e))?;
            Ok(n)
        })
    }

    fn send_link(&self, target: &Path, remote: &Path) -> Result<()> {
        let mux = self.mux()?;
        let req = Open::Link {
            path: path_str(remote)?,
            target: path_str(target)?,
        };
        self.rt
            .block_on(done(&mux, &req, "cannot make the link", remote))
            .map(drop)
    }

    fn list(&self, remote_dir: &Path) -> Result<Option<Vec<Entry>>> {
        let mux = self.mux()?;
        let req = Open::List {
            path: path_str(remote_dir)?,
        };
        let body = self
            .rt
            .block_on(done(&mux, &req, "cannot list", remote_dir))?;
        let found: Option<Vec<ListEntry>> = serde_json::from_slice(&body).map_err(|e| {
            Error::Refused(format!(
                "the frontend's listing of {} is unreadable: {e}",
                remote_dir.display()
            ))
        })?;
        Ok(found.map(|es| es.into_iter().map(Entry::from).collect()))
    }

    fn remove(&self, remote: &Path) -> Result<()> {
        let mux = self.mux()?;
        let req = Open::Remove {
            path: path_str(remote)?,
        };
        self.rt
            .block_on(done(&mux, &req, "cannot remove", remote))
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_drivers::tm::local::EntryKind;
    use one_stream::Side;
    use std::io::{Seek, Write};
    use std::path::PathBuf;

    /// A host agent's transport to a frontend agent serving `roots`, through a relay in the
    /// middle as oned runs it (`one_stream::splice`).
    fn through_relay(roots: Vec<PathBuf>) -> StreamTransport {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let (to_fe, _) = Mux::start(ar, aw, Side::Oned);
        let (_fe, fe_incoming) = Mux::start(br, bw, Side::Agent);
        tokio::spawn(crate::stream::serve(
            fe_incoming,
            Arc::new(move || roots.clone()),
        ));
        let (c, d) = tokio::io::duplex(1 << 20);
        let (cr, cw) = tokio::io::split(c);
        let (dr, dw) = tokio::io::split(d);
        let (host, _) = Mux::start(cr, cw, Side::Agent);
        let (_oned, mut from_host) = Mux::start(dr, dw, Side::Oned);
        tokio::spawn(async move {
            while let Some(s) = from_host.recv().await {
                let fe = to_fe.clone();
                tokio::spawn(async move {
                    match fe.open(&s.request).await {
                        Ok((st, acc)) => {
                            let _ = one_stream::splice(s.accept(&acc), st).await;
                        }
                        Err(e) => s.reject(&e.to_string()),
                    }
                });
            }
        });
        StreamTransport::new(
            Arc::new(Mutex::new(vec![host])),
            tokio::runtime::Handle::current(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_go_both_ways_sparse_whole_and_only_inside_the_roots() {
        let d = tempfile::tempdir().unwrap();
        let fe = d.path().join("fe");
        let host = d.path().join("host");
        std::fs::create_dir_all(fe.join("100")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        let t = through_relay(vec![fe.clone()]);
        let (fe2, host2) = (fe.clone(), host.clone());
        tokio::task::spawn_blocking(move || {
            let (fe, host) = (fe2, host2);
            // A sparse 64 MiB file with data at both ends goes to the frontend, into
            // directories made for it, then comes back: same bytes, still sparse.
            let src = host.join("disk.0");
            let mut f = std::fs::File::create(&src).unwrap();
            f.write_all(b"head").unwrap();
            f.seek(std::io::SeekFrom::Start((64 << 20) - 4)).unwrap();
            f.write_all(b"tail").unwrap();
            drop(f);
            let remote = fe.join("100/.stash/7/disk.0");
            assert_eq!(t.send(&src, &remote).unwrap(), 64 << 20);
            assert_eq!(
                std::fs::read(&remote).unwrap(),
                std::fs::read(&src).unwrap()
            );
            use std::os::unix::fs::MetadataExt;
            assert!(std::fs::metadata(&remote).unwrap().blocks() * 512 < 1 << 20);
            // Sent again: replaced whole.
            std::fs::write(&src, b"new").unwrap();
            t.send(&src, &remote).unwrap();
            assert_eq!(std::fs::read(&remote).unwrap(), b"new");
            t.send_link(Path::new("."), &fe.join("100/.stash/7/snap/snap"))
                .unwrap();
            let back = host.join("back");
            assert_eq!(t.fetch(&remote, &back).unwrap(), 3);
            assert_eq!(std::fs::read(&back).unwrap(), b"new");
            let listed = t.list(&fe.join("100/.stash/7")).unwrap().unwrap();
            let names: Vec<_> = listed
                .iter()
                .map(|e| e.path.display().to_string())
                .collect();
            assert_eq!(names, ["disk.0", "snap", "snap/snap"], "{listed:?}");
            assert!(
                matches!(listed[2].kind, EntryKind::Link { ref target } if target == Path::new("."))
            );
            assert_eq!(t.list(&fe.join("100/.stash/8")).unwrap(), None);
            // Links out of the directory, paths outside the roots: refused.
            let e = t
                .send_link(Path::new("../../etc"), &fe.join("100/.stash/7/x"))
                .unwrap_err();
            assert!(e.to_string().contains("relative links"), "{e}");
            for p in ["/etc/passwd", "/tmp/../etc/x"] {
                assert!(t.send(&src, Path::new(p)).is_err(), "{p}");
                assert!(t.fetch(Path::new(p), &host.join("x")).is_err(), "{p}");
            }
            assert!(t.remove(&d_parent(&fe)).is_err(), "above the roots");
            assert!(!host.join("x").exists() && !host.join("x.part").exists());
            t.remove(&fe.join("100/.stash/7")).unwrap();
            assert!(!fe.join("100/.stash/7").exists());
            t.remove(&fe.join("100/.stash/7")).unwrap();
            // A missing file: refused with its name, no partial copy left.
            let e = t.fetch(&fe.join("100/none"), &host.join("y")).unwrap_err();
            assert!(e.to_string().contains("100/none"), "{e}");
            assert!(!host.join("y.part").exists() && !host.join("y").exists());
        })
        .await
        .unwrap();
    }

    fn d_parent(p: &Path) -> PathBuf {
        p.parent().unwrap().to_path_buf()
    }

    #[test]
    fn without_a_connection_the_reason_is_given() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let t = StreamTransport::new(Arc::new(Mutex::new(vec![])), rt.handle().clone());
        let e = t.remove(Path::new("/x")).unwrap_err().to_string();
        assert!(e.contains("no byte stream"), "{e}");
    }
}
