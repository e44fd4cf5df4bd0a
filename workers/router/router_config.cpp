#include "workers/router/router_config.h"

#include <yaml-cpp/yaml.h>

namespace splitwise::router {

Result<WorkerAddress> parse_worker_address(worker::Role role, const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return Status::error("worker address '" + text + "' is not host:port");
  WorkerAddress a;
  a.role = role;
  a.host = text.substr(0, colon);
  const std::string port = text.substr(colon + 1);
  if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 ||
      std::stoi(port) == 0 || std::stoi(port) > 65535)
    return Status::error("worker address '" + text + "' has no valid port");
  a.port = static_cast<uint16_t>(std::stoi(port));
  return a;
}

Status read_workers_yaml(const std::string& path, std::vector<WorkerAddress>* out) {
  try {
    const YAML::Node root = YAML::LoadFile(path);
    const YAML::Node workers = root["workers"];
    if (!workers || !workers.IsSequence())
      return Status::error(path + ": expected a 'workers' list");
    int i = 0;
    for (const YAML::Node& w : workers) {
      const std::string where = path + ": workers[" + std::to_string(i++) + "]";
      if (!w["role"] || !w["address"]) return Status::error(where + " needs role and address");
      const auto role = worker::parse_role(w["role"].as<std::string>());
      if (!role)
        return Status::error(where + ": role '" + w["role"].as<std::string>() +
                             "' is not prompt, token or mixed");
      auto a = parse_worker_address(*role, w["address"].as<std::string>());
      if (!a.ok()) return a.status().with_context(where);
      if (w["discover"]) {
        const std::string how = w["discover"].as<std::string>();
        if (how != "dns") return Status::error(where + ": discover '" + how + "' is not 'dns'");
        a->discover = true;
      }
      out->push_back(*a);
    }
  } catch (const YAML::Exception& e) {
    return Status::error(path + ": " + e.what());
  }
  return {};
}

}  // namespace splitwise::router
