//! The bound on idle keep-alive connections across hosts.
//!
//! The HTTP client's pool (hyper-util's, under reqwest) bounds idle
//! connections per host and closes them after an idle timeout, but has no
//! bound across hosts: a replica that delivers to 10,000 hosts would keep
//! up to 10,000 × the per-host bound idle, each a file descriptor. Nor can
//! a connection be counted from outside the pool: reqwest hands its
//! connector layers a connection type of its own, so no wrapper can see one
//! close. So the bound is kept one level up, on hosts: [`KeptHosts`] lets
//! at most `pool_max_idle / pool_max_idle_per_host` hosts use the keep-alive
//! client at a time, and the per-host bound does the rest. An attempt to a
//! host beyond them goes through a client without a pool, whose connection
//! closes after the response. A kept host gives up its place once it has
//! been unused for longer than its idle connections can live (the pool
//! reaps them once per idle timeout), so the pool never holds connections
//! of more hosts than that.
//!
//! This module does no I/O and reads no clock: the caller passes the time.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::config::DeliveryConfig;

/// The keep-alive settings of the webhook client (`delivery.pool_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionPool {
    /// Idle connections kept per host; 0 turns keep-alive off.
    pub max_idle_per_host: usize,
    /// Idle connections kept in all.
    pub max_idle: usize,
    /// How long a connection may stay idle.
    pub idle_timeout: Duration,
}

impl Default for ConnectionPool {
    /// The shipped defaults of `config/hookline.toml`.
    fn default() -> Self {
        Self {
            max_idle_per_host: 8,
            max_idle: 8192,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl ConnectionPool {
    pub fn from_config(delivery: &DeliveryConfig) -> Self {
        Self {
            max_idle_per_host: delivery.pool_max_idle_per_host,
            max_idle: delivery.pool_max_idle,
            idle_timeout: delivery.pool_idle_timeout,
        }
    }

    /// How many hosts may keep idle connections at a time.
    pub fn kept_hosts(&self) -> usize {
        self.max_idle
            .checked_div(self.max_idle_per_host)
            .unwrap_or(0)
    }

    /// How long after an attempt to a host started its connections may
    /// still be in the pool: the attempt may take `attempt_timeout`, its
    /// connection then becomes idle, expires after the idle timeout, and
    /// is removed by the pool's reaper, which runs once per idle timeout.
    /// A second of slack covers the reaper's own lateness.
    pub fn retention(&self, attempt_timeout: Duration) -> Duration {
        attempt_timeout + 2 * self.idle_timeout + Duration::from_secs(1)
    }
}

/// The hosts that may use the keep-alive client, each with the start of
/// its latest attempt.
#[derive(Debug)]
pub struct KeptHosts {
    capacity: usize,
    retention: Duration,
    /// Host → (latest attempt, its sequence number).
    hosts: HashMap<String, (Instant, u64)>,
    /// The same entries ordered by latest attempt, oldest first.
    by_age: BTreeMap<(Instant, u64), String>,
    sequence: u64,
}

impl KeptHosts {
    /// At most `capacity` hosts; a host stays kept until `retention` after
    /// the start of its latest attempt.
    pub fn new(capacity: usize, retention: Duration) -> Self {
        Self {
            capacity,
            retention,
            hosts: HashMap::new(),
            by_age: BTreeMap::new(),
            sequence: 0,
        }
    }

    /// Whether an attempt to `host` starting at `now` may use a kept
    /// connection; if so, the attempt is recorded. `now` does not go back
    /// between calls.
    pub fn admit(&mut self, host: &str, now: Instant) -> bool {
        if self.capacity == 0 {
            return false;
        }
        self.sequence += 1;
        let stamp = (now, self.sequence);
        if let Some(entry) = self.hosts.get_mut(host) {
            let old = std::mem::replace(entry, stamp);
            if let Some(name) = self.by_age.remove(&old) {
                self.by_age.insert(stamp, name);
            }
            return true;
        }
        if self.hosts.len() >= self.capacity {
            self.release_expired(now);
        }
        if self.hosts.len() >= self.capacity {
            return false;
        }
        self.hosts.insert(host.to_string(), stamp);
        self.by_age.insert(stamp, host.to_string());
        true
    }

    /// Hosts kept now.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Gives up the places of hosts unused for longer than the retention.
    fn release_expired(&mut self, now: Instant) {
        while let Some(entry) = self.by_age.first_entry() {
            let (last, _) = *entry.key();
            if now.saturating_duration_since(last) <= self.retention {
                break;
            }
            let host = entry.remove();
            self.hosts.remove(&host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETENTION: Duration = Duration::from_secs(10);

    #[test]
    fn hosts_beyond_the_capacity_are_refused_until_a_place_expires() {
        let start = Instant::now();
        let mut kept = KeptHosts::new(2, RETENTION);
        assert!(kept.admit("http://a:80", start));
        assert!(kept.admit("http://b:80", start));
        assert!(!kept.admit("http://c:80", start + Duration::from_secs(1)));
        // Kept hosts stay kept, and refresh their place.
        assert!(kept.admit("http://a:80", start + Duration::from_secs(5)));
        // b's place expires after the retention; a's was refreshed.
        let later = start + RETENTION + Duration::from_secs(1);
        assert!(kept.admit("http://c:80", later));
        assert!(!kept.admit("http://d:80", later));
        assert_eq!(kept.len(), 2);
        assert!(kept.admit("http://a:80", later));
        assert!(!kept.admit("http://b:80", later));
    }

    #[test]
    fn a_place_is_kept_for_exactly_the_retention() {
        let start = Instant::now();
        let mut kept = KeptHosts::new(1, RETENTION);
        assert!(kept.admit("http://a:80", start));
        assert!(!kept.admit("http://b:80", start + RETENTION));
        assert!(kept.admit("http://b:80", start + RETENTION + Duration::from_nanos(1)));
    }

    #[test]
    fn no_capacity_keeps_no_host() {
        let mut kept = KeptHosts::new(0, RETENTION);
        assert!(!kept.admit("http://a:80", Instant::now()));
        assert!(kept.is_empty());
    }

    #[test]
    fn kept_hosts_follow_from_the_bounds() {
        let pool = |per_host, total| ConnectionPool {
            max_idle_per_host: per_host,
            max_idle: total,
            idle_timeout: Duration::from_secs(60),
        };
        assert_eq!(ConnectionPool::default().kept_hosts(), 1024);
        assert_eq!(pool(1, 10_000).kept_hosts(), 10_000);
        assert_eq!(pool(3, 10).kept_hosts(), 3);
        // Keep-alive off: no host keeps connections.
        assert_eq!(pool(0, 0).kept_hosts(), 0);
        assert_eq!(pool(0, 100).kept_hosts(), 0);
        assert_eq!(
            pool(1, 1).retention(Duration::from_secs(30)),
            Duration::from_secs(151)
        );
    }

    #[test]
    fn the_age_order_stays_consistent_with_the_hosts() {
        // Many hosts coming and going at the same instant: the two maps
        // must agree, or a place would never be given up.
        let start = Instant::now();
        let mut kept = KeptHosts::new(50, RETENTION);
        for round in 0..20u64 {
            let now = start + RETENTION * u32::try_from(round).unwrap() * 2;
            for i in 0..100 {
                kept.admit(&format!("http://h{}:80", (i * 7 + round) % 120), now);
            }
            assert_eq!(kept.hosts.len(), kept.by_age.len());
            assert!(kept.len() <= 50);
        }
    }
}
