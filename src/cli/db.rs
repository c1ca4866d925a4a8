//! `feedsieve db`: whole-database work.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Subcommand;

use super::UsageError;
use crate::model::{Database, PgTarget};
use crate::store::{Store, copy};

#[derive(Debug, Subcommand)]
pub enum DbCommand {
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

pub fn db(cmd: DbCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DbCommand::Copy { from, to } => copy_store(&from, &to),
    }
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
