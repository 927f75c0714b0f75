//! The bound on idle keep-alive connections across hosts.
//!
//! The HTTP client's pool (hyper-util's, under reqwest) bounds idle
//! connections per host and closes them after an idle timeout, but has no
//! bound across hosts: a replica that delivers to 10,000 hosts would keep
//! up to 10,000 × the per-host bound idle, each a file descriptor. Nor can
//! a connection be counted from outside the pool: reqwest hands its
//! connector layers a connection type of its own, so no wrapper can see one
//! close. So the bound is kept one level up, on the attempts: [`KeptHosts`]
//! gives each host that uses the keep-alive client a weight, the most of
//! its attempts that were in flight at once (at most
//! `pool_max_idle_per_host`), which is the most connections the pool can
//! hold for it; the weights add up to at most `pool_max_idle`. A host
//! delivered to one attempt at a time costs one place, a busy host as many
//! as it uses. An attempt that would take its host beyond the bound goes
//! through a client without a pool, whose connection closes after the
//! response. A kept host gives up its places once it has been unused for
//! longer than its idle connections can live (the pool reaps them once per
//! idle timeout), so the pool never holds more connections than the
//! weights say.
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

    /// How long after an attempt to a host started its connections may
    /// still be in the pool: the attempt may take `attempt_timeout`, its
    /// connection then becomes idle, expires after the idle timeout, and
    /// is removed by the pool's reaper, which runs once per idle timeout.
    /// A second of slack covers the reaper's own lateness.
    pub fn retention(&self, attempt_timeout: Duration) -> Duration {
        attempt_timeout + 2 * self.idle_timeout + Duration::from_secs(1)
    }

    /// The places for the pool's connections, shared by the hosts.
    pub fn places(&self, attempt_timeout: Duration) -> KeptHosts {
        KeptHosts::new(
            self.max_idle,
            self.max_idle_per_host,
            self.retention(attempt_timeout),
        )
    }
}

/// A kept host's attempt in flight, returned by [`KeptHosts::admit`]: pass
/// it to [`KeptHosts::finish`] when the attempt is over (its response read
/// or dropped).
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub struct Admitted {
    host: String,
    /// Which stay of the host in the table the attempt belongs to.
    stay: u64,
}

/// A kept host.
#[derive(Debug)]
struct Kept {
    /// The start of its latest attempt, with that attempt's sequence number.
    last: (Instant, u64),
    /// The sequence number of its admission, telling its stays apart.
    stay: u64,
    in_flight: usize,
    /// Places taken: the most attempts in flight at once during the stay.
    weight: usize,
}

/// The hosts that may use the keep-alive client, each with the places its
/// connections may take and the start of its latest attempt.
#[derive(Debug)]
pub struct KeptHosts {
    capacity: usize,
    per_host: usize,
    retention: Duration,
    hosts: HashMap<String, Kept>,
    /// The same hosts ordered by latest attempt, oldest first.
    by_age: BTreeMap<(Instant, u64), String>,
    /// The weights of all kept hosts.
    taken: usize,
    sequence: u64,
}

impl KeptHosts {
    /// At most `capacity` places in all, at most `per_host` for one host; a
    /// host keeps its places until `retention` after the start of its
    /// latest attempt.
    pub fn new(capacity: usize, per_host: usize, retention: Duration) -> Self {
        Self {
            capacity,
            per_host,
            retention,
            hosts: HashMap::new(),
            by_age: BTreeMap::new(),
            taken: 0,
            sequence: 0,
        }
    }

    /// Whether an attempt to `host` starting at `now` may use a kept
    /// connection; if so, the attempt is recorded until it is passed to
    /// [`KeptHosts::finish`]. `now` does not go back between calls. The
    /// host's key moves into the [`Admitted`] attempt, so that a kept host
    /// costs no copy of it per attempt.
    pub fn admit(&mut self, host: impl Into<String>, now: Instant) -> Option<Admitted> {
        if self.capacity == 0 || self.per_host == 0 {
            return None;
        }
        let host = host.into();
        self.sequence += 1;
        let stamp = (now, self.sequence);
        if let Some(kept) = self.hosts.get(&host) {
            // One more attempt at once than ever before during this stay
            // needs one more place, up to the per-host bound (beyond it
            // the pool keeps no more, whatever is in flight).
            let grows = kept.in_flight >= kept.weight && kept.weight < self.per_host;
            if grows && !self.make_room(now) {
                return None;
            }
            let kept = self.hosts.get_mut(&host)?;
            if grows {
                kept.weight += 1;
                self.taken += 1;
            }
            kept.in_flight += 1;
            let old = std::mem::replace(&mut kept.last, stamp);
            let stay = kept.stay;
            if let Some(name) = self.by_age.remove(&old) {
                self.by_age.insert(stamp, name);
            }
            return Some(Admitted { host, stay });
        }
        if !self.make_room(now) {
            return None;
        }
        self.hosts.insert(
            host.clone(),
            Kept {
                last: stamp,
                stay: self.sequence,
                in_flight: 1,
                weight: 1,
            },
        );
        self.by_age.insert(stamp, host.clone());
        self.taken += 1;
        Some(Admitted {
            host,
            stay: self.sequence,
        })
    }

    /// An admitted attempt is over.
    pub fn finish(&mut self, attempt: Admitted) {
        if let Some(kept) = self.hosts.get_mut(&attempt.host)
            && kept.stay == attempt.stay
        {
            kept.in_flight = kept.in_flight.saturating_sub(1);
        }
    }

    /// Hosts kept now.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Places taken now.
    pub fn taken(&self) -> usize {
        self.taken
    }

    /// Whether one more place is free, after giving up those of hosts
    /// unused for longer than the retention.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.taken >= self.capacity {
            self.release_expired(now);
        }
        self.taken < self.capacity
    }

    /// Gives up the places of hosts unused for longer than the retention.
    fn release_expired(&mut self, now: Instant) {
        while let Some(entry) = self.by_age.first_entry() {
            let (last, _) = *entry.key();
            if now.saturating_duration_since(last) <= self.retention {
                break;
            }
            let host = entry.remove();
            if let Some(kept) = self.hosts.remove(&host) {
                self.taken -= kept.weight;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETENTION: Duration = Duration::from_secs(10);

    /// One attempt to `host` at `now`, over at once; whether it was kept.
    fn one(kept: &mut KeptHosts, host: &str, now: Instant) -> bool {
        match kept.admit(host, now) {
            Some(attempt) => {
                kept.finish(attempt);
                true
            }
            None => false,
        }
    }

    #[test]
    fn hosts_beyond_the_capacity_are_refused_until_a_place_expires() {
        let start = Instant::now();
        let mut kept = KeptHosts::new(2, 8, RETENTION);
        assert!(one(&mut kept, "http://a:80", start));
        assert!(one(&mut kept, "http://b:80", start));
        assert!(!one(
            &mut kept,
            "http://c:80",
            start + Duration::from_secs(1)
        ));
        // Kept hosts stay kept, and refresh their place.
        assert!(one(
            &mut kept,
            "http://a:80",
            start + Duration::from_secs(5)
        ));
        // b's place expires after the retention; a's was refreshed.
        let later = start + RETENTION + Duration::from_secs(1);
        assert!(one(&mut kept, "http://c:80", later));
        assert!(!one(&mut kept, "http://d:80", later));
        assert_eq!(kept.len(), 2);
        assert!(one(&mut kept, "http://a:80", later));
        assert!(!one(&mut kept, "http://b:80", later));
    }

    #[test]
    fn a_place_is_kept_for_exactly_the_retention() {
        let start = Instant::now();
        let mut kept = KeptHosts::new(1, 8, RETENTION);
        assert!(one(&mut kept, "http://a:80", start));
        assert!(!one(&mut kept, "http://b:80", start + RETENTION));
        assert!(one(
            &mut kept,
            "http://b:80",
            start + RETENTION + Duration::from_nanos(1)
        ));
    }

    #[test]
    fn a_host_takes_as_many_places_as_attempts_it_had_at_once() {
        let now = Instant::now();
        let mut kept = KeptHosts::new(5, 3, RETENTION);
        // One attempt at a time, many times: one place.
        for _ in 0..10 {
            assert!(one(&mut kept, "http://a:80", now));
        }
        assert_eq!(kept.taken(), 1);
        // Four at once: three places (the per-host bound); the fourth is
        // kept too, since the pool keeps no more than three idle anyway.
        let attempts: Vec<_> = (0..4)
            .map(|_| kept.admit("http://b:80", now).expect("kept"))
            .collect();
        assert_eq!(kept.taken(), 4);
        for attempt in attempts {
            kept.finish(attempt);
        }
        // The places stay taken after the attempts: their connections are
        // idle in the pool.
        assert_eq!(kept.taken(), 4);
        assert!(one(&mut kept, "http://c:80", now));
        assert_eq!(kept.taken(), 5);
        // Full: a new host, and one more attempt at once to a kept host,
        // go without the pool; one at a time to a kept host still goes.
        assert!(!one(&mut kept, "http://d:80", now));
        let first = kept.admit("http://a:80", now).expect("a has its place");
        assert_eq!(kept.admit("http://a:80", now), None);
        kept.finish(first);
        assert_eq!(kept.taken(), 5);
    }

    #[test]
    fn an_attempt_of_an_earlier_stay_does_not_count_against_the_next() {
        let start = Instant::now();
        let mut kept = KeptHosts::new(2, 4, RETENTION);
        let old = kept.admit("http://a:80", start).expect("kept");
        // a is given up (its attempt outlived the retention, which a real
        // attempt cannot) and admitted again.
        let later = start + RETENTION + Duration::from_secs(1);
        assert!(one(&mut kept, "http://b:80", later));
        assert!(one(&mut kept, "http://c:80", later));
        assert!(!kept.hosts.contains_key("http://a:80"));
        kept.finish(old);
        let much_later = later + RETENTION + Duration::from_secs(1);
        let new = kept.admit("http://a:80", much_later).expect("kept");
        let second = kept.admit("http://a:80", much_later).expect("kept");
        kept.finish(second);
        // The stale finish changed nothing: two at once took two places.
        assert_eq!(kept.hosts["http://a:80"].weight, 2);
        kept.finish(new);
        assert_eq!(kept.hosts["http://a:80"].in_flight, 0);
    }

    #[test]
    fn no_capacity_keeps_no_host() {
        let mut kept = KeptHosts::new(0, 8, RETENTION);
        assert_eq!(kept.admit("http://a:80", Instant::now()), None);
        assert!(kept.is_empty());
        // Keep-alive off (no idle connection per host): none either.
        let mut off = ConnectionPool {
            max_idle_per_host: 0,
            max_idle: 100,
            idle_timeout: Duration::from_secs(60),
        }
        .places(Duration::from_secs(5));
        assert_eq!(off.admit("http://a:80", Instant::now()), None);
    }

    #[test]
    fn the_retention_covers_an_attempt_and_two_idle_timeouts() {
        let pool = ConnectionPool {
            max_idle_per_host: 1,
            max_idle: 1,
            idle_timeout: Duration::from_secs(60),
        };
        assert_eq!(
            pool.retention(Duration::from_secs(30)),
            Duration::from_secs(151)
        );
    }

    #[test]
    fn the_age_order_stays_consistent_with_the_hosts() {
        // Many hosts coming and going at the same instant: the two maps
        // and the places taken must agree, or a place would never be
        // given up.
        let start = Instant::now();
        let mut kept = KeptHosts::new(50, 2, RETENTION);
        for round in 0..20u64 {
            let now = start + RETENTION * u32::try_from(round).unwrap() * 2;
            let mut open = Vec::new();
            for i in 0..100 {
                let host = format!("http://h{}:80", (i * 7 + round) % 120);
                if let Some(attempt) = kept.admit(&host, now) {
                    if i % 3 == 0 {
                        open.push(attempt);
                    } else {
                        kept.finish(attempt);
                    }
                }
            }
            for attempt in open {
                kept.finish(attempt);
            }
            assert_eq!(kept.hosts.len(), kept.by_age.len());
            let weights: usize = kept.hosts.values().map(|k| k.weight).sum();
            assert_eq!(kept.taken(), weights);
            assert!(kept.taken() <= 50);
            assert!(kept.hosts.values().all(|k| k.in_flight == 0));
        }
    }
}
