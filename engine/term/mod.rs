//! The terminal, and the only code that touches it: progress bars and plain lines, questions
//! and secrets typed by the person at the terminal, and the terminal `Console` through which
//! the executor talks to them. Nothing but `cli` imports it.

pub mod console;
pub mod progress;
pub mod prompt;
