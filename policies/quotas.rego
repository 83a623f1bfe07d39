# Default admission policy shipped with gojinn: a function's limits stay within its tenant's
# quotas and within platform bounds. The input document is described in src/reconcile/policy.rs.
package gojinn.admission

# Longest timeout a function may ask for, in milliseconds (5 minutes).
max_timeout_ms := 300000

deny contains msg if {
	input.kind == "Function"
	max := input.tenant.quotas.maxMemory
	input.function.limits.memory > max
	msg := sprintf(
		"function %s: limits.memory of %d bytes exceeds tenant %s's quota maxMemory of %d bytes",
		[input.function.id, input.function.limits.memory, input.tenant.name, max],
	)
}

deny contains msg if {
	input.kind == "Function"
	max := input.tenant.quotas.maxConcurrency
	input.function.limits.maxConcurrency > max
	msg := sprintf(
		"function %s: limits.maxConcurrency of %d exceeds tenant %s's quota maxConcurrency of %d",
		[input.function.id, input.function.limits.maxConcurrency, input.tenant.name, max],
	)
}

deny contains msg if {
	input.kind == "Function"
	input.function.limits.timeout > max_timeout_ms
	msg := sprintf(
		"function %s: limits.timeout of %dms exceeds the maximum of 5 minutes (%dms)",
		[input.function.id, input.function.limits.timeout, max_timeout_ms],
	)
}
