#include "sim/hardware.h"

namespace splitwise::sim {

Result<ModelSpec> model_spec(const std::string& name) {
  // Architectures from the models' published configs.
  if (name == "llama2-70b") return ModelSpec{name, 69e9, 80, 8, 128, 2};
  if (name == "bloom-176b") return ModelSpec{name, 176e9, 70, 112, 128, 2};
  return Status::error("unknown model '" + name + "' (known: llama2-70b, bloom-176b)");
}

Result<MachineSpec> machine_spec(const std::string& name) {
  // DGX-A100: 8 x A100-80GB (2.0 TB/s HBM2e), 8 x 200 Gb/s HDR InfiniBand.
  // DGX-H100: 8 x H100-80GB (3.35 TB/s HBM3), 8 x 400 Gb/s NDR InfiniBand.
  // Cost and power per machine: the Splitwise paper (../shared/data/README.md).
  if (name == "a100")
    return MachineSpec{name, "a100-80gb", 8, 80e9, 2.0e12, 200e9, 0.008, 17.68, 24.8, 0.4, "A100"};
  if (name == "h100")
    return MachineSpec{name, "h100-80gb", 8, 80e9, 3.35e12, 400e9, 0.005, 38.08, 44.0, 0.7, "H100"};
  if (name == "h100cap")
    return MachineSpec{name,  "h100-80gb-pcap", 8,    80e9,  3.35e12, 400e9, 0.005,
                       38.08, 0.7 * 44.0,       0.49, "H100"};
  return Status::error("unknown machine '" + name + "' (known: a100, h100, h100cap)");
}

std::vector<std::string> machine_names() { return {"a100", "h100", "h100cap"}; }

}  // namespace splitwise::sim
