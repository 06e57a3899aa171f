//! Commands that are not one of the shared resource verbs.

pub mod context;
pub mod health;
pub mod keys;
pub mod logs;
pub mod members;
pub mod money;
pub mod stats;
