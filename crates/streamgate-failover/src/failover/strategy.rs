//! Routing strategies: the order in which one request tries the backends.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use streamgate_core::{scoreboard::ScoreView, BackendId};

use smallvec::SmallVec;

use super::{backoff::Jitter, service::INLINE_BACKENDS};

/// How the router orders its backends for each request.
///
/// Whatever the strategy, the [scoreboard](streamgate_core::scoreboard)
/// then has its say: a backend it knows to be unavailable (open breaker,
/// exhausted quota, TPM budget spent) is skipped without being called, and
/// a deprioritised one (late to first content, or below its minimum
/// throughput) moves behind the others, keeping its place among them. The
/// strategy's order decides everything else, including which backend is
/// tried next when one fails before its first content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// The order the backends were added in: a waterfall (the default).
    #[default]
    Ordered,
    /// Each request starts at the next backend in turn, then goes on in
    /// order, wrapping around.
    RoundRobin,
    /// The first choice is drawn with a probability proportional to its
    /// weight (one weight per backend, in the order they were added; a 0
    /// weight is only ever a fallback); the others follow in order.
    Weighted(Vec<u32>),
    /// The lowest moving average of time to first content first. A
    /// backend with no sample yet and nothing in flight comes first of all,
    /// so a cold backend is explored rather than starved; while that first
    /// request is on its way it comes last, so a burst of callers does not
    /// pile onto a backend nobody has measured.
    LeastTimeToFirstContent,
    /// Two distinct backends drawn at random; the one with the lower cost,
    /// average time to first content × (requests in flight + 1), first, then
    /// the other, then the rest in order. A backend with no sample yet costs
    /// 0 while nothing is in flight on it, so it is explored, and more than
    /// any measured one while its first requests are on their way.
    PowerOfTwoChoices,
    /// Requests with the same session key (see
    /// [`session_key`](super::FailoverBuilder::session_key)) start at the
    /// same backend, chosen by rendezvous hashing of the key and the
    /// backends' names, and fail over in that key's own order. While its
    /// backend is unavailable a session falls back to its next one, and it
    /// re-sticks to its own once that is available again. Requests without
    /// a key are routed in order.
    Sticky,
}

impl Strategy {
    /// A short snake_case name, as reports and metrics show it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ordered => "ordered",
            Self::RoundRobin => "round_robin",
            Self::Weighted(_) => "weighted",
            Self::LeastTimeToFirstContent => "least_time_to_first_content",
            Self::PowerOfTwoChoices => "power_of_two_choices",
            Self::Sticky => "sticky",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Backend indexes in the order one request tries them (inline for a
/// router of up to [`INLINE_BACKENDS`] backends).
pub(crate) type Order = SmallVec<[usize; INLINE_BACKENDS]>;

/// What a strategy may read for one request.
pub(crate) struct Inputs<'a> {
    pub(crate) ids: &'a [BackendId],
    pub(crate) scores: &'a [ScoreView],
    pub(crate) turn: &'a AtomicUsize,
    pub(crate) rng: &'a Jitter,
    pub(crate) session: Option<u64>,
}

impl Strategy {
    /// Every backend index, in the order this strategy tries them.
    pub(crate) fn order(&self, inputs: &Inputs<'_>) -> Order {
        let n = inputs.ids.len();
        let mut order: Order = (0..n).collect();
        match self {
            Self::Ordered => {}
            Self::RoundRobin => {
                let start = inputs.turn.fetch_add(1, Ordering::Relaxed) % n;
                order.rotate_left(start);
            }
            Self::Weighted(weights) => {
                let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
                if total > 0 {
                    // `unit() < 1`, so the draw is below the total.
                    let mut draw = (inputs.rng.unit() * total as f64) as u64;
                    let first = weights
                        .iter()
                        .position(|&w| {
                            let w = u64::from(w);
                            if draw < w {
                                true
                            } else {
                                draw -= w;
                                false
                            }
                        })
                        .unwrap_or(0);
                    move_to_front(&mut order, first);
                }
            }
            Self::LeastTimeToFirstContent => {
                // Stable: ties keep their order.
                order.sort_by(|&a, &b| {
                    let cost = |i: usize| {
                        let score = &inputs.scores[i];
                        match score.time_to_first_content {
                            Some(t) => t,
                            None if score.in_flight == 0 => Duration::ZERO,
                            None => Duration::MAX,
                        }
                    };
                    cost(a).cmp(&cost(b))
                });
            }
            Self::PowerOfTwoChoices if n >= 2 => {
                let a = pick(inputs.rng, n);
                let b = (a + 1 + pick(inputs.rng, n - 1)) % n;
                let cost = |i: usize| {
                    let score = &inputs.scores[i];
                    match score.time_to_first_content {
                        Some(t) => t.as_secs_f64() * (f64::from(score.in_flight) + 1.0),
                        None if score.in_flight == 0 => 0.0,
                        None => f64::INFINITY,
                    }
                };
                let (first, second) = if cost(b) < cost(a) { (b, a) } else { (a, b) };
                move_to_front(&mut order, second);
                move_to_front(&mut order, first);
            }
            Self::PowerOfTwoChoices => {}
            Self::Sticky => {
                if let Some(key) = inputs.session {
                    // Highest score first: each key's own preference list.
                    order.sort_by_key(|&i| std::cmp::Reverse(rendezvous(key, &inputs.ids[i])));
                }
            }
        }
        order
    }
}

fn move_to_front(order: &mut [usize], index: usize) {
    if let Some(at) = order.iter().position(|&i| i == index) {
        order[..=at].rotate_right(1);
    }
}

/// A uniform index below `n` (`n > 0`).
fn pick(rng: &Jitter, n: usize) -> usize {
    ((rng.unit() * n as f64) as usize).min(n - 1)
}

/// The rendezvous score of `key` on `backend`.
fn rendezvous(key: u64, backend: &BackendId) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    backend.as_str().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use streamgate_core::scoreboard::Scoreboard;
    use tokio::time::Instant;

    use super::*;

    fn ids(n: usize) -> Vec<BackendId> {
        (0..n).map(|i| BackendId::new(format!("b{i}"))).collect()
    }

    fn order_of(
        strategy: &Strategy,
        scores: &[ScoreView],
        session: Option<u64>,
        turn: &AtomicUsize,
        rng: &Jitter,
    ) -> Vec<usize> {
        let ids = ids(scores.len());
        let order = strategy.order(&Inputs {
            ids: &ids,
            scores,
            turn,
            rng,
            session,
        });
        order.to_vec()
    }

    fn cold(n: usize) -> Vec<ScoreView> {
        let board = Scoreboard::new();
        ids(n)
            .iter()
            .map(|id| board.view(id, "m", Instant::now()))
            .collect()
    }

    fn with_ttfc(ms: &[Option<u64>], in_flight: &[u32]) -> Vec<ScoreView> {
        let mut scores = cold(ms.len());
        for (i, score) in scores.iter_mut().enumerate() {
            score.time_to_first_content = ms[i].map(Duration::from_millis);
            score.in_flight = in_flight[i];
        }
        scores
    }

    #[tokio::test(start_paused = true)]
    async fn ordered_keeps_the_order_backends_were_added_in() {
        let (turn, rng) = (AtomicUsize::new(0), Jitter::with_seed(1));
        assert_eq!(
            order_of(&Strategy::Ordered, &cold(3), None, &turn, &rng),
            [0, 1, 2]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn round_robin_starts_each_request_at_the_next_backend() {
        let (turn, rng) = (AtomicUsize::new(0), Jitter::with_seed(1));
        let orders: Vec<_> = (0..4)
            .map(|_| order_of(&Strategy::RoundRobin, &cold(3), None, &turn, &rng))
            .collect();
        assert_eq!(
            orders,
            [vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1], vec![0, 1, 2]]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn weighted_draws_the_first_choice_in_proportion_to_its_weight() {
        let (turn, rng) = (AtomicUsize::new(0), Jitter::with_seed(7));
        let strategy = Strategy::Weighted(vec![3, 1, 0]);
        let mut firsts = [0u32; 3];
        for _ in 0..4000 {
            let order = order_of(&strategy, &cold(3), None, &turn, &rng);
            firsts[order[0]] += 1;
            // The rest keep their order.
            let mut rest = order[1..].to_vec();
            rest.sort_unstable();
            assert_eq!(rest, order[1..]);
        }
        assert_eq!(firsts[2], 0, "a 0 weight is never the first choice");
        // 3:1, within a few percent over 4000 draws.
        assert!((2850..3150).contains(&firsts[0]), "{firsts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn least_ttfc_explores_cold_backends_then_prefers_the_fastest() {
        let (turn, rng) = (AtomicUsize::new(0), Jitter::with_seed(1));
        let scores = with_ttfc(&[Some(900), None, Some(300), Some(600)], &[0; 4]);
        assert_eq!(
            order_of(
                &Strategy::LeastTimeToFirstContent,
                &scores,
                None,
                &turn,
                &rng
            ),
            [1, 2, 3, 0]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn least_ttfc_explores_a_cold_backend_one_request_at_a_time() {
        let (turn, rng) = (AtomicUsize::new(0), Jitter::with_seed(1));
        // b1 is cold with its first request on its way: it waits for that
        // sample behind every measured backend.
        let scores = with_ttfc(&[Some(900), None, Some(300)], &[0, 1, 0]);
        assert_eq!(
            order_of(
                &Strategy::LeastTimeToFirstContent,
                &scores,
                None,
                &turn,
                &rng
            ),
            [2, 0, 1]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn p2c_explores_an_idle_cold_backend_but_not_a_busy_one() {
        let (turn, rng) = (AtomicUsize::new(0), Jitter::with_seed(5));
        // Cold and idle: cheaper than any measured backend.
        let scores = with_ttfc(&[Some(100), None], &[0, 0]);
        for _ in 0..20 {
            assert_eq!(
                order_of(&Strategy::PowerOfTwoChoices, &scores, None, &turn, &rng),
                [1, 0]
            );
        }
        // Cold with a request in flight: dearer than a busy measured one.
        let scores = with_ttfc(&[Some(100), None], &[9, 1]);
        for _ in 0..20 {
            assert_eq!(
                order_of(&Strategy::PowerOfTwoChoices, &scores, None, &turn, &rng),
                [0, 1]
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn p2c_puts_the_cheaper_of_two_distinct_draws_first() {
        let (turn, rng) = (AtomicUsize::new(0), Jitter::with_seed(3));
        // b0 fast but busy (100 ms × 10), b1 slower and idle (300 ms × 1).
        let scores = with_ttfc(&[Some(100), Some(300)], &[9, 0]);
        for _ in 0..50 {
            assert_eq!(
                order_of(&Strategy::PowerOfTwoChoices, &scores, None, &turn, &rng),
                [1, 0]
            );
        }
        // With three backends the two draws are distinct and lead, and every
        // backend is still in the order.
        let scores = with_ttfc(&[Some(100), Some(100), Some(100)], &[0, 0, 0]);
        for _ in 0..50 {
            let mut order = order_of(&Strategy::PowerOfTwoChoices, &scores, None, &turn, &rng);
            assert_ne!(order[0], order[1]);
            order.sort_unstable();
            assert_eq!(order, [0, 1, 2]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sticky_sends_one_key_to_one_backend_and_spreads_keys() {
        let (turn, rng) = (AtomicUsize::new(0), Jitter::with_seed(1));
        let mut firsts = [0u32; 3];
        for key in 0..300u64 {
            let order = order_of(&Strategy::Sticky, &cold(3), Some(key), &turn, &rng);
            assert_eq!(
                order,
                order_of(&Strategy::Sticky, &cold(3), Some(key), &turn, &rng)
            );
            firsts[order[0]] += 1;
        }
        assert!(firsts.iter().all(|&n| n > 50), "{firsts:?}");
        // Without a key: in order.
        assert_eq!(
            order_of(&Strategy::Sticky, &cold(3), None, &turn, &rng),
            [0, 1, 2]
        );
    }
}
