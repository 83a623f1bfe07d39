//! Signed execution receipts (DESIGN section 6): what a receipt holds, the per-tenant keys that
//! sign it, the hash chain that orders it, and the verification that finds the first receipt of
//! a log that was modified, deleted, reordered, inserted, replayed or signed with an unknown key.
//!
//! Chains: one per tenant and node (`chain` = node id), so appending never waits on another
//! node. Each receipt carries its chain's sequence number and `prev`, the hash of the chain's
//! previous receipt. Verification covers every chain of a tenant's log.
//!
//! Keys never appear in logs, errors or traces: their `Debug` is redacted and errors name only
//! key ids.

mod chain;
mod keys;
mod receipt;
mod verify;

pub use chain::Chains;
pub use keys::{KeyError, Keyring, MasterKey};
pub use receipt::{GENESIS, HostCalls, Receipt, ReceiptDraft, Trigger};
pub use verify::{Finding, Problem, Verdict, verify};
