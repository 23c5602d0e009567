//! What secretd puts on disk, and the secret files it trusts there.
//!
//! Outside systemd nothing narrows the umask, so every directory and file
//! secretd creates gets its mode explicitly: directories 0700, files 0600,
//! and the Unix socket its configured `server.socket.mode` before its path
//! exists at all. A secret file secretd wrote itself (the dev instance's
//! `jdbc.secret` and `admin.token`) that other users can read or write is a
//! refusal to start, since its secret may already be out; a `file:`
//! credential readable by everyone is a warning, because those files are the
//! platform's (Kubernetes mounts Secret files 0644 unless told otherwise).

use std::{
    fmt, fs,
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use crate::config::{Config, SocketConfig};

/// An existing secret file that is not private to its owner. It names the
/// file and its mode, never its content.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} is readable or writable by users other than its owner (mode {:04o}); it holds a secret, so \
     secretd will not use it: make it private (chmod 600 {}) and treat its secret as exposed",
    .path.display(), .mode, .path.display()
)]
pub struct ExposedSecretFile {
    pub path: PathBuf,
    pub mode: u32,
}

/// Group and other permission bits: a file of secretd's own must have none
/// that read or write.
const NOT_OWNER_READ_WRITE: u32 = 0o066;
/// Other users' read and write bits, which no credential file should have.
const OTHERS_READ_WRITE: u32 = 0o006;

/// Refuses an existing secret file of secretd's own that anyone but its
/// owner may read or write. A missing file is fine: it is created private.
pub fn check_own_secret_file(path: &Path) -> Result<(), ExposedSecretFile> {
    match fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & NOT_OWNER_READ_WRITE != 0 => {
            Err(ExposedSecretFile { path: path.to_owned(), mode: meta.permissions().mode() & 0o7777 })
        }
        _ => Ok(()),
    }
}

/// A `file:` credential that every user of the machine may read or write.
pub struct LooseCredentialFile<'a> {
    pub path: &'a Path,
    pub mode: u32,
}

impl fmt::Display for LooseCredentialFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the credential file {} is readable or writable by every user (mode {:04o}); make it 0600, or 0440 \
             with a group of its own (a Kubernetes Secret's defaultMode)",
            self.path.display(),
            self.mode
        )
    }
}

/// The `file:` credentials of `config` that every user may read or write.
pub fn loose_credential_files(config: &Config) -> Vec<LooseCredentialFile<'_>> {
    config
        .credential_files()
        .into_iter()
        .filter_map(|path| {
            // Through symlinks, as Kubernetes mounts them.
            let mode = fs::metadata(path).ok()?.permissions().mode() & 0o7777;
            (mode & OTHERS_READ_WRITE != 0).then_some(LooseCredentialFile { path, mode })
        })
        .collect()
}

/// Creates `dir` (and missing parents) with mode 0700, whatever the umask.
/// An existing directory keeps its mode.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // The umask can only have taken bits away; this puts back what it took
    // from the owner.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Creates `path` with `contents`, mode 0600 whatever the umask; never
/// overwrites.
pub fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Binds a Unix socket at `path` that exists there only with its configured
/// mode and owner: it is bound inside a fresh 0700 directory beside `path`
/// (which no one else can enter), given its mode and owner there, and then
/// linked into place. A stale socket at `path` is replaced; anything else
/// there is an error.
pub fn bind_unix_socket(path: &Path, socket: &SocketConfig) -> Result<tokio::net::UnixListener, String> {
    let shown = path.display();
    match fs::symlink_metadata(path) {
        // A socket left by a previous run would make the link fail.
        Ok(meta) if meta.file_type().is_socket() => {
            fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket {shown}: {e}"))?
        }
        Ok(_) => return Err(format!("cannot listen on {shown}: it exists and is not a socket")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot listen on {shown}: {e}")),
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Short names: a socket path has at most 107 bytes, and this one must
    // fit beside the final one.
    let staging = parent.join(format!(".sd-{:06x}", rand::random::<u32>() & 0xff_ffff));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| format!("cannot listen on {shown}: cannot create {}: {e}", staging.display()))?;
    let staged = staging.join("s");
    let result = bind_staged(&staged, path, socket);
    // The socket stays reachable through `path`; its staging name goes.
    let _ = fs::remove_file(&staged);
    let _ = fs::remove_dir(&staging);
    result
}

fn bind_staged(staged: &Path, path: &Path, socket: &SocketConfig) -> Result<tokio::net::UnixListener, String> {
    let shown = path.display();
    let listener = tokio::net::UnixListener::bind(staged).map_err(|e| format!("cannot listen on {shown}: {e}"))?;
    if let Some(mode) = socket.mode_bits() {
        fs::set_permissions(staged, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("server.socket.mode: {e}"))?;
    }
    if socket.owner.is_some() || socket.group.is_some() {
        std::os::unix::fs::chown(staged, socket.owner, socket.group)
            .map_err(|e| format!("server.socket.owner/group: {e}"))?;
    }
    // A link never replaces what may have appeared at `path` meanwhile.
    match fs::hard_link(staged, path) {
        Ok(()) => Ok(listener),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(format!("cannot listen on {shown}: something else created it while secretd was binding"))
        }
        // A file system without hard links: a rename is just as atomic.
        Err(_) => fs::rename(staged, path).map(|()| listener).map_err(|e| format!("cannot listen on {shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_secret_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jdbc.secret");
        assert!(check_own_secret_file(&path).is_ok(), "a missing file is created later");
        write_private_file(&path, b"s3cr3t-value").unwrap();
        assert!(check_own_secret_file(&path).is_ok());
        for mode in [0o640, 0o604, 0o620, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = check_own_secret_file(&path).unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()) && err.contains(&format!("{mode:04o}")), "{err}");
            assert!(!err.contains("s3cr3t-value"), "{err}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(check_own_secret_file(&path).is_ok());
    }

    #[test]
    fn a_stale_socket_is_replaced_and_anything_else_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secretd.sock");
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
        let _guard = rt.enter();
        let first = bind_unix_socket(&path, &SocketConfig::default()).unwrap();
        drop(first);
        let second = bind_unix_socket(&path, &SocketConfig::default()).expect("the stale socket is replaced");
        drop(second);
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(entries, ["secretd.sock"], "no staging directory is left behind");
        fs::remove_file(&path).unwrap();
        fs::write(&path, "not a socket").unwrap();
        let err = bind_unix_socket(&path, &SocketConfig::default()).unwrap_err();
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a socket");
    }
}
