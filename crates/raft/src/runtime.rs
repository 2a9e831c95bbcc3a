//! [`ShardRuntime`]: the async runtime of a tradelog group, tokio with a random number
//! generator that a simulation can seed.
//!
//! openraft draws its election timeouts (and the first heartbeat delay) from the runtime's
//! `thread_rng()`. In production that is seeded from the operating system, exactly as
//! openraft's own tokio runtime does. A deterministic simulation calls
//! [`seed_thread_rng`] on the thread that runs it (turmoil runs every simulated host on
//! one thread, in an order fixed by its seed): every generator handed out on that thread
//! afterwards is derived from the seed, so the timeouts replay exactly.
//!
//! Everything else (spawning, timers, channels, mutexes) is tokio, unchanged.

use openraft::rt::{AsyncRuntime, OptionalSend};
use openraft_rt_tokio::TokioRuntime;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

thread_local! {
    /// The generator of seeds for this thread, when a simulation set one.
    static SEEDS: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Makes every random number generator openraft takes from [`ShardRuntime`] on this
/// thread derive from `seed` (`Some`), or from the operating system again (`None`, the
/// default). For simulations: the sequence is reproducible only if the thread's work is.
pub fn seed_thread_rng(seed: Option<u64>) {
    SEEDS.with(|s| *s.borrow_mut() = seed.map(StdRng::seed_from_u64));
}

/// The async runtime of [`TypeConfig`](crate::TypeConfig): tokio, with a
/// [`thread_rng`](AsyncRuntime::thread_rng) that [`seed_thread_rng`] can make
/// deterministic.
pub struct ShardRuntime {
    inner: TokioRuntime,
}

impl std::fmt::Debug for ShardRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardRuntime").finish()
    }
}

impl AsyncRuntime for ShardRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = StdRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        SEEDS.with(|s| match s.borrow_mut().as_mut() {
            Some(seeds) => StdRng::seed_from_u64(seeds.random()),
            None => StdRng::from_rng(&mut rand::rng()),
        })
    }

    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = <TokioRuntime as AsyncRuntime>::Watch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn new(threads: usize) -> Self {
        ShardRuntime {
            inner: TokioRuntime::new(threads),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.inner.block_on(future)
    }

    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, std::io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        TokioRuntime::spawn_blocking(f)
    }
}

/// Runs blocking work (file I/O, encoding a snapshot) off the async threads with tokio's
/// `spawn_blocking`, or on the calling task when `inline` (a deterministic simulation: a
/// thread pool would finish the work at a moment no seed decides).
pub(crate) async fn run_blocking<T, F>(inline: bool, f: F) -> std::io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if inline {
        Ok(f())
    } else {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws() -> Vec<u64> {
        (0..4)
            .map(|_| ShardRuntime::thread_rng().random::<u64>())
            .collect()
    }

    #[test]
    fn a_seeded_thread_repeats_its_draws_and_an_unseeded_one_does_not() {
        seed_thread_rng(Some(7));
        let a = draws();
        seed_thread_rng(Some(7));
        let b = draws();
        seed_thread_rng(Some(8));
        let c = draws();
        seed_thread_rng(None);
        let d = draws();
        let e = draws();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(d, e);
    }
}
