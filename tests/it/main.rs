//! Integration tests: a real HTTP server on 127.0.0.1, a real SQLite file in a
//! temporary folder or a real PostgreSQL database (a throwaway server the tests
//! start: `support/pg.rs`), the real binary for command-line behaviour.

#[macro_use]
mod util;

mod backup;
mod cli;
mod cluster;
mod daemon;
mod dbcopy;
mod dedup;
mod docs;
mod faults;
mod fetch;
mod fulltext;
mod fuzz;
mod hostile;
mod manage;
#[path = "../support/pairs.rs"]
mod pairs;
#[path = "../support/pg.rs"]
pub mod pg;
mod pgharness;
mod pipeline;
mod secrets;
mod websub;
