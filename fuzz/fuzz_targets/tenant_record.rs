//! `Tenant::from_bytes` on an arbitrary id and record value: never panics;
//! an accepted tenant prepares for delivery (its key and URL as the
//! replica builds them at its first delivery) with an http(s) URL with a
//! host and no credentials,
//! a non-empty key id, and a rate limit, when it has one, within bounds
//! with a non-zero interval.
//!
//! Input layout: one byte of id length, the id (lossily UTF-8), then the
//! record value.
#![no_main]

use hookline::tenants::Tenant;
use hookline::tenants::rate_limit::{MAX_EVENTS_PER_SECOND, MIN_EVENTS_PER_SECOND};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((id_len, rest)) = data.split_first() else {
        return;
    };
    let (id, value) = rest.split_at(usize::from(*id_len).min(rest.len()));
    let id = String::from_utf8_lossy(id);
    if let Ok(tenant) = Tenant::from_bytes(&id, value) {
        let prepared = tenant
            .prepare()
            .expect("an accepted tenant prepares for delivery");
        let url = &prepared.url;
        assert!(matches!(url.scheme(), "http" | "https"));
        assert!(url.host().is_some());
        assert!(url.username().is_empty() && url.password().is_none());
        assert!(!tenant.key_id().is_empty());
        if let Some(limit) = tenant.rate_limit {
            assert!((MIN_EVENTS_PER_SECOND..=MAX_EVENTS_PER_SECOND).contains(&limit.per_second()));
            assert!(!limit.interval().is_zero());
        }
    }
});
