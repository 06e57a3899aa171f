//! Load balancing over a list of weighted targets. Independent of what a
//! target is (an API's upstream URL, an AI channel): callers pass weights,
//! an eligibility filter (health, breaker, cooldown) and, for consistent
//! hashing, the key. The state that must survive a snapshot update (round
//! robin position, smooth weights) lives in [`BalancerState`], which the
//! caller keeps across recompilations; in-flight counts live with each
//! target's runtime state and are passed in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// How to choose among eligible targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Each target in turn, ignoring weights (weight 0 still drains).
    RoundRobin,
    /// Smooth weighted round robin (nginx's): weights in proportion,
    /// interleaved.
    Weighted,
    /// Power of two choices over in-flight requests; ties by weight.
    LeastRequests,
    /// Weighted random.
    Random,
    /// Weighted rendezvous hashing of a key: a key keeps its target while
    /// the target set is unchanged, and adding a target moves about 1/n of
    /// the keys.
    ConsistentHash,
}

/// Balancer state kept across snapshot updates.
#[derive(Debug, Default)]
pub struct BalancerState {
    next: AtomicUsize,
    smooth: Mutex<Vec<i64>>,
}

/// One choice's inputs.
pub struct Candidates<'a> {
    /// Weight per target; 0 = drained (never chosen).
    pub weights: &'a [u32],
    /// Whether target `i` may be used now (healthy, breaker closed).
    pub eligible: &'a dyn Fn(usize) -> bool,
    /// In-flight requests per target (LEAST_REQUESTS).
    pub in_flight: &'a dyn Fn(usize) -> usize,
    /// Stable identity per target for hashing (its URL).
    pub names: &'a [String],
}

impl Candidates<'_> {
    fn usable(&self) -> Vec<usize> {
        (0..self.weights.len())
            .filter(|&index| self.weights[index] > 0 && (self.eligible)(index))
            .collect()
    }
}

/// The chosen target's index, or `None` when no target has weight and is
/// eligible.
pub fn pick(
    algorithm: Algorithm,
    state: &BalancerState,
    candidates: &Candidates<'_>,
    hash_key: Option<&[u8]>,
) -> Option<usize> {
    let usable = candidates.usable();
    if usable.len() <= 1 {
        return usable.first().copied();
    }
    Some(match algorithm {
        Algorithm::RoundRobin => usable[state.next.fetch_add(1, Ordering::Relaxed) % usable.len()],
        Algorithm::Weighted => smooth_weighted(state, candidates.weights, &usable),
        Algorithm::LeastRequests => least_requests(candidates, &usable),
        Algorithm::Random => weighted_random(candidates.weights, &usable),
        Algorithm::ConsistentHash => match hash_key {
            Some(key) => rendezvous(key, candidates, &usable),
            None => weighted_random(candidates.weights, &usable),
        },
    })
}

/// nginx's smooth weighted round robin: add each weight to its current
/// value, pick the largest, subtract the total from it.
fn smooth_weighted(state: &BalancerState, weights: &[u32], usable: &[usize]) -> usize {
    let mut current = state.smooth.lock().unwrap_or_else(PoisonError::into_inner);
    current.resize(weights.len(), 0);
    let mut total = 0_i64;
    let mut best = usable[0];
    for &index in usable {
        let weight = i64::from(weights[index]);
        current[index] += weight;
        total += weight;
        if current[index] > current[best] {
            best = index;
        }
    }
    current[best] -= total;
    best
}

/// Two random candidates; the one with fewer in flight relative to its
/// weight wins, ties to the heavier.
fn least_requests(candidates: &Candidates<'_>, usable: &[usize]) -> usize {
    let first = usable[fastrand::usize(..usable.len())];
    let mut second = usable[fastrand::usize(..usable.len() - 1)];
    if second == first {
        second = usable[usable.len() - 1];
    }
    let load = |index: usize| {
        // in_flight / weight, compared by cross-multiplying.
        (
            (candidates.in_flight)(index) as u64,
            u64::from(candidates.weights[index]),
        )
    };
    let ((a_flight, a_weight), (b_flight, b_weight)) = (load(first), load(second));
    match (a_flight * b_weight).cmp(&(b_flight * a_weight)) {
        std::cmp::Ordering::Less => first,
        std::cmp::Ordering::Greater => second,
        std::cmp::Ordering::Equal if b_weight > a_weight => second,
        std::cmp::Ordering::Equal => first,
    }
}

fn weighted_random(weights: &[u32], usable: &[usize]) -> usize {
    let total: u64 = usable.iter().map(|&index| u64::from(weights[index])).sum();
    let mut point = fastrand::u64(..total.max(1));
    for &index in usable {
        let weight = u64::from(weights[index]);
        if point < weight {
            return index;
        }
        point -= weight;
    }
    usable[usable.len() - 1]
}

/// A stable 64-bit hash (FNV-1a, then a splitmix64 finaliser): the same on
/// every edge replica and release, unlike std's hasher.
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// Weighted rendezvous (highest random weight) hashing: each target scores
/// `-weight / ln(u)` with `u` uniform from hash(key, target); the highest
/// wins. O(targets) per choice, no ring to rebuild.
fn rendezvous(key: &[u8], candidates: &Candidates<'_>, usable: &[usize]) -> usize {
    let mut best = (usable[0], f64::NEG_INFINITY);
    for &index in usable {
        let hash = stable_hash(&[key, candidates.names[index].as_bytes()]);
        // (0, 1], never 0, so the logarithm is finite and negative or 0.
        let unit = ((hash >> 11) as f64 + 1.0) / ((1_u64 << 53) as f64);
        let score = -f64::from(candidates.weights[index]) / unit.ln();
        if score > best.1 {
            best = (index, score);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates<'a>(weights: &'a [u32], names: &'a [String]) -> Candidates<'a> {
        Candidates {
            weights,
            eligible: &|_| true,
            in_flight: &|_| 0,
            names,
        }
    }

    fn names() -> Vec<String> {
        ["http://a", "http://b", "http://c", "http://d"]
            .map(str::to_owned)
            .to_vec()
    }

    fn counts(algorithm: Algorithm, weights: &[u32], rounds: usize) -> Vec<usize> {
        let names = names();
        let state = BalancerState::default();
        let choice = candidates(weights, &names[..weights.len()]);
        let mut counts = vec![0; weights.len()];
        for _ in 0..rounds {
            counts[pick(algorithm, &state, &choice, None).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_ignores_weights_but_drains_zero() {
        assert_eq!(counts(Algorithm::RoundRobin, &[1, 5, 0], 10), [5, 5, 0]);
    }

    #[test]
    fn smooth_weighted_round_robin_interleaves_in_proportion() {
        let names = names();
        let state = BalancerState::default();
        let choice = candidates(&[5, 1, 1], &names[..3]);
        let order: Vec<usize> = (0..7)
            .map(|_| pick(Algorithm::Weighted, &state, &choice, None).unwrap())
            .collect();
        // nginx's documented sequence for 5:1:1.
        assert_eq!(order, [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(counts(Algorithm::Weighted, &[3, 1, 0], 400), [300, 100, 0]);
    }

    #[test]
    fn weighted_random_follows_the_weights() {
        let counts = counts(Algorithm::Random, &[3, 1], 20_000);
        assert!((14_000..16_000).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn least_requests_prefers_the_idle_target() {
        let names = names();
        let state = BalancerState::default();
        let busy = |index: usize| if index == 0 { 10 } else { 0 };
        let choice = Candidates {
            weights: &[1, 1],
            eligible: &|_| true,
            in_flight: &busy,
            names: &names[..2],
        };
        for _ in 0..50 {
            assert_eq!(
                pick(Algorithm::LeastRequests, &state, &choice, None),
                Some(1)
            );
        }
        // Equal load: the heavier target.
        let choice = Candidates {
            weights: &[1, 3],
            in_flight: &|_| 2,
            ..choice
        };
        assert_eq!(
            pick(Algorithm::LeastRequests, &state, &choice, None),
            Some(1)
        );
    }

    #[test]
    fn ineligible_targets_are_skipped() {
        let names = names();
        let state = BalancerState::default();
        let choice = Candidates {
            weights: &[1, 1, 1],
            eligible: &|index| index != 1,
            in_flight: &|_| 0,
            names: &names[..3],
        };
        for algorithm in [
            Algorithm::RoundRobin,
            Algorithm::Weighted,
            Algorithm::LeastRequests,
            Algorithm::Random,
            Algorithm::ConsistentHash,
        ] {
            for round in 0..30 {
                let key = format!("k{round}");
                let chosen = pick(algorithm, &state, &choice, Some(key.as_bytes()));
                assert_ne!(chosen, Some(1), "{algorithm:?}");
            }
        }
        let none = Candidates {
            eligible: &|_| false,
            ..choice
        };
        assert_eq!(pick(Algorithm::Weighted, &state, &none, None), None);
    }

    #[test]
    fn consistent_hashing_moves_about_one_in_n_keys_when_a_target_is_added() {
        let names = names();
        let state = BalancerState::default();
        let three = candidates(&[1, 1, 1], &names[..3]);
        let four = candidates(&[1, 1, 1, 1], &names);
        let keys: Vec<String> = (0..4_000).map(|key| format!("client-{key}")).collect();
        let mut moved = 0;
        for key in &keys {
            let before = pick(
                Algorithm::ConsistentHash,
                &state,
                &three,
                Some(key.as_bytes()),
            );
            let again = pick(
                Algorithm::ConsistentHash,
                &state,
                &three,
                Some(key.as_bytes()),
            );
            assert_eq!(before, again, "a key keeps its target");
            let after = pick(
                Algorithm::ConsistentHash,
                &state,
                &four,
                Some(key.as_bytes()),
            );
            if before != after {
                // Only ever to the new target.
                assert_eq!(after, Some(3));
                moved += 1;
            }
        }
        // 1/4 of 4000 = 1000, give or take.
        assert!((850..1150).contains(&moved), "{moved}");
    }

    #[test]
    fn consistent_hashing_honours_weights() {
        let names = names();
        let state = BalancerState::default();
        let choice = candidates(&[3, 1], &names[..2]);
        let first = (0..8_000)
            .filter(|key| {
                let key = format!("ip-{key}");
                pick(
                    Algorithm::ConsistentHash,
                    &state,
                    &choice,
                    Some(key.as_bytes()),
                ) == Some(0)
            })
            .count();
        assert!((5_600..6_400).contains(&first), "{first}");
    }
}
