//! The journal: one SQLite file (WAL, `synchronous=FULL`) holding every event of every run,
//! each appended in its own transaction before the engine moves on, and chained by SHA-256
//! so that an edited, deleted or reordered event is detected.
//!
//! The chain is global: event `seq` N carries the hash of event N-1 as `prev_hash`, and
//! `hash = SHA-256(prev_hash || lp(seq) || lp(run_id) || lp(run_seq) || lp(at) || lp(kind)
//! || lp(step) || lp(body))`, where `lp(x)` is the byte length of `x` as 8 bytes big-endian
//! followed by its UTF-8 bytes (integers in decimal), `prev_hash` is hex, and the first
//! event's `prev_hash` is 64 zeros. `body` is the event as canonical JSON (keys sorted).

pub mod chain;
pub mod event;
pub mod lease;
pub mod store;
pub mod view;

pub use chain::ChainStatus;
pub(crate) use store::append_in;
pub use store::{Journal, StoredEvent};
