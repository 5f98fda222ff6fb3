//! A per-address budget of failed authentications: after `per_window` refusals within one
//! window (fixed windows, one minute by default), an address gets no more tries until the
//! window ends (its connections are refused before their credentials are even checked).
//! Addresses are counted by [`limit_key`] (IPv6 per /64).
//!
//! Bounded without scanning: only the current window's addresses are kept, and all of them
//! are forgotten at once when it ends. Past [`MAX_TRACKED`] addresses within one window, the
//! addresses not tracked share one budget ([`OVERFLOW_FACTOR`] times an address's): a flood
//! from more addresses than that is still limited (new addresses may then be refused until the
//! window ends), never let through.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use dashmap::DashMap;

use crate::common::client_addr::limit_key;

/// Most addresses remembered within one window.
pub const MAX_TRACKED: usize = 100_000;
/// The budget the addresses past [`MAX_TRACKED`] share, in budgets of one address.
pub const OVERFLOW_FACTOR: u32 = 100;

/// Failed authentications per client address and window.
#[derive(Debug)]
pub struct AuthFailureBudget {
    per_window: u32,
    window: Duration,
    started: Instant,
    /// The window `failures` counts (windows since `started`).
    current: AtomicU64,
    failures: DashMap<IpAddr, u32>,
    /// Failures of addresses not tracked in the current window (the map was full).
    overflow: AtomicU32,
    max_tracked: usize,
}

impl AuthFailureBudget {
    /// `per_window` failures allowed per address in each `window`; 0 disables the budget.
    pub fn new(per_window: u32, window: Duration) -> Self {
        AuthFailureBudget {
            per_window,
            window,
            started: Instant::now(),
            current: AtomicU64::new(0),
            failures: DashMap::new(),
            overflow: AtomicU32::new(0),
            max_tracked: MAX_TRACKED,
        }
    }

    /// Forgets the previous window's counts once a new window started.
    fn roll(&self) {
        let now = (self.started.elapsed().as_nanos() / self.window.as_nanos().max(1)) as u64;
        let seen = self.current.load(Ordering::Acquire);
        if seen != now
            && self
                .current
                .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.failures.clear();
            self.overflow.store(0, Ordering::Release);
        }
    }

    fn overflow_budget(&self) -> u32 {
        self.per_window.saturating_mul(OVERFLOW_FACTOR)
    }

    /// True when `ip` has used up its failures for the current window.
    pub fn exhausted(&self, ip: IpAddr) -> bool {
        if self.per_window == 0 {
            return false;
        }
        self.roll();
        match self.failures.get(&limit_key(ip)) {
            Some(count) => *count >= self.per_window,
            None => {
                self.failures.len() >= self.max_tracked
                    && self.overflow.load(Ordering::Acquire) >= self.overflow_budget()
            }
        }
    }

    /// Counts one failure for `ip`; true when that used up its budget.
    pub fn record(&self, ip: IpAddr) -> bool {
        if self.per_window == 0 {
            return false;
        }
        self.roll();
        let key = limit_key(ip);
        if self.failures.len() >= self.max_tracked && !self.failures.contains_key(&key) {
            let n = self
                .overflow
                .fetch_add(1, Ordering::AcqRel)
                .saturating_add(1);
            return n >= self.overflow_budget();
        }
        let mut count = self.failures.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        *count >= self.per_window
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

    #[test]
    fn one_ipv6_64_is_one_address() {
        let budget = AuthFailureBudget::new(2, Duration::from_secs(60));
        let one: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:0:1:ffff::2".parse().unwrap();
        let other_64: IpAddr = "2001:db8:0:2::1".parse().unwrap();
        assert!(!budget.record(one));
        assert!(budget.record(same_64));
        assert!(budget.exhausted(one) && budget.exhausted(same_64));
        assert!(!budget.exhausted(other_64));
    }

    /// Past the table's bound, new addresses are still limited (together), and tracked ones
    /// keep their own budget; nothing scans the table.
    #[test]
    fn addresses_past_the_bound_share_a_budget() {
        let mut budget = AuthFailureBudget::new(2, Duration::from_secs(60));
        budget.max_tracked = 4;
        let addr = |i: u32| IpAddr::from((0x0a00_0000 + i).to_be_bytes());
        for i in 0..4 {
            budget.record(addr(i));
        }
        assert!(!budget.exhausted(addr(100)), "the shared budget is unused");
        for i in 100..100 + budget.overflow_budget() {
            budget.record(addr(i));
        }
        assert!(
            budget.exhausted(addr(5000)),
            "untracked addresses are limited"
        );
        assert!(
            !budget.exhausted(addr(0)),
            "a tracked address keeps its own count"
        );
    }
}
