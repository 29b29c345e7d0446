//! The operator's request to stop: the first Ctrl-C (or SIGTERM) asks the engine to stop after
//! the current step; a second one stops the current step too.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

const AFTER_STEP: u8 = 1;
const NOW: u8 = 2;

#[derive(Clone, Default)]
pub struct AbortSignal {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    level: AtomicU8,
    now: Notify,
    any: Notify,
    /// Whether the request came from a signal (Ctrl-C, SIGTERM) rather than an answer.
    by_signal: std::sync::atomic::AtomicBool,
}

impl AbortSignal {
    /// Raises the level by one: first "stop after this step", then "stop now".
    pub fn escalate(&self) {
        let previous = self
            .inner
            .level
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| {
                Some((l + 1).min(NOW))
            })
            .unwrap_or(NOW);
        self.inner.any.notify_waiters();
        if previous + 1 >= NOW {
            self.inner.now.notify_waiters();
        }
    }

    /// Whether a signal (not an operator's answer) asked to stop.
    pub fn by_signal(&self) -> bool {
        self.inner.by_signal.load(Ordering::SeqCst)
    }

    /// Stop before the next step starts.
    pub fn is_requested(&self) -> bool {
        self.inner.level.load(Ordering::SeqCst) >= AFTER_STEP
    }

    /// Stop the running step as well.
    pub fn is_hard(&self) -> bool {
        self.inner.level.load(Ordering::SeqCst) >= NOW
    }

    /// Completes when a hard stop is requested.
    pub async fn hard_requested(&self) {
        loop {
            let notified = self.inner.now.notified();
            if self.is_hard() {
                return;
            }
            notified.await;
        }
    }

    /// Completes when any stop is requested.
    pub async fn requested(&self) {
        loop {
            let notified = self.inner.any.notified();
            if self.is_requested() {
                return;
            }
            notified.await;
        }
    }

    /// Listens for Ctrl-C and SIGTERM for the life of the runtime.
    pub fn listen_for_signals(&self) {
        let signal = self.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal as unix_signal, SignalKind};
            let (Ok(mut interrupt), Ok(mut terminate)) = (
                unix_signal(SignalKind::interrupt()),
                unix_signal(SignalKind::terminate()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                signal.inner.by_signal.store(true, Ordering::SeqCst);
                signal.escalate();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalates_from_soft_to_hard_and_stays() {
        let s = AbortSignal::default();
        assert!(!s.is_requested());
        s.escalate();
        assert!(s.is_requested() && !s.is_hard());
        s.escalate();
        s.escalate();
        assert!(s.is_hard());
    }
}
