//! Reading a file a user points at: only a regular file, never more than a cap, so that a
//! path like `/dev/zero` or a runaway file costs neither time nor memory.

use std::io::Read;
use std::path::Path;

/// Runbooks, scripts and modules are at most 1 MiB.
pub const MAX_SOURCE_BYTES: u64 = 1024 * 1024;

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadProblem {
    /// It does not exist or cannot be opened.
    Open(std::io::Error),
    /// A folder, a device, a pipe: only regular files are read.
    NotAFile,
    /// Larger than the cap (its size when known, else at least the cap plus one).
    TooLarge { size: u64, limit: u64 },
    /// Reading failed half way.
    Read(std::io::Error),
}

impl std::fmt::Display for ReadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadProblem::Open(e) => write!(f, "cannot read: {e}"),
            ReadProblem::NotAFile => write!(f, "is not a regular file"),
            ReadProblem::TooLarge { size, limit } => {
                write!(f, "is {size} bytes, over the limit of {limit} bytes")
            }
            ReadProblem::Read(e) => write!(f, "cannot read: {e}"),
        }
    }
}

impl ReadProblem {
    /// The problem as a sentence about `what` ("the template", "the config file").
    pub fn describe(&self, what: &str) -> String {
        match self {
            ReadProblem::Open(e) | ReadProblem::Read(e) => format!("cannot read {what}: {e}"),
            ReadProblem::NotAFile => format!("{what} is not a regular file"),
            ReadProblem::TooLarge { size, limit } => {
                format!("{what} is {size} bytes, over the limit of {limit} bytes")
            }
        }
    }
}

/// Reads a regular file of at most `limit` bytes. Following a symbolic link is the caller's
/// choice (the metadata is of the file it names); the size is checked before and while reading,
/// so a file that grows is cut off at the limit rather than read whole.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, ReadProblem> {
    let file = std::fs::File::open(path).map_err(ReadProblem::Open)?;
    let meta = file.metadata().map_err(ReadProblem::Open)?;
    if !meta.is_file() {
        return Err(ReadProblem::NotAFile);
    }
    if meta.len() > limit {
        return Err(ReadProblem::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadProblem::Read)?;
    if bytes.len() as u64 > limit {
        return Err(ReadProblem::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_and_folders_and_reads_files_under_the_cap() {
        assert!(matches!(
            read_capped(Path::new("/dev/zero"), 10),
            Err(ReadProblem::NotAFile)
        ));
        assert!(matches!(
            read_capped(Path::new("/"), 10),
            Err(ReadProblem::NotAFile)
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(read_capped(&path, 5).unwrap(), b"hello");
        assert!(matches!(
            read_capped(&path, 4),
            Err(ReadProblem::TooLarge { size: 5, limit: 4 })
        ));
        assert!(matches!(
            read_capped(&dir.path().join("missing"), 4),
            Err(ReadProblem::Open(_))
        ));
    }
}
