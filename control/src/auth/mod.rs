//! Who may do what: roles, callers, and the one access decision every endpoint makes.
//!
//! Also the small primitives identity rests on: argon2id password hashes and random bearer
//! tokens that the store keeps only as SHA-256 digests.

mod access;
pub mod cookie;
pub mod password;
pub mod token;

pub use access::{Access, Caller, Principal, Role, TenantId, UserId};
