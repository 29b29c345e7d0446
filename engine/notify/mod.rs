//! Notifications: the channels they go to (a file, a command, a webhook), the routes that
//! choose the channels, and the durable outbox in the journal through which every one passes.
