//! The window of requests in flight to one registry, which adapts: a registry 50 ms away
//! answers 8 requests in flight at 160 a second and 64 at 1,280, while one on loopback is
//! as fast at 8 as at 64; a user cannot know which number to set. As TCP's congestion
//! window does, it starts small (8), grows while requests wait for a place and nothing is
//! refused (by one per accepted answer, doubling each round trip, until the first
//! throttle; after that by one per round trip), up to the cap (`max-concurrency`, else
//! the run's `concurrency`), and halves when the rate controller finds a limit. Places
//! are handed out first come, first served (a tokio semaphore).
//!
//! A registry far away is latency-bound from its first answer: 8 in flight 100 ms away
//! answer 80 requests a second, and doubling from 8 spends three round trips getting to
//! 64 (a no-op plan of 500 at 100 ms: 1.27x curl's time at 64, not 1.25x). So until the
//! first throttle the window is at least what [`LATENCY_BOUND`] requests a second need
//! at the least round trip seen (100 ms: 64; 50 ms: 32; loopback's few milliseconds:
//! under 8, no change), as TCP's window is sized from the path's bandwidth-delay product.

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

/// The window a registry starts with.
const INITIAL: usize = 8;
/// The window never shrinks below this (nor above the cap).
const MIN: usize = 2;
/// Before the first throttle, the window holds at least this rate's requests over the
/// least round trip seen (what 8 in flight answer at 12.5 ms).
const LATENCY_BOUND: f64 = 640.0;

/// A registry's window of requests in flight.
#[derive(Debug)]
pub(super) struct Window {
    places: Semaphore,
    state: std::sync::Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The window, fractional so that it can grow by less than one per answer.
    size: f64,
    /// Places in play (free or taken): `size` rounded down once the debt is paid.
    granted: usize,
    /// Places to retire when they come back: the window shrank below those taken.
    debt: usize,
    cap: usize,
    /// A request waited for a place since the window last grew: the window, not the
    /// registry, held the run back.
    contended: bool,
    /// No throttle yet: grow by one per accepted answer.
    slow_start: bool,
}

/// A place in the window, given back when dropped.
#[derive(Debug)]
pub(in crate::registry::remote) struct Place<'a> {
    permit: Option<SemaphorePermit<'a>>,
    window: &'a Window,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let mut state = self.window.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.debt > 0 {
            state.debt -= 1;
            permit.forget();
        }
    }
}

impl Window {
    pub(super) fn new(cap: usize) -> Window {
        let cap = cap.max(1);
        let size = INITIAL.min(cap);
        Window {
            places: Semaphore::new(size),
            state: std::sync::Mutex::new(State {
                size: size as f64,
                granted: size,
                debt: 0,
                cap,
                contended: false,
                slow_start: true,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts places in play up to the window's size: each first pays back a place the
    /// window owes (retired when it comes back), else is added.
    fn grant_to_size(&self, state: &mut State) {
        while state.granted < state.size as usize {
            state.granted += 1;
            if state.debt > 0 {
                state.debt -= 1;
            } else {
                self.places.add_permits(1);
            }
        }
    }

    /// Waits for a place.
    pub(super) async fn enter(&self) -> Place<'_> {
        let permit = match self.places.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                self.state().contended = true;
                self.places
                    .acquire()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        Place {
            permit: Some(permit),
            window: self,
        }
    }

    /// A request was accepted, the least round trip seen being `least_round_trip`: the
    /// window grows if requests waited for a place and nothing was refused lately
    /// (`calm`), and is at least what [`LATENCY_BOUND`] needs until the first throttle.
    pub(super) fn accepted(&self, calm: bool, least_round_trip: Duration) {
        let mut state = self.state();
        if !calm || state.size >= state.cap as f64 {
            return;
        }
        if state.slow_start {
            let needed = (LATENCY_BOUND * least_round_trip.as_secs_f64()).floor();
            if needed > state.size {
                state.size = needed.min(state.cap as f64);
                self.grant_to_size(&mut state);
            }
        }
        if !state.contended || state.size >= state.cap as f64 {
            return;
        }
        let step = if state.slow_start {
            1.0
        } else {
            1.0 / state.size
        };
        state.size = (state.size + step).min(state.cap as f64);
        state.contended = false;
        self.grant_to_size(&mut state);
    }

    /// The registry is over a limit: half the window, but no less than `needed` (what
    /// the rate in force keeps in flight, with room).
    pub(super) fn throttled(&self, needed: usize) {
        let mut state = self.state();
        state.slow_start = false;
        let least = needed.max(MIN).min(state.cap) as f64;
        state.size = (state.size / 2.0).max(least).min(state.size);
        let target = state.size as usize;
        while state.granted > target {
            state.granted -= 1;
            if self.places.forget_permits(1) == 0 {
                state.debt += 1;
            }
        }
    }

    /// Places taken: requests in flight (or about to be sent).
    pub(super) fn in_flight(&self) -> usize {
        self.state()
            .granted
            .saturating_sub(self.places.available_permits())
    }

    /// The window's size.
    pub(super) fn size(&self) -> usize {
        self.state().granted
    }

    /// Back to `size` (the refusals that shrank it were sporadic).
    pub(super) fn restore(&self, size: usize) {
        let mut state = self.state();
        let size = size.min(state.cap);
        if size as f64 > state.size {
            state.size = size as f64;
        }
        self.grant_to_size(&mut state);
    }
}
