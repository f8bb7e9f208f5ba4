//! Files only their owner may read: the database (balances, token hashes, sealed credentials)
//! and its WAL and shared-memory files, the key file, the admin-token file and backups.

use std::path::{Path, PathBuf};

/// `path` with `suffix` appended to its file name: `x.db` and `-wal` give `x.db-wal`.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Symlinks a path may pass through before [`real_path`] gives up (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// `db` with every symlink resolved, as SQLite resolves it before naming its `-wal` and `-shm`
/// files: the database's lock is beside this path, and so are those files. A symlink whose
/// target does not exist yet is followed too (SQLite creates the target), then the target's
/// directory is resolved; when even that fails, the path as far as it was followed.
pub fn real_path(db: &Path) -> PathBuf {
    let mut p = db.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        let Ok(target) = std::fs::read_link(&p) else {
            break;
        };
        p = match p.parent() {
            Some(dir) if target.is_relative() => dir.join(target),
            _ => target,
        };
    }
    if let Ok(real) = std::fs::canonicalize(&p) {
        return real;
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(dir), p.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => p,
    }
}

/// Writes `contents` to `path` with mode 0600 (created exclusively).
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Makes an existing file that group or others may read private (0600) again, with a warning
/// naming the file (never its contents); `what` says what it is ("this key file"). A symlink
/// is left alone, and a file this process may not change only gets the warning: neither stops
/// a start that worked before. A missing file is nothing to do.
pub fn keep_private(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if !meta.is_file() || mode & 0o077 == 0 {
            return;
        }
        let was = format!("{mode:o}");
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => tracing::warn!(
                path = %path.display(), was,
                "{what} was readable by others; it is now 0600"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(), was, error = %e,
                "{what} is readable by others, and it could not be made 0600"
            ),
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_file_others_may_read_is_made_private_and_a_private_one_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        write_private_file(&f, b"x").unwrap();
        assert_eq!(mode(&f), 0o600);
        assert!(
            write_private_file(&f, b"y").is_err(),
            "an existing file is never replaced"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        keep_private(&f, "this file");
        assert_eq!(mode(&f), 0o600);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).unwrap();
        keep_private(&f, "this file");
        assert_eq!(mode(&f), 0o400, "owner-only modes are left as they are");
        keep_private(&dir.path().join("missing"), "nothing");
        assert_eq!(
            with_suffix(Path::new("/d/x.db"), "-wal"),
            Path::new("/d/x.db-wal")
        );
    }
}
