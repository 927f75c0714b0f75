//! Tenants: who receives events and which ones. The record contract, its
//! validation, and the table restored from the compacted `tenants` topic.

pub mod pattern;
pub mod record;
pub mod sync;
pub mod table;

pub use record::{Tenant, TenantError, TenantRecord};
pub use table::{TableStats, TenantEntry, TenantTable};
