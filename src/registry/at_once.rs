//! How many artifacts a run works on at once, and what an artifact does with its place
//! while a registry makes it wait.
//!
//! `concurrency` bounds the artifacts worked on at once. An artifact whose request was
//! throttled waits out the registry's `Retry-After` (a second, often) and sends nothing
//! meanwhile: with few artifacts at once behind a rate limit, every place can be taken by
//! one that waits, and the run stalls though the registry would accept more (with 4 at
//! once behind 100 requests a second, a few refusals a second kept a quarter of the rate
//! unused). So an artifact waiting out a `Retry-After` lends its place to the next one
//! (as a thread blocked on I/O gives up its core). Back from its wait it goes on at once,
//! and the next place given back is retired instead (the run owes one): waiting for a
//! place could deadlock, as the artifacts holding the places may wait for this one (a
//! blob two artifacts share is uploaded once, by the first). At most [`STARTED`] times
//! `concurrency` artifacts are started and unfinished, which bounds what the waiting ones
//! hold; the requests in flight to each registry stay bounded by its window (see
//! `remote::pacing`), which `concurrency` caps.
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

/// The places of a batch: free ones, and those owed (lent places whose artifacts came
/// back while none was free: retired when given back).
#[derive(Debug)]
struct Places {
    free: Arc<Semaphore>,
    owed: Mutex<usize>,
}

impl Places {
    fn owed(&self) -> std::sync::MutexGuard<'_, usize> {
        self.owed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more place while an artifact waits.
    fn lend(&self) {
        self.free.add_permits(1);
    }

    /// The artifact is back: one place fewer, now if one is free, else the next given
    /// back.
    fn take_back(&self) {
        let mut owed = self.owed();
        if self.free.forget_permits(1) == 0 {
            *owed += 1;
        }
    }

    /// An artifact finished: its place is free, unless one is owed.
    fn give_back(&self, permit: OwnedSemaphorePermit) {
        let mut owed = self.owed();
        if *owed > 0 {
            *owed -= 1;
            permit.forget();
        }
    }
}

/// An artifact's place among those worked on at once, given back when dropped.
#[derive(Debug)]
struct Place {
    places: Arc<Places>,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// The artifact's requests waiting out a `Retry-After` (its config and layer go at
    /// once): a place is lent while any does.
    waiting: Mutex<usize>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let permit = self
            .permit
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(permit) = permit {
            self.places.give_back(permit);
        }
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
        places: Arc::new(Places {
            free: Arc::new(Semaphore::new(concurrency)),
            owed: Mutex::new(0),
        }),
        most: concurrency.saturating_mul(STARTED),
    };
    futures::stream::unfold(state, |mut batch| async move {
        loop {
            let more = batch.work.peek().is_some() && batch.running.len() < batch.most;
            if !more && batch.running.is_empty() {
                return None;
            }
            let free = Arc::clone(&batch.places.free);
            tokio::select! {
                biased;
                Some(done) = batch.running.next(), if !batch.running.is_empty() => {
                    return Some((done, batch));
                }
                Ok(permit) = free.acquire_owned(), if more => {
                    if let Some(job) = batch.work.next() {
                        let place = Arc::new(Place {
                            places: Arc::clone(&batch.places),
                            permit: Mutex::new(Some(permit)),
                            waiting: Mutex::new(0),
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
    places: Arc<Places>,
    most: usize,
}

/// Waits for `wait` (a request's pause before it is tried again after a throttle) with
/// the artifact's place lent to another; back, it goes on at once (see the module's
/// documentation).
pub async fn lending_place<T>(wait: impl Future<Output = T>) -> T {
    let Ok(place) = PLACE.try_with(Arc::clone) else {
        return wait.await;
    };
    let waiting = |change: isize| {
        let mut waiting = place.waiting.lock().unwrap_or_else(|e| e.into_inner());
        *waiting = waiting.saturating_add_signed(change);
        *waiting
    };
    if waiting(1) == 1 {
        place.places.lend();
    }
    let out = wait.await;
    if waiting(-1) == 0 {
        place.places.take_back();
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
        let before_wait = Working::default();
        let start = tokio::time::Instant::now();
        let work = (0..16).map(|_| {
            let before_wait = &before_wait;
            async move {
                before_wait.enter();
                tokio::time::sleep(Duration::from_millis(10)).await;
                before_wait.leave();
                lending_place(tokio::time::sleep(Duration::from_secs(1))).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        at_once(work, 4).collect::<Vec<()>>().await;
        let wall = start.elapsed();
        assert!(wall < Duration::from_millis(1200), "{wall:?}");
        assert!(
            before_wait.most.load(Ordering::SeqCst) <= 4,
            "at most 4 work at once: {}",
            before_wait.most.load(Ordering::SeqCst)
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
                let free = PLACE.with(|p| p.places.free.available_permits());
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
    async fn an_artifact_back_from_its_wait_never_waits_for_a_place() {
        // Two at once. The first artifact uploads a blob the others share (they wait for
        // it) and is throttled meanwhile; the others take both places while it waits.
        // Waiting for a place when back would deadlock: both are held by artifacts
        // waiting for its upload.
        let shared_blob = tokio::sync::Mutex::new(false);
        let work = (0..3).map(|i| {
            let shared_blob = &shared_blob;
            async move {
                if i == 0 {
                    let mut uploaded = shared_blob.lock().await;
                    lending_place(tokio::time::sleep(Duration::from_secs(1))).await;
                    *uploaded = true;
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    assert!(*shared_blob.lock().await);
                }
            }
        });
        let run = at_once(work, 2).collect::<Vec<()>>();
        let done = tokio::time::timeout(Duration::from_secs(10), run).await;
        assert!(done.is_ok(), "deadlocked");
    }

    #[tokio::test(start_paused = true)]
    async fn a_place_owed_is_retired_when_given_back() {
        // One at once: the first artifact waits (its place lent), the second takes it
        // and holds it; the first comes back while none is free and goes on: two work
        // for a moment, then the place the first gives back is retired.
        let working = Working::default();
        let work = (0..4).map(|i| {
            let working = &working;
            async move {
                if i == 0 {
                    lending_place(tokio::time::sleep(Duration::from_millis(100))).await;
                }
                working.enter();
                let busy = if i == 0 { 10 } else { 200 };
                tokio::time::sleep(Duration::from_millis(busy)).await;
                working.leave();
            }
        });
        let start = tokio::time::Instant::now();
        at_once(work, 1).collect::<Vec<()>>().await;
        assert_eq!(working.most.load(Ordering::SeqCst), 2);
        // The other three one at a time from the start, 0.2 s each: 0.6 s. Had the
        // first's place been given back instead of retired, two would go at once from
        // 0.11 s on: 0.4 s.
        let wall = start.elapsed();
        assert!(wall >= Duration::from_millis(600), "{wall:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_outside_a_batch_lends_nothing() {
        assert_eq!(lending_place(async { 7 }).await, 7);
    }
}
