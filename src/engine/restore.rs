//! Putting a backup back in place of a stopped venue's database.
//!
//! Copying a backup over the database file by hand goes wrong in two ways, both found by an
//! operator's audit (RELIABILITY finding 17): SQLite replays a leftover `-wal` of the old
//! database into the copied file, which leaves it corrupt (or silently undoes the restore), and
//! a copy made while a server runs is never seen by that server. [`restore_database`] takes the
//! database's lock (so it refuses a running server), copies the backup in with SQLite's backup
//! API and checks it, and keeps the old database with its `-wal` under another name, so that
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
/// when there is one, `<from>.key`). Refused while a process that takes the database's lock
/// (serve, demo, chat, replay, seed, another restore) has it open ([`Error::Locked`]), when
/// `from` is not a litetrade database or its copy fails SQLite's integrity check, when an
/// earlier restore's `<db>.before-restore` files are still in the way, and when a `<db>-wal`
/// is left of a database that is gone; a refusal changes nothing. The database it replaces
/// is not deleted: its pending WAL frames are folded in where SQLite can, and it is kept as
/// `<db>.before-restore` with what is left of its WAL and a copy of its key. The admin-token
/// file stays as it is, so the admin token does not change. `progress(done_pages,
/// total_pages)` follows the copy.
///
/// The database's name never goes missing: the old file is kept by a second hard link, and
/// the checked copy replaces it by one atomic rename. Should the process die in between, the
/// file has two links, and every litetrade command refuses it until one is removed.
pub fn restore_database(
    cfg: &Config,
    from: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<Restored> {
    let _lock = lock_database(cfg)?;
    let db = real_path(&cfg.db);
    let source = real_path(from);
    // the backup's files are put beside their targets first, so that nothing else has
    // changed while copying them can fail; such a file is only ever a restore's unfinished one
    let copy = with_suffix(&db, ".restoring");
    let key = cfg.beside_db("key");
    let key_copy = with_suffix(&key, ".restoring");
    if source == db || source == copy {
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
    let wal = with_suffix(&db, "-wal");
    if !db.exists() && std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(Error::Conflict(format!(
            "{} is the WAL of a database that is no longer there, and SQLite would replay it \
             into the restored one: move it away first",
            wal.display()
        )));
    }
    let _ = std::fs::remove_file(&copy);
    let _ = std::fs::remove_file(&key_copy);
    copy_backup(&source, &copy, progress)?;
    let key_from = with_suffix(from, ".key");
    let has_key = read_if_there(&key_from).and_then(|k| match k {
        Some(bytes) => write_private_file(&key_copy, &bytes).map(|()| true),
        None => Ok(false),
    });
    let discard = || {
        let _ = std::fs::remove_file(&copy);
        let _ = std::fs::remove_file(&key_copy);
    };
    let has_key = has_key.map_err(|e| {
        discard();
        unavailable(&key_from, e)
    })?;
    let had_db = db.exists();
    if had_db && let Err(e) = keep_old(&db, &kept, &key) {
        discard();
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&copy, &db) {
        if had_db {
            undo_keep(&db, &kept);
        }
        discard();
        return Err(unavailable(&db, e));
    }
    sync_dir(&db);
    if has_key {
        std::fs::rename(&key_copy, &key).map_err(|e| {
            unavailable(
                &key,
                format!("the database is restored, but its key is not in place ({e})"),
            )
        })?;
        sync_dir(&key);
    }
    Ok(Restored {
        kept: had_db.then_some(kept),
        key: has_key.then_some(key_from),
    })
}

/// Copies the backup at `source` to `copy` and checks it. Reading a WAL-mode file makes SQLite
/// create its `-wal` and `-shm`, which a read-only connection cannot remove: the ones this
/// copy made go again, when they are still empty. (Not in `store::backup_file`: its source is
/// a database a server may start on meanwhile, whose fresh `-shm` must not be removed; a
/// restore's source is a backup file.)
fn copy_backup(source: &Path, copy: &Path, progress: &dyn Fn(u64, u64)) -> Result<()> {
    let beside = [with_suffix(source, "-wal"), with_suffix(source, "-shm")];
    let made = beside.iter().all(|f| !f.exists());
    let copied = crate::store::backup_file(source, copy, progress);
    if made && std::fs::metadata(&beside[0]).is_ok_and(|m| m.len() == 0) {
        beside.iter().for_each(|f| drop(std::fs::remove_file(f)));
    }
    Ok(copied?)
}

/// Keeps the database at `db` as `kept`: its WAL folded in where SQLite can, a second hard link
/// to the file, what is left of its WAL and a copy of its key beside that. `db` itself still
/// names the file afterwards. Its `-shm` holds nothing durable and is removed.
fn keep_old(db: &Path, kept: &Path, key: &Path) -> Result<()> {
    // best effort: a damaged database (the reason for many a restore) may not checkpoint, and
    // then its WAL is kept with it instead
    if let Ok(c) = rusqlite::Connection::open(db) {
        let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
    std::fs::hard_link(db, kept).map_err(|e| unavailable(kept, e))?;
    let kept_key = with_suffix(kept, ".key");
    let wal = with_suffix(db, "-wal");
    let moved = read_if_there(key)
        .and_then(|k| k.map_or(Ok(()), |k| write_private_file(&kept_key, &k)))
        .map_err(|e| unavailable(&kept_key, e))
        .and_then(|()| match std::fs::metadata(&wal) {
            Ok(m) if m.len() > 0 => {
                std::fs::rename(&wal, with_suffix(kept, "-wal")).map_err(|e| unavailable(&wal, e))
            }
            Ok(_) => std::fs::remove_file(&wal).map_err(|e| unavailable(&wal, e)),
            Err(_) => Ok(()),
        });
    if moved.is_err() {
        undo_keep(db, kept);
    }
    moved?;
    let _ = std::fs::remove_file(with_suffix(db, "-shm"));
    Ok(())
}

/// Undoes [`keep_old`] after a later step failed: the WAL goes back beside `db`, and the
/// second link and the key copy go (best effort; each step is checked before it is undone).
fn undo_keep(db: &Path, kept: &Path) {
    let kept_wal = with_suffix(kept, "-wal");
    if kept_wal.exists() {
        let _ = std::fs::rename(&kept_wal, with_suffix(db, "-wal"));
    }
    let _ = std::fs::remove_file(with_suffix(kept, ".key"));
    let _ = std::fs::remove_file(kept);
}

/// The file's bytes, or `None` when there is no such file.
fn read_if_there(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
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
