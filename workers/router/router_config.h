// Where the router's workers are: a YAML file and/or command-line flags.
#pragma once

#include <string>
#include <vector>

#include "workers/engine/status.h"
#include "workers/router/worker_pool.h"

namespace splitwise::router {

// "host:port" -> an address of the given role; errors name the text.
Result<WorkerAddress> parse_worker_address(worker::Role role, const std::string& text);

// Reads
//   workers:
//     - {role: prompt, address: 127.0.0.1:8101}
//     - {role: token,  address: 127.0.0.1:8102}
//     - {role: token,  address: llama-token.ns.svc:8000, discover: dns}  # every address
// appending to `out`. Errors name the file and the entry.
Status read_workers_yaml(const std::string& path, std::vector<WorkerAddress>* out);

}  // namespace splitwise::router
