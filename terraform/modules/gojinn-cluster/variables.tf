variable "nodes" {
  description = <<-EOT
    The cluster's machines. `name`: 1-63 characters of a-z, 0-9 and '-', unique (it names the
    node's NATS server and its audit chain). `address`: the IP other nodes and the load balancer
    reach it on (gojinn and the NATS routes listen there). `nats_client_address`: where the NATS
    client port listens (default 127.0.0.1: only the machine's own gojinn connects; gojinn sends
    no NATS credentials). `root`: a directory prefixed to every path, for several nodes on one
    machine (default none).
  EOT
  type = list(object({
    name                = string
    address             = string
    nats_client_address = optional(string, "127.0.0.1")
    root                = optional(string, "")
  }))

  validation {
    condition     = length(var.nodes) > 0
    error_message = "nodes: give at least one node."
  }
  validation {
    condition     = alltrue([for node in var.nodes : can(regex("^[a-z][a-z0-9-]{0,62}$", node.name))])
    error_message = "nodes: every name must be 1 to 63 characters of a-z, 0-9 and '-', starting with a letter; these are not: ${join(", ", [for node in var.nodes : jsonencode(node.name) if !can(regex("^[a-z][a-z0-9-]{0,62}$", node.name))])}."
  }
  validation {
    condition     = length(distinct(var.nodes[*].name)) == length(var.nodes)
    error_message = "nodes: names must be unique (a name is the node's NATS server name and audit chain); repeated: ${join(", ", distinct([for name in var.nodes[*].name : name if length([for other in var.nodes[*].name : other if other == name]) > 1]))}."
  }
  validation {
    condition = alltrue([for node in var.nodes : alltrue([
      for address in [node.address, node.nats_client_address] :
      can(cidrhost("${address}/${strcontains(address, ":") ? 128 : 32}", 0))
    ])])
    error_message = "nodes: every address and nats_client_address must be an IPv4 or IPv6 address (not a host name or a CIDR block); these are not: ${join(", ", [for address in flatten([for node in var.nodes : [node.address, node.nats_client_address]]) : jsonencode(address) if !can(cidrhost("${address}/${strcontains(address, ":") ? 128 : 32}", 0))])}."
  }
  validation {
    condition     = length(distinct(var.nodes[*].address)) == length(var.nodes)
    error_message = "nodes: addresses must be unique: two nodes on one address would listen on the same ports."
  }
}

variable "replicas" {
  description = "JetStream replicas of the shared control bucket and module store (and the default for tenants): 1, 3 or 5, at most the number of nodes."
  type        = number
  default     = 3

  validation {
    condition     = contains([1, 3, 5], var.replicas)
    error_message = "replicas must be 1, 3 or 5 (JetStream Raft groups are odd-sized), not ${var.replicas}."
  }
  validation {
    condition     = var.replicas <= length(var.nodes)
    error_message = "replicas (${var.replicas}) cannot exceed the number of nodes (${length(var.nodes)}): each replica needs its own NATS server."
  }
}

variable "spec_source" {
  description = "The git repository every node reconciles: `git` (URL or a local path on the machines), `ref` (branch, tag or commit), `interval` (how often it is fetched), `default_policies` (gojinn's admission policies, on by default)."
  type = object({
    git              = string
    ref              = optional(string, "main")
    interval         = optional(string, "30s")
    default_policies = optional(bool, true)
  })

  validation {
    condition     = trimspace(var.spec_source.git) != ""
    error_message = "spec_source.git: name the repository (a URL, or a path on the machines)."
  }
  validation {
    condition     = can(regex("^[0-9]+(ms|s|m|h)$", var.spec_source.interval))
    error_message = "spec_source.interval must be a duration such as 30s, 5m or 1h, not ${jsonencode(var.spec_source.interval)}."
  }
}

variable "admin_token" {
  description = "The admin API's bearer token, shared by every node (e.g. `openssl rand -hex 32`)."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.admin_token) >= 32 && !strcontains(var.admin_token, "\n")
    error_message = "admin_token must be one line of at least 32 characters (e.g. openssl rand -hex 32)."
  }
}

variable "audit_key" {
  description = "The receipts' master key, 64 or more hex digits, shared by every node so that `gojinn audit verify` checks every chain with one key (e.g. `openssl rand -hex 32`)."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[0-9a-fA-F]{64,}$", var.audit_key))
    error_message = "audit_key must be 64 or more hex digits (e.g. openssl rand -hex 32)."
  }
}

variable "nats_route_password" {
  description = "The password NATS servers authenticate their cluster routes with."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.nats_route_password) >= 16
    error_message = "nats_route_password must be at least 16 characters."
  }
}

variable "cluster_name" {
  description = "The NATS cluster's name."
  type        = string
  default     = "gojinn"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.cluster_name))
    error_message = "cluster_name: 1 to 64 characters of letters, digits, '_' and '-'."
  }
}

variable "ports" {
  description = "Ports on every node: gojinn's HTTP server, and NATS's client, cluster-route and monitoring ports."
  type = object({
    http         = optional(number, 8080)
    nats_client  = optional(number, 4222)
    nats_cluster = optional(number, 6222)
    nats_monitor = optional(number, 8222)
  })
  default = {}

  validation {
    condition     = alltrue([for port in values(var.ports) : port >= 1 && port <= 65535 && floor(port) == port])
    error_message = "ports: every port must be a whole number from 1 to 65535."
  }
  validation {
    condition     = length(distinct(values(var.ports))) == length(values(var.ports))
    error_message = "ports: http, nats_client, nats_cluster and nats_monitor must all differ."
  }
}

variable "gojinn_binary" {
  description = "Path of the gojinn binary on the machines."
  type        = string
  default     = "/usr/local/bin/gojinn"
}

variable "nats_server_binary" {
  description = "Path of the nats-server binary (2.10 or newer) on the machines."
  type        = string
  default     = "/usr/local/bin/nats-server"
}

variable "bootstrap_commands" {
  description = "Shell commands cloud-init runs before starting the services, e.g. to install the two binaries."
  type        = list(string)
  default     = []
}

variable "extra_settings" {
  description = "Further top-level gojinn.yaml keys (README \"Node configuration\"), e.g. `telemetry` or `egress`; a key given here replaces the module's."
  type        = any
  default     = {}
}
