//! Tenants: who receives events, which ones and how fast. The record
//! contract, its validation, and the table restored from the compacted
//! `tenants` topic.

pub mod edit;
pub mod pattern;
pub mod rate_limit;
pub mod record;
pub mod sync;
pub mod table;

pub use rate_limit::RateLimit;
pub use record::{PreparedTenant, Tenant, TenantError, TenantRecord};
pub use table::{DEFAULT_PREPARED_TENANTS, TableStats, TenantEntry, TenantTable};
