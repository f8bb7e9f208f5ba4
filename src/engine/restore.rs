//! Putting a backup back in place of a stopped venue's database.
//!
//! Copying a backup over the database file by hand goes wrong in two ways, both found by an
//! operator's audit (RELIABILITY finding 17): SQLite replays a leftover `-wal` of the old
//! database into the copied file, which leaves it corrupt (or silently undoes the restore), and
//! a copy made while a server runs is never seen by that server. [`restore_database`] takes the
//! database's lock (so it refuses a running server), copies the backup in with SQLite's backup
//! API and checks it, and moves the old database aside together with its `-wal`, so that
//! nothing is lost and no WAL meets a file it does not belong to.

use super::lock_database;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::files::{real_path, with_suffix, write_private_file};
use std::path::{Path, PathBuf};

/// The suffix of the name the replaced database keeps: `t.db` becomes `t.db.before-restore`,
/// its WAL `t.db.before-restore-wal` (the name SQLite gives that file's WAL, so the pair opens
/// as it was) and its key `t.db.before-restore.key`.
pub const KEPT: &str = ".before-restore";

/// What [`restore_database`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Where the database that was replaced now is (with its `-wal` and `.key` beside it), or
    /// `None` when there was none.
    pub kept: Option<PathBuf>,
    /// The backup's key file that was copied to `<db>.key`, or `None` when the backup has none
    /// (its credentials, if any, are sealed with `LITETRADE_SECRET_KEY`, or it holds none).
    pub key: Option<PathBuf>,
}

/// Replaces `cfg.db` with the backup at `from` (as `litetrade backup` writes it: `<from>` and,
/// when there is one, `<from>.key`). Refused while any litetrade process has the database
/// open ([`Error::Locked`]), when `from` is not a litetrade database or its copy fails
/// SQLite's integrity check, and when an earlier restore's `<db>.before-restore` is still in
/// the way; a refusal changes nothing. The database it replaces is not deleted: its pending
/// WAL frames are folded in where SQLite can, and it is renamed to `<db>.before-restore` with
/// its `-wal` and key. The admin-token file stays as it is, so the admin token does not
/// change. `progress(done_pages, total_pages)` follows the copy.
pub fn restore_database(
    cfg: &Config,
    from: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<Restored> {
    let _lock = lock_database(cfg)?;
    let db = real_path(&cfg.db);
    if real_path(from) == db {
        return Err(Error::Invalid(format!(
            "{} is the database itself, not a backup of it",
            from.display()
        )));
    }
    let kept = with_suffix(&db, KEPT);
    let kept_files = [
        kept.clone(),
        with_suffix(&kept, "-wal"),
        with_suffix(&kept, ".key"),
    ];
    if let Some(f) = kept_files.iter().find(|f| f.exists()) {
        return Err(Error::Conflict(format!(
            "{} is in the way, from an earlier restore: move or delete it first",
            f.display()
        )));
    }
    // Copied beside the database first, so that the file put in place is whole and checked.
    // A `.restoring` file is only ever this function's unfinished copy.
    let copy = with_suffix(&db, ".restoring");
    let _ = std::fs::remove_file(&copy);
    // reading the backup (a WAL-mode file) makes SQLite create its -wal and -shm, which a
    // read-only connection cannot remove: the ones this restore made go again
    let beside_from = [with_suffix(from, "-wal"), with_suffix(from, "-shm")];
    let made: Vec<&PathBuf> = beside_from.iter().filter(|f| !f.exists()).collect();
    let copied = crate::store::backup_file(from, &copy, progress);
    if made.len() == beside_from.len()
        && std::fs::metadata(&beside_from[0]).is_ok_and(|m| m.len() == 0)
    {
        made.iter().for_each(|f| drop(std::fs::remove_file(f)));
    }
    copied?;
    let key_from = with_suffix(from, ".key");
    let key_bytes = match std::fs::read(&key_from) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            let _ = std::fs::remove_file(&copy);
            return Err(unavailable(&key_from, e));
        }
    };
    let old = db.exists().then(|| set_aside(&db, &kept)).transpose();
    let old = old.inspect_err(|_| {
        let _ = std::fs::remove_file(&copy);
    })?;
    std::fs::rename(&copy, &db).map_err(|e| unavailable(&db, e))?;
    sync_dir(&db);
    let key = cfg.beside_db("key");
    let key_done = match &key_bytes {
        Some(bytes) => {
            if key.exists() {
                std::fs::rename(&key, with_suffix(&kept, ".key"))
                    .map_err(|e| unavailable(&key, e))?;
            }
            write_private_file(&key, bytes).map_err(|e| unavailable(&key, e))?;
            Some(key_from)
        }
        None => None,
    };
    Ok(Restored {
        kept: old.map(|()| kept),
        key: key_done,
    })
}

/// Folds the WAL of the database at `db` into it where SQLite can, then renames it, with what
/// is left of its WAL, to `kept`. Its `-shm` holds nothing durable and is removed.
fn set_aside(db: &Path, kept: &Path) -> Result<()> {
    // best effort: a damaged database (the reason for many a restore) may not checkpoint, and
    // then its WAL moves with it instead
    if let Ok(c) = rusqlite::Connection::open(db) {
        let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
    let wal = with_suffix(db, "-wal");
    let shm = with_suffix(db, "-shm");
    // the WAL first: at no moment may a WAL sit beside a database it does not belong to
    match std::fs::metadata(&wal) {
        Ok(m) if m.len() > 0 => {
            std::fs::rename(&wal, with_suffix(kept, "-wal")).map_err(|e| unavailable(&wal, e))?
        }
        Ok(_) => std::fs::remove_file(&wal).map_err(|e| unavailable(&wal, e))?,
        Err(_) => {}
    }
    std::fs::rename(db, kept).map_err(|e| unavailable(db, e))?;
    match std::fs::remove_file(&shm) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(unavailable(&shm, e)),
        _ => Ok(()),
    }
}

/// Makes the renames in `file`'s directory durable (best effort: not every platform can).
fn sync_dir(file: &Path) {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

fn unavailable(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("restore: {}: {e}", path.display()))
}
