//! What to do with a decoded event before each attempt, given its tenant's
//! entry in the table and its admission by the scheduler: dead-letter it
//! (unknown, invalid or disabled tenant), park it (suspended tenant, or one
//! whose parked events are still being replayed), pass over it (not
//! subscribed), or deliver it. Pure: the worker reads the table and acts.

use super::dead_letter::DlqReason;
use super::scheduler::{Admission, ParkedBecause};
use crate::tenants::{Tenant, TenantEntry};

/// The decision for one event.
#[derive(Debug)]
pub enum Verdict<'t> {
    /// Attempt it, to this tenant.
    Deliver(&'t Tenant),
    /// The tenant is not subscribed to the event's type.
    Filtered,
    /// Dead-letter it at once, without an attempt.
    DeadLetter(DlqReason, String),
    /// Park it: dead-letter it as `tenant_suspended`, without an attempt.
    Park(ParkedBecause, String),
}

/// Where an event stands in its tenant's in-order resumption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumption {
    /// Nothing parked is owed: deliver as usual.
    Clear,
    /// The tenant owes the replay of parked events and this event is not
    /// one of them: it waits behind them (parked too).
    Behind,
}

/// Decides for an event of type `event_type` to tenant `tenant_id`, whose
/// table entry is `entry` (`None`: no such tenant). The tenant's own state
/// comes first (a deleted, broken or disabled tenant is that, suspended or
/// not), then its subscription (an event it does not want is filtered even
/// while it is suspended), then an operator's suspension, then the replay
/// the tenant owes, then the circuit breaker's suspension.
pub fn decide<'t>(
    tenant_id: &str,
    entry: Option<&'t TenantEntry>,
    event_type: &str,
    admission: Admission,
    resumption: Resumption,
) -> Verdict<'t> {
    let tenant = match entry {
        None => {
            return Verdict::DeadLetter(
                DlqReason::UnknownTenant,
                format!("tenant `{tenant_id}` does not exist"),
            );
        }
        Some(TenantEntry::Invalid { error, .. }) => {
            return Verdict::DeadLetter(
                DlqReason::InvalidTenant,
                format!("tenant record is invalid: {error}"),
            );
        }
        Some(TenantEntry::Valid(tenant)) => tenant,
    };
    if !tenant.enabled {
        return Verdict::DeadLetter(
            DlqReason::TenantDisabled,
            format!("tenant `{tenant_id}` is disabled"),
        );
    }
    if !tenant.is_subscribed(event_type) {
        return Verdict::Filtered;
    }
    if tenant.suspended {
        return Verdict::Park(
            ParkedBecause::Operator,
            format!("tenant `{tenant_id}` is suspended by an operator"),
        );
    }
    if resumption == Resumption::Behind {
        return Verdict::Park(
            ParkedBecause::Owed,
            format!(
                "tenant `{tenant_id}` is resuming: its events wait behind its parked ones until \
                 those are replayed"
            ),
        );
    }
    match admission {
        Admission::Suspended => Verdict::Park(
            ParkedBecause::Breaker,
            format!("tenant `{tenant_id}` is suspended: its endpoint kept failing"),
        ),
        Admission::Deliver | Admission::Probe => Verdict::Deliver(tenant),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(extra: serde_json::Value) -> TenantEntry {
        let key = crate::crypto::PrivateKey::generate(2048).unwrap();
        let mut record = serde_json::json!({
            "url": "https://hooks.example/",
            "public_key": key.public_key().to_spki_pem(),
        });
        record
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        TenantEntry::from_value("acme", &serde_json::to_vec(&record).unwrap())
    }

    fn reason(verdict: Verdict<'_>) -> Option<DlqReason> {
        match verdict {
            Verdict::DeadLetter(reason, _) => Some(reason),
            Verdict::Park(..) => Some(DlqReason::TenantSuspended),
            _ => None,
        }
    }

    fn parked(verdict: Verdict<'_>) -> Option<ParkedBecause> {
        match verdict {
            Verdict::Park(because, _) => Some(because),
            _ => None,
        }
    }

    #[test]
    fn every_case_in_order_of_precedence() {
        use Admission::*;
        let valid = tenant(serde_json::json!({"events": ["order.*"]}));
        let disabled = tenant(serde_json::json!({"enabled": false}));
        let invalid = TenantEntry::from_value("acme", b"{not json");
        assert!(matches!(invalid, TenantEntry::Invalid { .. }));

        let cases = [
            (
                None,
                "order.created",
                Deliver,
                Some(DlqReason::UnknownTenant),
            ),
            (
                Some(&invalid),
                "order.created",
                Suspended,
                Some(DlqReason::InvalidTenant),
            ),
            (
                Some(&disabled),
                "order.created",
                Suspended,
                Some(DlqReason::TenantDisabled),
            ),
            (
                Some(&valid),
                "order.created",
                Suspended,
                Some(DlqReason::TenantSuspended),
            ),
        ];
        for (entry, event_type, admission, expected) in cases {
            assert_eq!(
                reason(decide(
                    "acme",
                    entry,
                    event_type,
                    admission,
                    Resumption::Behind
                )),
                expected
            );
        }
        assert!(matches!(
            decide(
                "acme",
                Some(&valid),
                "invoice.paid",
                Suspended,
                Resumption::Behind
            ),
            Verdict::Filtered
        ));
        for admission in [Deliver, Probe] {
            assert!(matches!(
                decide("acme", Some(&valid), "order.created", admission, Resumption::Clear),
                Verdict::Deliver(t) if &*t.id == "acme"
            ));
        }
    }

    /// An operator's suspension comes before the debt of a resumption,
    /// which comes before the circuit breaker: the reason the record says
    /// it was parked for is what the scheduler's bookkeeping relies on.
    #[test]
    fn parking_says_why_in_order_of_precedence() {
        use Admission::*;
        let valid = tenant(serde_json::json!({}));
        let suspended = tenant(serde_json::json!({"suspended": true}));
        let decide = |entry, admission, resumption| {
            parked(decide("acme", Some(entry), "t", admission, resumption))
        };
        for admission in [Deliver, Probe, Suspended] {
            for resumption in [Resumption::Clear, Resumption::Behind] {
                assert_eq!(
                    decide(&suspended, admission, resumption),
                    Some(ParkedBecause::Operator)
                );
            }
            assert_eq!(
                decide(&valid, admission, Resumption::Behind),
                Some(ParkedBecause::Owed)
            );
        }
        assert_eq!(
            decide(&valid, Suspended, Resumption::Clear),
            Some(ParkedBecause::Breaker)
        );
        assert_eq!(decide(&valid, Probe, Resumption::Clear), None);
    }

    #[test]
    fn the_error_names_the_tenant() {
        let Verdict::DeadLetter(_, error) =
            decide("ghost", None, "x", Admission::Deliver, Resumption::Clear)
        else {
            panic!("dead letter expected");
        };
        assert_eq!(error, "tenant `ghost` does not exist");
    }
}
