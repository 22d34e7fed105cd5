//! # jobqueue — a PostgreSQL job-queue runtime
//!
//! One binary (`jobqueue api | worker | reaper | migrate`) and a library.
#![forbid(unsafe_code)]

pub mod config;
pub mod db;
pub mod job;
pub mod migrate;
pub mod queue;

pub use job::{Job, NewJob, Status};
pub use queue::{ClaimedJob, Queue, QueueError};
