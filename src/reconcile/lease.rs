//! The reconcile lease: one reconciler at a time across a cluster's nodes and `gojinn apply`.
//! A node takes it for every pass and keeps renewing it; `gojinn apply` takes it for its one
//! apply and gives it back.

use super::{Admitted, ApplyReport, ReconcileError, Reconciler};
use crate::state::{Control, StateError};
use std::time::Duration;

/// The lease's name in the control store.
pub const RECONCILE_LEASE: &str = "reconcile";
/// The shortest lease a node takes: a leader that stops renewing is replaced after this long.
const MIN_NODE_LEASE: Duration = Duration::from_secs(30);
/// How long `gojinn apply` may hold the lease; it gives it back as soon as it is done.
const APPLY_LEASE: Duration = Duration::from_secs(600);

/// A would-be holder of the reconcile lease.
#[derive(Clone, Debug)]
pub struct Lease {
    holder: String,
    ttl: Duration,
}

impl Lease {
    /// A node's: named after its host and process, held for three reconcile intervals (at least
    /// [`MIN_NODE_LEASE`]), renewed at every pass.
    pub fn node(interval: Duration) -> Self {
        let suffix: u32 = rand::random();
        let host = crate::audit::recorder::host_name();
        Self {
            holder: format!("{host}-{}-{suffix:08x}", std::process::id()),
            ttl: (interval * 3).max(MIN_NODE_LEASE),
        }
    }

    /// `gojinn apply`'s.
    pub fn apply() -> Self {
        Self { holder: format!("gojinn-apply-{}", std::process::id()), ttl: APPLY_LEASE }
    }

    /// Takes or renews the lease; false while another holder has it.
    pub async fn acquire(&self, control: &dyn Control) -> Result<bool, StateError> {
        control.acquire_lease(RECONCILE_LEASE, &self.holder, self.ttl).await
    }

    /// Gives the lease back, if held.
    pub async fn release(&self, control: &dyn Control) -> Result<(), StateError> {
        control.release_lease(RECONCILE_LEASE, &self.holder).await.map(drop)
    }
}

impl Reconciler {
    /// Applies `admitted` under the reconcile lease (`gojinn apply`): never while a node
    /// reconciles, and the lease is given back afterwards, whether the apply succeeded or not.
    pub async fn apply_under_lease(&self, admitted: &Admitted) -> Result<ApplyReport, ReconcileError> {
        let lease = Lease::apply();
        let control = &*self.state().control;
        if !lease.acquire(control).await? {
            return Err(ReconcileError::LeaseHeld);
        }
        let report = self.apply(admitted).await;
        lease.release(control).await?;
        report
    }
}
