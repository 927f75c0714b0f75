//! Tenants: who receives events, and which ones.

pub mod pattern;
