# Default admission policy shipped with gojinn: outbound HTTP grants name exact endpoints. An
# entry of grants.http.allow must be `host:port`, without wildcards.
package gojinn.admission

deny contains msg if {
	input.kind == "Function"
	some entry in input.function.grants.http.allow
	contains(entry, "*")
	msg := sprintf(
		"function %s: http egress \"%s\" is a wildcard; list hosts explicitly",
		[input.function.id, entry],
	)
}

deny contains msg if {
	input.kind == "Function"
	some entry in input.function.grants.http.allow
	not contains(entry, "*")
	not has_port(entry)
	msg := sprintf(
		"function %s: http egress \"%s\" has no explicit port; write host:port (e.g. \"%s:443\")",
		[input.function.id, entry, entry],
	)
}

# `host:port` with a numeric port after the last ':' (`[::1]` alone has no port).
has_port(entry) if {
	parts := split(entry, ":")
	count(parts) > 1
	port := parts[count(parts) - 1]
	port != ""
	trim_left(port, "0123456789") == ""
}
