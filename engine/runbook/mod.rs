//! Runbooks, from file to plan: the YAML model and its source file (`model`), finding runbooks
//! in the library (`library`), the review schedule (`review`), the analyzer that reports every
//! problem at its `file:line:col` (`analyze`), and the checked, compiled `Plan` the executor
//! runs, with its parameters, placeholders and durations.

pub mod analyze;
pub mod duration;
pub mod library;
pub mod model;
pub mod params;
pub mod plan;
pub mod review;
pub mod template;

pub use model::*;
