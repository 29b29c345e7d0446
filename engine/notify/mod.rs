//! Notifications: the channels they go to (a file, a command, a webhook), the routes that
//! choose the channels, and the durable outbox in the journal through which every one passes.
//!
//! A caller builds an [`outbox::Notification`] and [`outbox::queue`]s it: the routes pick
//! its channels and the journal records one outbox row (and one chained `notification_queued`
//! event) per channel before anything is tried. [`outbox::deliver_due`] later tries what is
//! due, one channel call at a time, each bounded by its channel's timeout, and journals each
//! outcome. Nothing here prints, and nothing from a notification is ever run as code.

pub mod channel;
pub mod outbox;
pub mod route;

#[cfg(test)]
mod testing;
