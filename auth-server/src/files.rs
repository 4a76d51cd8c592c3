//! Files the server writes hold secrets (the master key, the SQLite database and its -wal/-shm,
//! outbox emails with codes and reset links): on Unix, files are created 0600 and directories
//! 0700, whatever the umask.

use std::io::{self, Write};
use std::path::Path;

/// Creates `dir` and its missing parents with mode 0700 (existing directories are left as they are).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

#[cfg(unix)]
fn private_opts(opts: &mut std::fs::OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    opts.mode(0o600);
}

#[cfg(not(unix))]
fn private_opts(_: &mut std::fs::OpenOptions) {}

/// Writes a new file (it must not exist) with mode 0600, synced.
pub fn write_private(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    private_opts(&mut opts);
    let mut f = opts.open(path)?;
    f.write_all(content)?;
    f.sync_all()
}

/// Makes sure `path` exists with mode 0600: creates it empty if missing, narrows its mode if it
/// is wider (an older version created it under the umask). SQLite creates its -wal and -shm
/// files with the mode of the database file, so they follow.
pub fn ensure_private_file(path: &Path) -> io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    private_opts(&mut opts);
    drop(opts.open(path)?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [path.to_path_buf(), suffixed(path, "-wal"), suffixed(path, "-shm")] {
            if let Ok(meta) = std::fs::metadata(&p) {
                if meta.permissions().mode() & 0o077 != 0 {
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
                }
            }
        }
    }
    Ok(())
}

fn suffixed(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

/// [`write_private`] for async code (the mailer's outbox).
pub async fn write_private_async(path: &Path, content: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).await?;
    f.write_all(content).await?;
    f.sync_all().await
}
