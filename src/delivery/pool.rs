//! The keep-alive pool of the webhook client: idle connections by host,
//! bounded per host and across hosts.
//!
//! A replica that delivers to 10,000 hosts would otherwise keep a
//! connection (a file descriptor, buffers, a TLS session) to every host it
//! ever reached. [`IdleConnections`] keeps at most `pool_max_idle_per_host`
//! idle connections to one host and `pool_max_idle` in all; a connection
//! given back beyond a host's bound replaces that host's oldest, and beyond
//! the total the oldest of any host, so the hosts delivered to most
//! recently keep theirs. A connection unused for `pool_idle_timeout` is
//! closed. Connections in use are not in the pool: at most `max_in_flight`
//! of them, so a replica holds at most `max_in_flight + pool_max_idle`
//! connections whatever the number of hosts.
//!
//! This module does no I/O and reads no clock: the caller passes the time,
//! and closing a connection is dropping it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
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
            max_idle_per_host: 512,
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

    /// An empty pool with these bounds.
    pub fn idle<C>(&self) -> IdleConnections<C> {
        IdleConnections::new(self.max_idle, self.max_idle_per_host, self.idle_timeout)
    }
}

/// An idle connection and when it was given back.
#[derive(Debug)]
struct Idle<C> {
    connection: C,
    /// When it became idle, with a sequence number that tells apart
    /// connections given back at the same instant.
    since: (Instant, u64),
}

/// Idle connections by host (the scheme, host and port of a URL), at most
/// `per_host` for one host and `capacity` in all, each for at most the
/// idle timeout.
#[derive(Debug)]
pub struct IdleConnections<C> {
    capacity: usize,
    per_host: usize,
    idle_timeout: Duration,
    /// Each host's idle connections, oldest first.
    hosts: HashMap<Arc<str>, VecDeque<Idle<C>>>,
    /// Every idle connection's host, oldest first: the first entry is the
    /// front of its host's queue.
    by_age: BTreeMap<(Instant, u64), Arc<str>>,
    sequence: u64,
}

impl<C> IdleConnections<C> {
    /// At most `capacity` idle connections in all, `per_host` to one host,
    /// each closed once idle for `idle_timeout`.
    pub fn new(capacity: usize, per_host: usize, idle_timeout: Duration) -> Self {
        Self {
            capacity,
            per_host,
            idle_timeout,
            hosts: HashMap::new(),
            by_age: BTreeMap::new(),
            sequence: 0,
        }
    }

    /// The most recently idle connection to `host`, if one is kept and not
    /// yet expired at `now`. `now` does not go back between calls.
    pub fn take(&mut self, host: &str, now: Instant) -> Option<C> {
        self.expire(now);
        let queue = self.hosts.get_mut(host)?;
        let idle = queue.pop_back()?;
        if queue.is_empty() {
            self.hosts.remove(host);
        }
        self.by_age.remove(&idle.since);
        Some(idle.connection)
    }

    /// Keeps `connection` to `host`, idle from `now`, closing the host's
    /// oldest idle connection when the host has its bound, or else the
    /// oldest of all when the pool is full. With no room at all (a bound
    /// of 0) the connection itself is closed.
    pub fn put(&mut self, host: &str, connection: C, now: Instant) {
        if self.capacity == 0 || self.per_host == 0 {
            return;
        }
        self.expire(now);
        let host_is_full = self
            .hosts
            .get(host)
            .is_some_and(|queue| queue.len() >= self.per_host);
        if host_is_full {
            self.close_oldest_of(host);
        } else if self.by_age.len() >= self.capacity {
            self.close_oldest();
        }
        self.sequence += 1;
        let since = (now, self.sequence);
        let key = match self.hosts.get_key_value(host) {
            Some((key, _)) => key.clone(),
            None => Arc::from(host),
        };
        self.by_age.insert(since, key.clone());
        self.hosts
            .entry(key)
            .or_default()
            .push_back(Idle { connection, since });
    }

    /// Closes every connection idle for the idle timeout or longer at
    /// `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some((&(since, _), _)) = self.by_age.first_key_value() {
            if now.saturating_duration_since(since) < self.idle_timeout {
                break;
            }
            self.close_oldest();
        }
    }

    /// Idle connections kept.
    pub fn len(&self) -> usize {
        self.by_age.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_age.is_empty()
    }

    fn close_oldest(&mut self) {
        if let Some((_, host)) = self.by_age.pop_first() {
            self.pop_front(&host);
        }
    }

    fn close_oldest_of(&mut self, host: &str) {
        if let Some(idle) = self.pop_front(host) {
            self.by_age.remove(&idle.since);
        }
    }

    fn pop_front(&mut self, host: &str) -> Option<Idle<C>> {
        let queue = self.hosts.get_mut(host)?;
        let idle = queue.pop_front();
        if queue.is_empty() {
            self.hosts.remove(host);
        }
        idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    /// A pool of numbered connections, for what it kept.
    fn pool(capacity: usize, per_host: usize) -> IdleConnections<u32> {
        IdleConnections::new(capacity, per_host, IDLE)
    }

    fn consistent(pool: &IdleConnections<u32>) {
        let queued: usize = pool.hosts.values().map(VecDeque::len).sum();
        assert_eq!(queued, pool.by_age.len());
        assert!(pool.hosts.values().all(|q| !q.is_empty()));
        for (since, host) in &pool.by_age {
            assert!(pool.hosts[host].iter().any(|idle| idle.since == *since));
        }
        assert!(pool.len() <= pool.capacity);
        assert!(pool.hosts.values().all(|q| q.len() <= pool.per_host));
    }

    #[test]
    fn the_most_recently_idle_connection_to_the_host_is_taken() {
        let now = Instant::now();
        let mut pool = pool(10, 10);
        pool.put("http://a:80", 1, now);
        pool.put("http://a:80", 2, now + Duration::from_secs(1));
        pool.put("http://b:80", 3, now + Duration::from_secs(2));
        let later = now + Duration::from_secs(3);
        assert_eq!(pool.take("http://a:80", later), Some(2));
        assert_eq!(pool.take("http://a:80", later), Some(1));
        assert_eq!(pool.take("http://a:80", later), None);
        assert_eq!(pool.take("http://c:80", later), None);
        assert_eq!((pool.len(), pool.hosts.len()), (1, 1));
        consistent(&pool);
    }

    #[test]
    fn a_full_host_gives_up_its_oldest_connection() {
        let now = Instant::now();
        let mut pool = pool(10, 2);
        for n in 1..=3 {
            pool.put("http://a:80", n, now + Duration::from_secs(n.into()));
        }
        pool.put("http://b:80", 9, now + Duration::from_secs(4));
        assert_eq!(pool.len(), 3);
        let later = now + Duration::from_secs(5);
        assert_eq!(pool.take("http://a:80", later), Some(3));
        assert_eq!(pool.take("http://a:80", later), Some(2));
        assert_eq!(pool.take("http://a:80", later), None);
        consistent(&pool);
    }

    #[test]
    fn a_full_pool_gives_up_the_oldest_connection_of_any_host() {
        let now = Instant::now();
        let mut pool = pool(3, 3);
        pool.put("http://a:80", 1, now);
        pool.put("http://b:80", 2, now + Duration::from_secs(1));
        pool.put("http://a:80", 3, now + Duration::from_secs(2));
        pool.put("http://c:80", 4, now + Duration::from_secs(3));
        consistent(&pool);
        let later = now + Duration::from_secs(4);
        assert_eq!(pool.take("http://a:80", later), Some(3));
        assert_eq!(
            pool.take("http://a:80", later),
            None,
            "the oldest was closed"
        );
        assert_eq!(pool.take("http://b:80", later), Some(2));
        assert_eq!(pool.take("http://c:80", later), Some(4));
        assert!(pool.is_empty());
    }

    #[test]
    fn a_connection_is_kept_for_less_than_the_idle_timeout() {
        let now = Instant::now();
        let mut pool = pool(10, 10);
        pool.put("http://a:80", 1, now);
        pool.put("http://a:80", 2, now + Duration::from_secs(30));
        pool.expire(now + IDLE - Duration::from_millis(1));
        assert_eq!(pool.len(), 2);
        pool.expire(now + IDLE);
        assert_eq!(pool.len(), 1);
        assert_eq!(
            pool.take("http://a:80", now + IDLE + Duration::from_secs(29)),
            Some(2)
        );
        pool.put("http://a:80", 3, now);
        assert_eq!(
            pool.take("http://a:80", now + IDLE),
            None,
            "expired when taken"
        );
        assert!(pool.hosts.is_empty());
    }

    #[test]
    fn no_room_keeps_nothing() {
        let now = Instant::now();
        for (capacity, per_host) in [(0, 8), (8, 0)] {
            let mut pool = pool(capacity, per_host);
            pool.put("http://a:80", 1, now);
            assert_eq!(pool.take("http://a:80", now), None);
            assert!(pool.is_empty());
        }
    }

    #[test]
    fn the_bounds_hold_and_the_indexes_agree_under_any_use() {
        // A deterministic walk of puts, takes and expiries over a few hosts.
        let start = Instant::now();
        let mut pool = pool(7, 3);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut now = start;
        for n in 0..5_000 {
            now += Duration::from_millis(next() % 2_000);
            let host = format!("http://h{}:80", next() % 5);
            match next() % 3 {
                0 => {
                    pool.take(&host, now);
                }
                _ => pool.put(&host, n, now),
            }
            consistent(&pool);
            // Every call closes what has expired first.
            assert!(
                pool.by_age
                    .keys()
                    .all(|(since, _)| now.duration_since(*since) < IDLE)
            );
        }
    }
}
