//! A file written chunk after chunk, where a chunk of zeros is left a hole: a sparse image
//! copied through the byte stream (whose chunks carry the zeros) stays sparse.

use std::io::{Seek, Write};

pub struct SparseFile {
    f: std::fs::File,
    len: u64,
}

impl SparseFile {
    pub fn new(f: std::fs::File) -> SparseFile {
        SparseFile { f, len: 0 }
    }

    /// Appends `chunk` (a hole when it is all zeros).
    pub fn push(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.len += chunk.len() as u64;
        if chunk.iter().all(|b| *b == 0) {
            self.f.seek(std::io::SeekFrom::Start(self.len))?;
        } else {
            self.f.write_all(chunk)?;
        }
        Ok(())
    }

    /// Sets the file's length (a trailing hole is not written); answers the file, to flush
    /// when wanted, and its length.
    pub fn finish(self) -> std::io::Result<(std::fs::File, u64)> {
        self.f.set_len(self.len)?;
        Ok((self.f, self.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zeros_become_holes_and_the_length_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let mut s = SparseFile::new(std::fs::File::create(&p).unwrap());
        s.push(b"ab").unwrap();
        s.push(&vec![0u8; 8 << 20]).unwrap();
        s.push(b"cd").unwrap();
        s.push(&vec![0u8; 8 << 20]).unwrap();
        let (_, n) = s.finish().unwrap();
        assert_eq!(n, (16 << 20) + 4);
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.len(), n);
        assert!(m.blocks() * 512 < 1 << 20, "{} blocks", m.blocks());
        let b = std::fs::read(&p).unwrap();
        assert_eq!(&b[..2], b"ab");
        assert_eq!(&b[2 + (8 << 20)..4 + (8 << 20)], b"cd");
        assert!(b[2..2 + (8 << 20)].iter().all(|x| *x == 0));
    }
}
