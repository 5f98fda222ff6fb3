//! A per-address budget of failed authentications: after `per_window` refusals within one
//! window, an address gets no more tries until the window ends (its connections are closed
//! at the next attempt). Bounded: at most [`MAX_TRACKED`] addresses are remembered; past that,
//! expired entries are dropped, and if none are, new addresses are not tracked.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use dashmap::DashMap;

/// Most addresses remembered at once.
pub const MAX_TRACKED: usize = 100_000;

/// Failed authentications per client address and window.
#[derive(Debug)]
pub struct AuthFailureBudget {
    per_window: u32,
    window: Duration,
    failures: DashMap<IpAddr, (u32, Instant)>,
}

impl AuthFailureBudget {
    /// `per_window` failures allowed per address in each `window`; 0 disables the budget.
    pub fn new(per_window: u32, window: Duration) -> Self {
        AuthFailureBudget {
            per_window,
            window,
            failures: DashMap::new(),
        }
    }

    /// True when `ip` has used up its failures for the current window.
    pub fn exhausted(&self, ip: IpAddr) -> bool {
        self.per_window > 0
            && self.failures.get(&ip).is_some_and(|entry| {
                let (count, since) = *entry;
                count >= self.per_window && since.elapsed() < self.window
            })
    }

    /// Counts one failure for `ip`; true when that used up its budget.
    pub fn record(&self, ip: IpAddr) -> bool {
        if self.per_window == 0 {
            return false;
        }
        if self.failures.len() >= MAX_TRACKED && !self.failures.contains_key(&ip) {
            let window = self.window;
            self.failures
                .retain(|_, (_, since)| since.elapsed() < window);
            if self.failures.len() >= MAX_TRACKED {
                return false;
            }
        }
        let mut entry = self.failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
        entry.0 >= self.per_window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_runs_out_and_others_do_not() {
        let budget = AuthFailureBudget::new(3, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(!budget.record(a) && !budget.record(a));
        assert!(!budget.exhausted(a));
        assert!(budget.record(a));
        assert!(budget.exhausted(a));
        assert!(!budget.exhausted(b));
    }

    #[test]
    fn the_window_resets_and_zero_disables() {
        let budget = AuthFailureBudget::new(1, Duration::ZERO);
        let a: IpAddr = "::1".parse().unwrap();
        assert!(budget.record(a));
        assert!(!budget.exhausted(a), "window over");
        let off = AuthFailureBudget::new(0, Duration::from_secs(60));
        assert!(!off.record(a) && !off.exhausted(a));
    }
}
