//! Signed execution receipts (DESIGN section 6): what a receipt holds, the per-tenant keys that
//! sign it, the hash chain that orders it, the records of a tenant's audit log, and the
//! verification that finds the first entry of a log that was modified, deleted, reordered,
//! inserted, replayed, truncated or signed with an unknown key.
//!
//! Chains: one per tenant and node (`chain` = node id), so appending never waits on another
//! node. Each receipt carries its chain's sequence number and `prev`, the hash of the chain's
//! previous receipt. Verification covers every chain of a tenant's log.
//!
//! Recording: the edge and the job workers build a draft of each execution's receipt
//! (`execution`) and hand it to the [`Recorder`], whose single appender task seals the drafts in
//! arrival order and appends them to the tenants' logs in batches, with signed checkpoints
//! (`record`) so that a cut-off chain is detectable. `log` reads a tenant's log back.
//!
//! Keys never appear in logs, errors or traces: their `Debug` is redacted and errors name only
//! key ids.

mod appender;
mod chain;
mod examine;
mod execution;
mod keys;
pub mod log;
mod receipt;
mod record;
pub(crate) mod recorder;
mod spool;
mod verify;

pub use chain::{Chains, Head};
pub use execution::{End, Execution, Workload};
pub use keys::{KeyError, Keyring, MasterKey, TenantKeys};
pub use receipt::{GENESIS, HostCalls, Receipt, ReceiptDraft, Trigger, id_tenant, new_id};
pub use record::{Checkpoint, Record};
pub use recorder::{KEY_FILE_NAME, RecordError, Recorder, RecorderError, key_file, read_keyring};
pub use verify::{Finding, Problem, Subject, Verdict, Window, any_verifies, verify, verify_receipt};
