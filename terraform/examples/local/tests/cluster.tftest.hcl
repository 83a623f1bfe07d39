# Applies the local example: a real 3-node cluster on loopback (three nats-servers with routes,
# three gojinn nodes on them), calls a function through every node and follows a job queued on
# one node through the others. The test's teardown destroys it all (scripts/check-terraform.sh
# then checks that no process and no file is left).

variables {
  admin_token         = "local-example-admin-token-0123456789abcdef"
  audit_key           = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
  nats_route_password = "local-example-route-password"
}

run "three_nodes_come_up" {
  assert {
    condition     = length(output.node_urls) == 3
    error_message = "three nodes: ${jsonencode(output.node_urls)}"
  }
}

run "every_node_serves_the_functions_and_the_cluster_runs_a_job_queued_on_one_node" {
  module {
    source = "./tests/probe"
  }
  variables {
    node_urls = run.three_nodes_come_up.node_urls
    out       = "${run.three_nodes_come_up.work_dir}/probe.json"
  }

  assert {
    condition = jsondecode(file("${run.three_nodes_come_up.work_dir}/probe.json")).greetings == {
      n1 = "Hello, n1!", n2 = "Hello, n2!", n3 = "Hello, n3!"
    }
    error_message = "every node answers with the function the leader applied"
  }
  assert {
    condition = alltrue([for node, job in jsondecode(file("${run.three_nodes_come_up.work_dir}/probe.json")).job.seen_from :
    job.status == "succeeded" && job.result.body == "Hello, job!" && job.attempts == 1])
    error_message = "the job queued on n1 succeeded once and both other nodes see its result"
  }
}
