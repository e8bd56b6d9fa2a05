//! Group commit for GPU batches: the measure workers each submit one image, and whoever finds
//! no batch running runs everything submitted so far as one batch, while the others wait and
//! gather the next one. Batches thus grow with the number of workers waiting, with no timer
//! and no added latency when a worker is alone. Results come back to their submitters in any
//! order; a batch that panics hands every item back to its submitter, so nothing is lost and
//! no waiter hangs.
//!
//! Written here rather than taken from a crate: the batching crates found are async (tokio)
//! or timer-driven, and the workers are plain threads.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex};

/// Items waiting for a batch, and the finished items' results (or the items back, when their
/// batch failed).
struct State<T, R> {
    next_ticket: u64,
    pending: Vec<(u64, T)>,
    done: HashMap<u64, Result<R, T>>,
    running: bool,
    batches: u64,
    items: u64,
}

/// See the module comment. `T` is what is submitted, `R` what its batch returns for it.
pub struct Batcher<T, R> {
    state: Mutex<State<T, R>>,
    finished: Condvar,
    max_items: usize,
}

impl<T, R> std::fmt::Debug for Batcher<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (batches, items) = self.counts();
        f.debug_struct("Batcher")
            .field("batches", &batches)
            .field("items", &items)
            .finish_non_exhaustive()
    }
}

impl<T, R> Batcher<T, R> {
    /// A batcher whose batches hold at most `max_items` items.
    pub fn new(max_items: usize) -> Self {
        Batcher {
            state: Mutex::new(State {
                next_ticket: 0,
                pending: Vec::new(),
                done: HashMap::new(),
                running: false,
                batches: 0,
                items: 0,
            }),
            finished: Condvar::new(),
            max_items: max_items.max(1),
        }
    }

    /// Batches run and items they held so far.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.batches, state.items)
    }

    /// Submits `item` and returns its result once a batch has run it. `run` gets a batch and
    /// must return one result per item, in order; it runs on whichever submitting thread leads
    /// that batch. `Err(item)` when the batch panicked or returned the wrong number of results.
    pub fn submit(&self, item: T, run: impl Fn(&[T]) -> Vec<R>) -> Result<R, T> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.pending.push((ticket, item));
        loop {
            if let Some(result) = state.done.remove(&ticket) {
                return result;
            }
            if state.running {
                state = self.finished.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead a batch: everything pending, up to the limit, oldest first.
            state.running = true;
            let take = state.pending.len().min(self.max_items);
            let (tickets, items): (Vec<u64>, Vec<T>) = state.pending.drain(..take).unzip();
            drop(state);
            let outcome = catch_unwind(AssertUnwindSafe(|| run(&items)));
            state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.running = false;
            state.batches += 1;
            state.items += tickets.len() as u64;
            match outcome {
                Ok(results) if results.len() == items.len() => {
                    for (t, r) in tickets.into_iter().zip(results) {
                        state.done.insert(t, Ok(r));
                    }
                }
                _ => {
                    for (t, item) in tickets.into_iter().zip(items) {
                        state.done.insert(t, Err(item));
                    }
                }
            }
            self.finished.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_lone_submitter_runs_its_own_batch_of_one() {
        let batcher = Batcher::new(8);
        assert_eq!(
            batcher.submit(21, |xs: &[i32]| xs.iter().map(|x| x * 2).collect()),
            Ok(42)
        );
        assert_eq!(batcher.counts(), (1, 1));
    }

    #[test]
    fn concurrent_submitters_share_batches_and_get_their_own_results() {
        let batcher = Batcher::new(64);
        let largest = AtomicUsize::new(0);
        let threads = 8;
        let per_thread = 200;
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (batcher, largest) = (&batcher, &largest);
                scope.spawn(move || {
                    for i in 0..per_thread {
                        let x = t * 1000 + i;
                        let result = batcher.submit(x, |xs: &[usize]| {
                            largest.fetch_max(xs.len(), Ordering::Relaxed);
                            // Long enough that the others queue up behind it.
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            xs.iter().map(|x| x * 3 + 1).collect()
                        });
                        assert_eq!(result, Ok(x * 3 + 1));
                    }
                });
            }
        });
        let (batches, items) = batcher.counts();
        assert_eq!(items, (threads * per_thread) as u64);
        assert!(batches < items, "{batches} batches for {items} items");
        assert!(largest.load(Ordering::Relaxed) > 1);
        assert!(largest.load(Ordering::Relaxed) <= 64);
    }

    #[test]
    fn a_panicking_batch_hands_the_items_back_and_the_next_one_runs() {
        let batcher = Batcher::new(4);
        let result = batcher.submit(String::from("kept"), |_: &[String]| -> Vec<usize> {
            panic!("a kernel failed")
        });
        assert_eq!(result, Err(String::from("kept")));
        let short = batcher.submit(String::from("short"), |_: &[String]| Vec::<usize>::new());
        assert_eq!(short, Err(String::from("short")));
        let fine = batcher.submit(String::from("fine"), |xs: &[String]| {
            xs.iter().map(String::len).collect()
        });
        assert_eq!(fine, Ok(4));
    }

    #[test]
    fn batches_never_exceed_the_limit() {
        let batcher = Batcher::new(3);
        let largest = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for t in 0..6 {
                let (batcher, largest) = (&batcher, &largest);
                scope.spawn(move || {
                    for i in 0..50 {
                        let r = batcher.submit(t * 100 + i, |xs: &[i32]| {
                            largest.fetch_max(xs.len(), Ordering::Relaxed);
                            std::thread::sleep(std::time::Duration::from_micros(100));
                            xs.to_vec()
                        });
                        assert_eq!(r, Ok(t * 100 + i));
                    }
                });
            }
        });
        assert!(largest.load(Ordering::Relaxed) <= 3);
    }
}
