//! What the demo plays out, with no I/O: which tenants exist and how each
//! one behaves, and the sample events produced for them.

use serde_json::json;

/// Event types of the sample events, produced in rotation.
pub const EVENT_TYPES: [&str; 4] = [
    "order.created",
    "order.paid",
    "invoice.issued",
    "customer.updated",
];

/// The event-type patterns of the tenant that is subscribed to part of the
/// events only.
pub const PARTIAL_SUBSCRIPTION: &str = "order.*";

/// How many requests the flaky receiver answers with 503 before it
/// recovers. Fewer than the demo's `delivery.max_attempts`, so its first
/// event is delivered after a few retries rather than dead-lettered.
pub const FLAKY_FAILURES: u32 = 6;

/// Tenant names, in order; more tenants than names are numbered.
///
/// The names place the tenants on partitions: events are keyed by tenant
/// id, and the producer's partitioner (librdkafka's default,
/// `consistent_random`) puts a key on CRC-32(key) mod 12, the partitions of
/// the embedded topology's events topic. "acme" and "stark" both land on
/// partition 2, so the flaky tenant shares its partition with a healthy
/// one; "initech" and "umbrella" land on 0 and 6. The demo reads the
/// partitions back from the produce acknowledgements rather than trusting
/// this comment, and its test checks that the two still share one.
const NAMES: [&str; 8] = [
    "acme", "stark", "initech", "umbrella", "hooli", "globex", "wayne", "wonka",
];

/// How a tenant and its receiver behave in the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Subscribed to everything, receiver always answers 200.
    Healthy,
    /// Its receiver answers 503 to its first [`FLAKY_FAILURES`] requests.
    Flaky,
    /// Subscribed to [`PARTIAL_SUBSCRIPTION`] only; the rest is filtered.
    PartiallySubscribed,
    /// Stored with `enabled: false`: every event is dead-lettered.
    Disabled,
}

impl Role {
    /// One line for the summary: what to expect from this tenant.
    pub fn describe(self) -> String {
        match self {
            Role::Healthy => "healthy".into(),
            Role::Flaky => format!("503 to its first {FLAKY_FAILURES} requests"),
            Role::PartiallySubscribed => format!("subscribed to {PARTIAL_SUBSCRIPTION} only"),
            Role::Disabled => "disabled".into(),
        }
    }
}

/// A tenant of the demo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoTenant {
    pub id: String,
    pub role: Role,
}

/// The tenants for `count`: the first four show one behaviour each, the
/// rest are healthy. The first (healthy) and the second (flaky) share a
/// partition; see [`NAMES`].
pub fn tenants(count: usize) -> Vec<DemoTenant> {
    (0..count)
        .map(|i| DemoTenant {
            id: NAMES
                .get(i)
                .map_or_else(|| format!("tenant-{}", i + 1), |name| (*name).to_string()),
            role: match i {
                1 => Role::Flaky,
                2 => Role::PartiallySubscribed,
                3 => Role::Disabled,
                _ => Role::Healthy,
            },
        })
        .collect()
}

/// A sample event: the tenant it belongs to (index into the tenants) and
/// its JSON value.
#[derive(Debug, Clone)]
pub struct SampleEvent {
    pub tenant: usize,
    /// The event's `id`, which its delivery carries as `webhook-id`.
    pub id: String,
    pub event_type: &'static str,
    pub value: Vec<u8>,
}

/// The `n`-th sample event for `tenants` tenants. Events go round-robin over
/// the tenants; each tenant sees the event types in rotation.
pub fn event(n: u64, tenants: usize) -> SampleEvent {
    let tenants = tenants.max(1) as u64;
    let tenant = (n % tenants) as usize;
    let event_type = EVENT_TYPES[((n / tenants) % EVENT_TYPES.len() as u64) as usize];
    let data = match event_type {
        "order.created" => {
            json!({"order": 1000 + n, "amount_cents": 1999 + (n % 7) * 500, "currency": "EUR"})
        }
        "order.paid" => json!({"order": 1000 + n, "method": "card"}),
        "invoice.issued" => json!({"invoice": format!("INV-{:05}", n), "due_days": 30}),
        _ => json!({"customer": format!("cus_{:04}", n % 97), "changed": ["email"]}),
    };
    let id = format!("demo_{n:06}");
    let value = json!({
        "id": id,
        "type": event_type,
        "data": data,
    });
    SampleEvent {
        tenant,
        id,
        event_type,
        // Serialising a `serde_json::Value` cannot fail.
        value: serde_json::to_vec(&value).expect("a JSON value serialises"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::pattern::Pattern;

    #[test]
    fn the_first_four_tenants_show_one_behaviour_each() {
        let roles: Vec<Role> = tenants(6).iter().map(|t| t.role).collect();
        assert_eq!(
            roles,
            [
                Role::Healthy,
                Role::Flaky,
                Role::PartiallySubscribed,
                Role::Disabled,
                Role::Healthy,
                Role::Healthy
            ]
        );
        assert_eq!(tenants(10)[9].id, "tenant-10");
    }

    #[test]
    fn every_tenant_gets_events_its_subscription_filters_out() {
        let pattern = Pattern::parse(PARTIAL_SUBSCRIPTION).unwrap();
        let partial: Vec<SampleEvent> = (0..40)
            .map(|n| event(n, 4))
            .filter(|e| e.tenant == 2)
            .collect();
        assert_eq!(partial.len(), 10);
        let kept = partial
            .iter()
            .filter(|e| pattern.matches(e.event_type))
            .count();
        assert!(
            kept > 0 && kept < partial.len(),
            "{kept} of {}",
            partial.len()
        );
        let value: serde_json::Value = serde_json::from_slice(&partial[0].value).unwrap();
        assert_eq!(value["id"], "demo_000002");
        assert_eq!(partial[0].id, "demo_000002");
    }
}
