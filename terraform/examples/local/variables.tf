variable "admin_token" {
  description = "The cluster's admin token (e.g. `openssl rand -hex 32`); no default, as for every secret."
  type        = string
  sensitive   = true
}

variable "audit_key" {
  description = "The receipts' master key, 64+ hex digits (e.g. `openssl rand -hex 32`)."
  type        = string
  sensitive   = true
}

variable "nats_route_password" {
  description = "The NATS route password (e.g. `openssl rand -hex 16`)."
  type        = string
  sensitive   = true
}

variable "gojinn_binary" {
  description = "The gojinn binary to run; default the repository's target/release/gojinn (`cargo build --release`)."
  type        = string
  default     = ""
}

variable "nats_server_binary" {
  description = "The nats-server binary (2.10 or newer) to run; a name is looked up on PATH."
  type        = string
  default     = "nats-server"
}

variable "work_dir" {
  description = "Where the nodes keep their files, data and logs; default .cluster beside this file. Removed by destroy."
  type        = string
  default     = ""
}
