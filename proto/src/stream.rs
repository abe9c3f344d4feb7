//! The byte stream beside an agent's session (docs/node-agent.md, "Byte stream"): many
//! concurrent streams of bytes multiplexed on one connection (a second SSH channel of the
//! session's connection, or a second socket handed to a local agent), each with its own
//! flow control, so a multi-GiB copy neither blocks the message session nor other streams.
//!
//! A frame is a 9-byte header, then `len` bytes of payload:
//!
//! ```text
//! +----------------+-----------+---------------+-------------------+
//! | stream: u32 BE | kind: u8  | len: u32 BE   | payload (len)     |
//! +----------------+-----------+---------------+-------------------+
//! ```
//!
//! | kind | payload | meaning |
//! |---|---|---|
//! | OPEN | [`Open`] as JSON | the opener asks for a stream (oned's ids are odd, an agent's even) |
//! | ACCEPT | [`Accepted`] as JSON | the stream exists; both sides may send |
//! | REJECT | UTF-8 reason | no stream |
//! | DATA | bytes (at most [`MAX_DATA`]) | counted against the receiver's window |
//! | CREDIT | u32 BE | the receiver consumed that many bytes: the sender may send that many more |
//! | EOF | | the sender will send no more (the other direction stays open) |
//! | RESET | UTF-8 reason | the stream failed, in both directions |
//!
//! Each direction of each stream starts with a window of [`WINDOW`] bytes; a receiver that
//! has not read its data stops its sender and nothing else. Nothing here does I/O.

use serde::{Deserialize, Serialize};

/// Bytes of a frame header.
pub const HEADER_LEN: usize = 9;
/// Largest DATA payload.
pub const MAX_DATA: usize = 256 * 1024;
/// Largest payload of the other frames (JSON, reasons).
pub const MAX_CONTROL: usize = 64 * 1024;
/// Bytes a sender may have in flight on one stream before the receiver grants more.
pub const WINDOW: u32 = 4 * 1024 * 1024;

/// The first line a connection to an agent's stream socket sends: the key of the agent's
/// hello (`one_proto::agent::StreamEndpoint`), then a newline.
pub const KEY_LINE_MAX: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Open = 1,
    Accept = 2,
    Reject = 3,
    Data = 4,
    Credit = 5,
    Eof = 6,
    Reset = 7,
}

impl Kind {
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Open,
            2 => Kind::Accept,
            3 => Kind::Reject,
            4 => Kind::Data,
            5 => Kind::Credit,
            6 => Kind::Eof,
            7 => Kind::Reset,
            _ => return None,
        })
    }

    fn max_payload(self) -> usize {
        match self {
            Kind::Data => MAX_DATA,
            Kind::Credit => 4,
            Kind::Eof => 0,
            _ => MAX_CONTROL,
        }
    }
}

/// What a stream is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Open {
    /// The bytes of a file, from `offset`; the receiver's side gets them then EOF.
    Read {
        path: String,
        #[serde(default)]
        offset: u64,
    },
    /// A new file at `path` (never an existing one) of at most `max_bytes`, written under a
    /// temporary name and renamed when the opener's EOF came: the agent's EOF then says it
    /// is in place, a RESET says why not (the partial file is removed). `durable`: flushed
    /// to the disk (fsync) before it is renamed.
    Write {
        path: String,
        max_bytes: u64,
        #[serde(default)]
        durable: bool,
    },
    /// A TCP connection to `port` on the host's loopback (a VM's VNC console).
    Tcp { port: u16 },
    /// A file a host sends to the frontend (a `local` transfer: a stopped VM's files, a
    /// persistent disk going back to its image, a disk saved as an image): like
    /// [`Open::Write`], always durable, but it may replace an existing file (atomically,
    /// by a rename) and the directories above it are made when missing.
    Put { path: String, max_bytes: u64 },
    /// Every entry under the directory `path`: the data is a JSON array of [`ListEntry`],
    /// or `null` when there is no such directory.
    List { path: String },
    /// Removes the file or directory tree `path` (a missing one is fine); EOF once done.
    Remove { path: String },
    /// Makes `path` a symbolic link to `target` (relative, inside the directory: a qcow2
    /// chain's links), replacing one there; EOF once done.
    Link { path: String, target: String },
}

/// One entry of an [`Open::List`] answer, its path relative to the directory listed;
/// parents come before their children.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ListEntry {
    Dir { path: String },
    File { path: String, len: u64 },
    Link { path: String, target: String },
}

/// The answer to an [`Open`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// A read's length from its offset, when known.
    #[serde(default)]
    pub size: Option<u64>,
}

/// A frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub stream: u32,
    pub kind: Kind,
    pub len: u32,
}

/// A header that cannot be: the connection has lost its framing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("{kind:?} frame of {len} bytes exceeds {max}")]
    TooLarge { kind: Kind, len: u32, max: usize },
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&self.stream.to_be_bytes());
        h[4] = self.kind as u8;
        h[5..9].copy_from_slice(&self.len.to_be_bytes());
        h
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let kind = Kind::from_u8(b[4]).ok_or(FrameError::Kind(b[4]))?;
        let len = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        if len as usize > kind.max_payload() {
            return Err(FrameError::TooLarge {
                kind,
                len,
                max: kind.max_payload(),
            });
        }
        Ok(Header {
            stream: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            kind,
            len,
        })
    }
}

/// Whether a stream id was chosen by oned (odd) or by the agent (even, not 0).
pub fn opened_by_oned(id: u32) -> bool {
    id % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_bad_ones_are_refused() {
        for (kind, len) in [
            (Kind::Open, 10),
            (Kind::Data, MAX_DATA as u32),
            (Kind::Credit, 4),
            (Kind::Eof, 0),
            (Kind::Reset, 3),
        ] {
            let h = Header {
                stream: 0xdead_beef,
                kind,
                len,
            };
            assert_eq!(Header::decode(&h.encode()), Ok(h));
        }
        let mut b = Header {
            stream: 1,
            kind: Kind::Data,
            len: MAX_DATA as u32 + 1,
        }
        .encode();
        assert!(matches!(
            Header::decode(&b),
            Err(FrameError::TooLarge { .. })
        ));
        b[4] = 99;
        assert_eq!(Header::decode(&b), Err(FrameError::Kind(99)));
        assert!(opened_by_oned(1) && !opened_by_oned(2));
    }

    #[test]
    fn open_requests_are_json() {
        let o = Open::Write {
            path: "/d/up/t".into(),
            max_bytes: 5,
            durable: false,
        };
        let j = serde_json::to_string(&o).unwrap();
        assert_eq!(
            j,
            r#"{"kind":"write","path":"/d/up/t","max_bytes":5,"durable":false}"#
        );
        assert_eq!(serde_json::from_str::<Open>(&j).unwrap(), o);
        assert_eq!(
            serde_json::from_str::<Open>(r#"{"kind":"read","path":"/x"}"#).unwrap(),
            Open::Read {
                path: "/x".into(),
                offset: 0
            }
        );
    }
}
