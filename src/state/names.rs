//! Names of a tenant's resources in a backend (DESIGN section 5). Derived only from validated
//! [`Name`]s, which hold no `.`, `*`, `>` or whitespace, so no name can break a subject or reach
//! into another tenant's resources.

use crate::spec::Name;

/// `GOJINN_KV_<TENANT>`: upper case, `-` as `_` (names never contain `_`, so this is one-to-one).
fn resource(kind: &str, tenant: &Name) -> String {
    format!("GOJINN_{kind}_{}", tenant.as_str().to_ascii_uppercase().replace('-', "_"))
}

pub fn kv_bucket(tenant: &Name) -> String {
    resource("KV", tenant)
}

pub fn jobs_stream(tenant: &Name) -> String {
    resource("JOBS", tenant)
}

pub fn dead_letter_stream(tenant: &Name) -> String {
    resource("DLQ", tenant)
}

pub fn audit_stream(tenant: &Name) -> String {
    resource("AUDIT", tenant)
}

/// Job status records of the tenant.
pub fn job_state_bucket(tenant: &Name) -> String {
    resource("JOBSTATE", tenant)
}

/// `gojinn.jobs.<tenant>.<function>`
pub fn job_subject(tenant: &Name, function: &Name) -> String {
    format!("gojinn.jobs.{tenant}.{function}")
}

pub fn dead_letter_subject(tenant: &Name, function: &Name) -> String {
    format!("gojinn.dlq.{tenant}.{function}")
}

pub fn audit_subject(tenant: &Name) -> String {
    format!("gojinn.audit.{tenant}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_to_one_and_subject_safe() {
        let a = Name::new("a-b").unwrap();
        let b = Name::new("ab").unwrap();
        assert_eq!(kv_bucket(&a), "GOJINN_KV_A_B");
        assert_ne!(kv_bucket(&a), kv_bucket(&b));
        assert_eq!(job_subject(&a, &b), "gojinn.jobs.a-b.ab");
    }
}
