//! How many artifacts a run works on at once, and what an artifact does with its place
//! while a registry makes it wait.
//!
//! `concurrency` bounds the artifacts worked on at once. An artifact whose request was
//! throttled waits out the registry's `Retry-After` (a second, often) and sends nothing
//! meanwhile: with few artifacts at once behind a rate limit, every place can be taken by
//! one that waits, and the run stalls though the registry would accept more (with 4 at
//! once behind 100 requests a second, a few refusals a second kept a quarter of the rate
//! unused). So an artifact waiting out a `Retry-After` lends its place to the next one
//! (as a thread blocked on I/O gives up its core), and takes a place again before it goes
//! on. At most [`STARTED`] times `concurrency` artifacts are started and unfinished, which
//! bounds what the waiting ones hold; the requests in flight to each registry stay bounded
//! by its window (see `remote::pacing`), which `concurrency` caps.
//!
//! [`at_once`] runs a batch of artifacts this way (where `buffer_unordered` would);
//! [`lending_place`] is what a request calls around its wait. Outside [`at_once`] (a
//! single read by `inspect`), waiting lends nothing.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::stream::{FuturesUnordered, Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Artifacts started and unfinished, at most, as a multiple of `concurrency`: places lent
/// beyond this wait for one of them to finish.
pub const STARTED: usize = 4;

tokio::task_local! {
    /// The place of the artifact being worked on (set by [`at_once`]).
    static PLACE: Arc<Place>;
}

/// An artifact's place among those worked on at once.
#[derive(Debug)]
struct Place {
    places: Arc<Semaphore>,
    held: Mutex<Held>,
}

#[derive(Debug)]
struct Held {
    permit: Option<OwnedSemaphorePermit>,
    /// The artifact's requests waiting out a `Retry-After` (its config and layer go at
    /// once): the place is lent while any does, taken again when the last is back.
    waiting: usize,
}

impl Place {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `work` (one future per artifact), `concurrency` at once, an artifact waiting out
/// a registry's `Retry-After` lending its place (see the module's documentation); yields
/// each result as it finishes, in no particular order.
pub fn at_once<I>(work: I, concurrency: usize) -> impl Stream<Item = <I::Item as Future>::Output>
where
    I: IntoIterator,
    I::Item: Future,
{
    let concurrency = concurrency.max(1);
    let state = Batch {
        work: work.into_iter().peekable(),
        running: FuturesUnordered::new(),
        places: Arc::new(Semaphore::new(concurrency)),
        most: concurrency.saturating_mul(STARTED),
    };
    futures::stream::unfold(state, |mut batch| async move {
        loop {
            let more = batch.work.peek().is_some() && batch.running.len() < batch.most;
            if !more && batch.running.is_empty() {
                return None;
            }
            let places = Arc::clone(&batch.places);
            tokio::select! {
                // Finished work first: a place it frees goes to an artifact coming back
                // from its wait before a new one (the new one asks again afterwards).
                biased;
                Some(done) = batch.running.next(), if !batch.running.is_empty() => {
                    return Some((done, batch));
                }
                Ok(permit) = places.acquire_owned(), if more => {
                    if let Some(job) = batch.work.next() {
                        let place = Arc::new(Place {
                            places: Arc::clone(&batch.places),
                            held: Mutex::new(Held {
                                permit: Some(permit),
                                waiting: 0,
                            }),
                        });
                        batch.running.push(PLACE.scope(place, job));
                    }
                }
            }
        }
    })
}

/// Artifacts being worked on: those not started yet, and those started.
struct Batch<I: Iterator>
where
    I::Item: Future,
{
    work: std::iter::Peekable<I>,
    running: FuturesUnordered<tokio::task::futures::TaskLocalFuture<Arc<Place>, I::Item>>,
    places: Arc<Semaphore>,
    most: usize,
}

/// Waits for `wait` (a request's pause before it is tried again after a throttle) with
/// the artifact's place lent to another; takes a place again before returning.
pub async fn lending_place<T>(wait: impl Future<Output = T>) -> T {
    let Ok(place) = PLACE.try_with(Arc::clone) else {
        return wait.await;
    };
    {
        let mut held = place.held();
        held.waiting += 1;
        held.permit = None;
    }
    let out = wait.await;
    let back = {
        let mut held = place.held();
        held.waiting -= 1;
        held.waiting == 0 && held.permit.is_none()
    };
    if back {
        let permit = Arc::clone(&place.places)
            .acquire_owned()
            .await
            .expect("the places are never closed");
        let mut held = place.held();
        if held.permit.is_none() {
            held.permit = Some(permit);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Counts the artifacts working (not waiting) at once, and the most seen.
    #[derive(Default)]
    struct Working {
        now: AtomicUsize,
        most: AtomicUsize,
        started: AtomicUsize,
    }

    impl Working {
        fn enter(&self) {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
        }
        fn leave(&self) {
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_concurrency_work_at_once() {
        let working = Working::default();
        let work = (0..20).map(|i| {
            let working = &working;
            async move {
                working.enter();
                tokio::time::sleep(Duration::from_millis(10)).await;
                working.leave();
                i
            }
        });
        let mut done: Vec<i32> = at_once(work, 3).collect().await;
        done.sort_unstable();
        assert_eq!(done, (0..20).collect::<Vec<_>>());
        assert_eq!(working.most.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_artifact_waiting_out_a_retry_after_lends_its_place() {
        // 4 at once; every artifact is throttled once and waits a second. Holding their
        // places, the 16 take 4 rounds of a second; lent, they wait together.
        let working = Working::default();
        let start = tokio::time::Instant::now();
        let work = (0..16).map(|_| {
            let working = &working;
            async move {
                working.started.fetch_add(1, Ordering::SeqCst);
                working.enter();
                tokio::time::sleep(Duration::from_millis(10)).await;
                working.leave();
                lending_place(tokio::time::sleep(Duration::from_secs(1))).await;
                working.enter();
                tokio::time::sleep(Duration::from_millis(10)).await;
                working.leave();
            }
        });
        at_once(work, 4).collect::<Vec<()>>().await;
        let wall = start.elapsed();
        assert!(wall < Duration::from_millis(1200), "{wall:?}");
        assert!(
            working.most.load(Ordering::SeqCst) <= 4,
            "at most 4 work at once: {}",
            working.most.load(Ordering::SeqCst)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn lent_places_start_at_most_four_times_concurrency() {
        let working = Working::default();
        let most_started = AtomicUsize::new(0);
        let work = (0..40).map(|_| {
            let (working, most_started) = (&working, &most_started);
            async move {
                let started = working.started.fetch_add(1, Ordering::SeqCst) + 1;
                most_started.fetch_max(started, Ordering::SeqCst);
                lending_place(tokio::time::sleep(Duration::from_secs(1))).await;
                working.started.fetch_sub(1, Ordering::SeqCst);
            }
        });
        at_once(work, 2).collect::<Vec<()>>().await;
        assert_eq!(most_started.load(Ordering::SeqCst), 2 * STARTED);
    }

    #[tokio::test(start_paused = true)]
    async fn two_requests_of_one_artifact_waiting_lend_one_place() {
        // One artifact's config and layer both throttled: one place lent, one taken back.
        let places_after = Arc::new(AtomicUsize::new(usize::MAX));
        let work = std::iter::once({
            let places_after = Arc::clone(&places_after);
            async move {
                let wait = || lending_place(tokio::time::sleep(Duration::from_millis(100)));
                futures::join!(wait(), wait());
                let free = PLACE.with(|p| p.places.available_permits());
                places_after.store(free, Ordering::SeqCst);
            }
        });
        at_once(work, 2).collect::<Vec<()>>().await;
        assert_eq!(
            places_after.load(Ordering::SeqCst),
            1,
            "one of two places held"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_outside_a_batch_lends_nothing() {
        assert_eq!(lending_place(async { 7 }).await, 7);
    }
}
