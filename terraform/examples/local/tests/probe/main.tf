# Used by cluster.tftest.hcl only: calls a function through every node of the running cluster and
# queues a job on one node to read it through the others (probe.sh), leaving what it saw in
# OUT for the test's assertions. The apply fails, with the reason, if any of it does.

variable "node_urls" {
  type = map(string)
}

variable "out" {
  type = string
}

resource "terraform_data" "probe" {
  input = var.node_urls

  provisioner "local-exec" {
    command = "'${abspath(path.module)}/probe.sh' '${var.out}' ${join(" ", [for name, url in var.node_urls : "${name}=${url}"])}"
  }
}
