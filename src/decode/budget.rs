//! The per-sample decode budget: a deadline (`limits.max_decode_seconds`) and the most video
//! frames (`limits.max_video_frames`), entered by `decide::judge` for the sample its thread is
//! judging and checked by the decoders between their steps. It never stops a decoder inside one
//! step: FFmpeg is stopped at its next read of the bytes, its interrupt callback or our next
//! packet; an image decode (one call into the `image` crate or libjpeg-turbo, bounded instead by
//! `limits.max_decode_bytes`) is checked before it starts and after it returns.
//!
//! A thread-local value, not a parameter: the decoders are reached through the measure backends
//! and through FFmpeg's C callbacks, which run on the thread that called FFmpeg; threading a
//! deadline through every backend signature and callback `opaque` would change them all for
//! what is one value per sample and thread.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::DecodeError;

/// What one sample may spend on decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// When decoding must stop.
    pub deadline: Instant,
    /// The limit the deadline came from, in seconds, for messages.
    pub seconds: f64,
    /// The most video frames decoding may produce.
    pub max_video_frames: u64,
}

impl Budget {
    /// A budget of `seconds` from now.
    pub fn starting_now(seconds: f64, max_video_frames: u64) -> Budget {
        let length = Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX);
        let now = Instant::now();
        Budget {
            deadline: now
                .checked_add(length)
                .unwrap_or(now + Duration::from_secs(1 << 32)),
            seconds,
            max_video_frames,
        }
    }
}

thread_local! {
    static BUDGET: Cell<Option<Budget>> = const { Cell::new(None) };
}

/// Holds a budget entered on this thread; the one before it is back when this is dropped.
#[must_use = "the budget holds only while the guard lives"]
pub struct BudgetGuard {
    previous: Option<Budget>,
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        BUDGET.with(|b| b.set(self.previous));
    }
}

/// Enters `budget` on this thread until the guard is dropped.
pub fn enter(budget: Budget) -> BudgetGuard {
    BudgetGuard {
        previous: BUDGET.with(|b| b.replace(Some(budget))),
    }
}

/// Whether this thread's budget has run out (never, without one).
pub fn expired() -> bool {
    BUDGET
        .with(|b| b.get())
        .is_some_and(|b| Instant::now() >= b.deadline)
}

/// The error for a budget run out, `None` while it lasts.
pub fn check() -> Result<(), DecodeError> {
    match BUDGET.with(|b| b.get()) {
        Some(b) if Instant::now() >= b.deadline => {
            Err(DecodeError::TimedOut { seconds: b.seconds })
        }
        _ => Ok(()),
    }
}

/// The error once `decoded` video frames are more than the budget allows.
pub fn check_frames(decoded: u64) -> Result<(), DecodeError> {
    match BUDGET.with(|b| b.get()) {
        Some(b) if decoded > b.max_video_frames => Err(DecodeError::TooManyFrames {
            max: b.max_video_frames,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_holds_on_its_thread_until_its_guard_goes() {
        assert_eq!(check(), Ok(()));
        {
            let _outer = enter(Budget::starting_now(3600.0, 10));
            assert_eq!(check(), Ok(()));
            assert_eq!(check_frames(10), Ok(()));
            assert_eq!(
                check_frames(11),
                Err(DecodeError::TooManyFrames { max: 10 })
            );
            {
                let _inner = enter(Budget::starting_now(1e-9, 10));
                std::thread::sleep(Duration::from_millis(1));
                assert!(expired());
                assert_eq!(check(), Err(DecodeError::TimedOut { seconds: 1e-9 }));
                // Another thread has no budget.
                assert!(!std::thread::spawn(expired).join().unwrap());
            }
            assert!(!expired());
        }
        assert_eq!(check_frames(u64::MAX), Ok(()));
        // A limit too long for an `Instant` is still a budget, never a panic.
        let _long = enter(Budget::starting_now(1e300, 1));
        assert!(!expired());
    }
}
