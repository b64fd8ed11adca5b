//! One module per command, named like it; each parses its options, calls the libraries and
//! prints.

pub mod ab;
pub mod backends;
pub mod bench;
pub mod compare;
pub mod completions;
pub mod devices;
pub mod fleet;
pub mod follow;
pub mod history;
pub mod man;
pub mod merge;
pub mod models;
pub mod optimize;
pub mod outputs;
pub mod plan;
pub mod remote;
pub mod report;
pub mod roofline;
pub mod scenarios;
pub mod worker;
pub mod zoo;
