# Default admission policy shipped with gojinn: a function runs exactly the module its spec
# names, so the spec must pin the module's sha256.
package gojinn.admission

deny contains msg if {
	input.kind == "Function"
	not input.function.module.pinned
	msg := sprintf(
		"function %s: module \"%s\" is not pinned; add spec.module.sha256: %s",
		[input.function.id, input.function.module.path, input.function.module.sha256],
	)
}
