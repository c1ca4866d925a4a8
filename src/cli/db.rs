//! `feedsieve db`: whole-database work.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::UsageError;
use crate::model::{Database, PgTarget};
use crate::store::{Store, copy};

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Write a consistent copy of the config's SQLite store to FILE, also while
    /// `feedsieve run` is writing to it, and check the copy (PRAGMA integrity_check).
    /// FILE must not exist. On PostgreSQL, use pg_dump instead.
    Backup {
        /// The new file.
        file: PathBuf,
    },
    /// Copy a whole store (feeds' state and validators, items, stories, topics,
    /// tombstones) into an empty database: each a SQLite path or a postgres:// URL
    /// (password in the URL, PGPASSWORD or ~/.pgpass).
    Copy {
        /// The database to copy (it is only read).
        from: String,
        /// The database to fill; it must hold no feed, item, story or topic.
        to: String,
    },
}

pub fn db(config: &Path, cmd: DbCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DbCommand::Backup { file } => backup(&crate::daemon::load_config(config)?.daemon.database, &file),
        DbCommand::Copy { from, to } => copy_store(&from, &to),
    }
}

/// `db backup FILE`: `VACUUM INTO` a file beside FILE, checked, synced, then renamed
/// to FILE, so that FILE is never a partial copy.
fn backup(db: &Database, file: &Path) -> anyhow::Result<ExitCode> {
    if let Database::Postgres(_) = db {
        return Err(UsageError(format!(
            "db backup copies a SQLite store, and {db} is PostgreSQL: back it up with \
             pg_dump -Fc -f feedsieve.dump DBNAME (pg_restore -d DBNAME feedsieve.dump restores it)"
        ))
        .into());
    }
    if db.is_missing_file() {
        return Err(UsageError(format!("{db} does not exist: there is nothing to back up yet")).into());
    }
    if file.symlink_metadata().is_ok() {
        return Err(UsageError(format!("{} exists; db backup writes a new file only", file.display())).into());
    }
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if !folder.is_dir() {
        return Err(UsageError(format!(
            "{}: the folder {} does not exist",
            file.display(),
            folder.display()
        ))
        .into());
    }
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = folder.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let started = std::time::Instant::now();
    let spinner = std::io::stderr().is_terminal().then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("copying {db}"));
        s.enable_steady_tick(std::time::Duration::from_millis(200));
        s
    });
    let result = (|| -> anyhow::Result<(i64, u64)> {
        Store::open_read_only(db)?.backup_to(&partial)?;
        if let Some(s) = &spinner {
            s.set_message(format!("checking {}", file.display()));
        }
        let copy = Store::open_read_only(Database::Sqlite(partial.clone()))?;
        let integrity = copy.integrity_check()?;
        anyhow::ensure!(integrity == "ok", "the copy failed its integrity check: {integrity}");
        let items = copy.item_count()?;
        drop(copy);
        std::fs::File::open(&partial)?.sync_all()?;
        let size = std::fs::metadata(&partial)?.len();
        Ok((items, size))
    })();
    if let Some(s) = &spinner {
        s.finish_and_clear();
    }
    let (items, size) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.context(format!("cannot back {db} up to {}", file.display())));
        }
    };
    // Linked under its name only when complete; never over a file made meanwhile.
    if let Err(e) = std::fs::hard_link(&partial, file) {
        let _ = std::fs::remove_file(&partial);
        return Err(anyhow::Error::from(e).context(format!("cannot create {}", file.display())));
    }
    let _ = std::fs::remove_file(&partial);
    if let Ok(dir) = std::fs::File::open(&folder) {
        let _ = dir.sync_all();
    }
    println!(
        "backed up {db} to {}: {items} items, {size} bytes, integrity ok ({:.1}s)",
        file.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// A database named on the command line: a `postgres://` URL or a path.
fn database(arg: &str) -> Database {
    let lower = arg.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        Database::Postgres(PgTarget { url: arg.to_owned(), password_file: None })
    } else {
        Database::Sqlite(arg.into())
    }
}

fn copy_store(from: &str, to: &str) -> anyhow::Result<ExitCode> {
    let (from, to) = (database(from), database(to));
    if from.is_missing_file() {
        return Err(UsageError(format!("{from} does not exist")).into());
    }
    if from == to {
        return Err(UsageError("a database cannot be copied onto itself".into()).into());
    }
    let source = Store::open_read_only(&from)?;
    let mut target = Store::open(&to)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let started = std::time::Instant::now();
    let counts = copy::copy(&source, &mut target, &mut |p| {
        if let Some(b) = &bar {
            b.set_message(p.table.to_owned());
            b.set_length(p.total);
            b.set_position(p.copied);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let counts = counts.map_err(|e| match e {
        crate::store::StoreError::NotEmpty { .. } => anyhow::Error::from(UsageError(e.to_string())),
        e => e.into(),
    })?;
    let rows: u64 = counts.iter().map(|(_, _, n)| n).sum();
    println!("copied {from} to {to}: {rows} rows in {:.1}s", started.elapsed().as_secs_f64());
    for (table, source, copied) in counts {
        let note = match table {
            "item_bands" if copied > source => " (with the search keys the source had not written yet)",
            "meta" if copied > source => " (with the target's own)",
            _ => "",
        };
        println!("  {table:<18} {copied:>10}{note}");
    }
    Ok(ExitCode::SUCCESS)
}
