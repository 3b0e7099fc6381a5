//! The async runtime openraft runs on: tokio, except that the random
//! numbers openraft draws (its randomized election timeouts) can be seeded
//! per thread.
//!
//! A deterministic simulation runs every node on one current-thread tokio
//! runtime with a paused clock, calls [`seed_thread_rng`] first, and so
//! gets the same elections, the same timers and the same interleaving for
//! the same seed. Unseeded (production), the numbers come from the
//! thread's OS-seeded RNG as with openraft's default runtime.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioRuntime};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

thread_local! {
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Make openraft's random numbers on this thread come from `seed` (until
/// [`unseed_thread_rng`]).
pub fn seed_thread_rng(seed: u64) {
    SEEDED.with(|r| *r.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// Back to OS-seeded random numbers on this thread.
pub fn unseed_thread_rng() {
    SEEDED.with(|r| *r.borrow_mut() = None);
}

/// openraft's RNG: the thread's seeded generator if there is one.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRng;

impl ThreadRng {
    fn with<T>(f: impl FnOnce(&mut dyn RngCore) -> T) -> T {
        SEEDED.with(|r| match r.borrow_mut().as_mut() {
            Some(seeded) => f(seeded),
            None => f(&mut rand::rng()),
        })
    }
}

impl rand08::RngCore for ThreadRng {
    fn next_u32(&mut self) -> u32 {
        Self::with(|r| r.next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        Self::with(|r| r.next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        Self::with(|r| r.fill_bytes(dest))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand08::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// tokio with a seedable [`ThreadRng`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Runtime;

type Tokio = TokioRuntime;

impl AsyncRuntime for Runtime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = <Tokio as AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = ThreadRng;
    type OneshotSender<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <Tokio as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        ThreadRng
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        Tokio::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use rand08::Rng;

    use super::*;

    #[test]
    fn seeded_thread_rng_repeats() {
        let draw = || {
            let mut r = Runtime::thread_rng();
            (0..8).map(|_| r.gen_range(0..1000u64)).collect::<Vec<_>>()
        };
        seed_thread_rng(7);
        let a = draw();
        seed_thread_rng(7);
        let b = draw();
        unseed_thread_rng();
        assert_eq!(a, b);
    }
}
