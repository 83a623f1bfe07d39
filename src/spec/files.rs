//! Reads files from under a spec root: the only way spec documents, modules and policies are
//! read. Regular files only (a FIFO, device or socket is refused without ever blocking on it),
//! never through a symlink that resolves outside the root, and never more than a cap, whatever
//! the file's metadata says. Errors say what is wrong with the file and never quote its content.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// A spec directory (or a git checkout's tree), resolved once.
#[derive(Debug)]
pub struct SpecRoot {
    canonical: PathBuf,
}

impl SpecRoot {
    pub fn open(root: &Path) -> io::Result<Self> {
        Ok(Self { canonical: fs::canonicalize(root)? })
    }

    /// The root, with every symlink resolved.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// The bytes of `path` (below the root, or a symlink resolving below it), at most `cap`.
    pub fn read(&self, path: &Path, cap: u64) -> io::Result<Vec<u8>> {
        let resolved = fs::canonicalize(path)?;
        if !resolved.starts_with(&self.canonical) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "it resolves outside the spec directory (through a symlink)",
            ));
        }
        // Checked before opening, so a device is never opened; checked again on the open handle,
        // which is what counts if the file was swapped in between.
        require_regular(&fs::metadata(&resolved)?)?;
        let file = open_without_blocking(&resolved)?;
        let metadata = file.metadata()?;
        require_regular(&metadata)?;
        let mut bytes = Vec::with_capacity(usize::try_from(metadata.len().min(cap)).unwrap_or(0));
        file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > cap {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("it is larger than the limit of {cap} bytes"),
            ));
        }
        Ok(bytes)
    }
}

fn require_regular(metadata: &fs::Metadata) -> io::Result<()> {
    if metadata.is_file() {
        return Ok(());
    }
    let what = file_kind(metadata);
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("it is {what}, not a regular file")))
}

#[cfg(unix)]
fn file_kind(metadata: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn file_kind(metadata: &fs::Metadata) -> &'static str {
    if metadata.is_dir() { "a directory" } else { "a special file" }
}

/// Opens for reading without blocking (a FIFO without a writer would block `open` forever) and
/// without following a symlink swapped in for the resolved path.
#[cfg(unix)]
fn open_without_blocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW).open(path)
}

#[cfg(not(unix))]
fn open_without_blocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn root() -> (tempfile::TempDir, SpecRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = SpecRoot::open(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn regular_files_inside_are_read_up_to_the_cap() {
        let (dir, root) = root();
        std::fs::write(dir.path().join("a.yaml"), b"12345").unwrap();
        std::os::unix::fs::symlink("a.yaml", dir.path().join("link.yaml")).unwrap();
        assert_eq!(root.read(&dir.path().join("a.yaml"), 5).unwrap(), b"12345");
        assert_eq!(root.read(&dir.path().join("link.yaml"), 5).unwrap(), b"12345", "a link inside is fine");
        let error = root.read(&dir.path().join("a.yaml"), 4).unwrap_err();
        assert_eq!(error.to_string(), "it is larger than the limit of 4 bytes");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (dir, root) = root();
        let fifo = dir.path().join("m.wasm");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
        assert!(status.success());
        let started = Instant::now();
        let error = root.read(&fifo, 1 << 20).unwrap_err();
        assert_eq!(error.to_string(), "it is a FIFO, not a regular file");
        assert!(started.elapsed() < Duration::from_secs(5), "did not block");
    }

    #[test]
    fn symlinks_leaving_the_root_are_refused_before_reading() {
        let (dir, root) = root();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"TOP SECRET").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("s.yaml")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.wasm")).unwrap();
        for name in ["s.yaml", "zero.wasm"] {
            let error = root.read(&dir.path().join(name), 1 << 20).unwrap_err();
            assert_eq!(error.to_string(), "it resolves outside the spec directory (through a symlink)");
        }
    }
}
