# Default admission policy shipped with gojinn: JetStream replication needs an odd quorum.
package gojinn.admission

allowed_replicas := {1, 3, 5}

deny contains msg if {
	input.kind == "Tenant"
	not input.tenant.replicas in allowed_replicas
	msg := sprintf("tenant %s: replicas %v is not allowed; use 1, 3 or 5", [input.tenant.name, input.tenant.replicas])
}
