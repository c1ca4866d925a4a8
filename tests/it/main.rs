//! Integration tests: a real HTTP server on 127.0.0.1, a real SQLite file in a
//! temporary folder, the real binary for command-line behaviour.

mod cli;
mod daemon;
mod dedup;
mod faults;
mod fetch;
mod fuzz;
mod hostile;
mod manage;
mod pipeline;
mod util;
