//! What enforces the per-session limits (`docs/protocol.md#limits`; the values are
//! [`Limits`], defined with the protocol): the token bucket for rates and the connection
//! limiter.

use std::time::Instant;

pub use hub_wire::limits::Limits;

/// A token bucket: `capacity` tokens, refilled at `rate` per second.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f32,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(capacity: f64) -> Self {
        TokenBucket {
            tokens: capacity as f32,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant, rate: f64, capacity: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f32();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate as f32).min(capacity as f32);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let start = Instant::now();
        let mut b = TokenBucket::full(3.0);
        assert!((0..3).all(|_| b.take(start, 1.0, 3.0)));
        assert!(!b.take(start, 1.0, 3.0));
        assert!(b.take(start + Duration::from_millis(1001), 1.0, 3.0));
        assert!(!b.take(start + Duration::from_millis(1002), 1.0, 3.0));
    }
}

/// Counts open WebSocket connections, in total and per client address (IPv6 per /64:
/// [`crate::common::client_addr::limit_key`]), and refuses new ones past the configured limits
/// (0 = unlimited).
#[derive(Debug, Default)]
pub struct ConnectionLimiter {
    max_total: usize,
    max_per_ip: usize,
    total: std::sync::atomic::AtomicUsize,
    per_ip: dashmap::DashMap<std::net::IpAddr, usize>,
}

/// Which limit refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitExceeded {
    /// `HUB_MAX_CONNECTIONS`.
    Total,
    /// `HUB_MAX_CONNECTIONS_PER_IP`.
    PerIp,
}

/// One admitted connection; releases its slot when dropped (with the session).
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: std::sync::Arc<ConnectionLimiter>,
    ip: Option<std::net::IpAddr>,
}

impl ConnectionLimiter {
    /// A limiter; 0 disables a limit.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        ConnectionLimiter {
            max_total,
            max_per_ip,
            ..ConnectionLimiter::default()
        }
    }

    /// Admits a connection from `ip` if both limits allow it.
    pub fn try_acquire(
        self: &std::sync::Arc<Self>,
        ip: Option<std::net::IpAddr>,
    ) -> Result<ConnectionPermit, LimitExceeded> {
        use std::sync::atomic::Ordering;
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        if self.max_total > 0 && total > self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitExceeded::Total);
        }
        let ip = ip
            .filter(|_| self.max_per_ip > 0)
            .map(crate::common::client_addr::limit_key);
        if let Some(ip) = ip {
            let mut n = self.per_ip.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                drop(n);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(LimitExceeded::PerIp);
            }
            *n += 1;
        }
        Ok(ConnectionPermit {
            limiter: self.clone(),
            ip,
        })
    }

    /// Connections currently admitted.
    pub fn open(&self) -> usize {
        self.total.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let limiter = &self.limiter;
        limiter
            .total
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        if let Some(ip) = self.ip {
            limiter.per_ip.remove_if_mut(&ip, |_, n| {
                *n -= 1;
                *n == 0
            });
        }
    }
}

#[cfg(test)]
mod limiter_tests {
    use super::*;
    use std::{net::IpAddr, sync::Arc};

    #[test]
    fn limits_total_and_per_ip_and_releases_on_drop() {
        let limiter = Arc::new(ConnectionLimiter::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = limiter.try_acquire(Some(a)).unwrap();
        let _p2 = limiter.try_acquire(Some(a)).unwrap();
        assert_eq!(
            limiter.try_acquire(Some(a)).unwrap_err(),
            LimitExceeded::PerIp
        );
        let _p3 = limiter.try_acquire(Some(b)).unwrap();
        assert_eq!(
            limiter.try_acquire(Some(b)).unwrap_err(),
            LimitExceeded::Total
        );
        drop(p1);
        assert_eq!(limiter.open(), 2);
        assert!(limiter.try_acquire(Some(a)).is_ok());
    }

    #[test]
    fn one_ipv6_64_is_one_address() {
        let limiter = Arc::new(ConnectionLimiter::new(0, 1));
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let _p = limiter.try_acquire(Some(a)).unwrap();
        assert_eq!(
            limiter.try_acquire(Some(same_64)).unwrap_err(),
            LimitExceeded::PerIp
        );
        assert!(limiter
            .try_acquire(Some("2001:db8:0:1::1".parse().unwrap()))
            .is_ok());
    }
}
