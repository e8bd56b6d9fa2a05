//! Containing a panic in per-sample work: the reader of a shard or a manifest row, CLIP input
//! preparation and the measure phase run each sample's work through [`contain_panic`], so a
//! bug a hostile file reaches becomes that sample's dropped row (saying so), and the run goes
//! on. It does not make anything unwind-safe by itself: callers contain only work whose state
//! is dropped or rebuilt after a panic (a sample's buffers, a reader that is not used again).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A panic that was contained: its message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Panicked(pub String);

/// Runs `work`; a panic in it is returned (with its message) instead of unwinding further.
pub fn contain_panic<T>(work: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(work))
        .map_err(|payload| Panicked(panic_message(payload.as_ref())))
}

/// The message a panic was raised with (`panic!("…")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_its_message_and_a_value_passes_through() {
        assert_eq!(contain_panic(|| 7), Ok(7));
        assert_eq!(
            contain_panic(|| -> u8 { panic!("index {} out of range", 3) }),
            Err(Panicked("index 3 out of range".to_string()))
        );
        assert_eq!(
            contain_panic(|| -> u8 { panic!("static") }),
            Err(Panicked("static".to_string()))
        );
        assert_eq!(
            contain_panic(|| std::panic::panic_any(42u32)),
            Err(Panicked("a panic without a message".to_string()))
        );
    }
}
