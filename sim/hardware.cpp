#include "sim/hardware.h"

namespace splitwise::sim {

Result<ModelSpec> model_spec(const std::string& name) {
  // Architectures from the models' published configs.
  if (name == "llama2-70b") return ModelSpec{name, 69e9, 80, 8, 128, 2};
  if (name == "bloom-176b") return ModelSpec{name, 176e9, 70, 112, 128, 2};
  // The llama2.c model in ../shared, fp32: for profiles of our own CPU engine.
  if (name == "stories260K") return ModelSpec{name, 260e3, 5, 4, 8, 4};
  return Status::error("unknown model '" + name + "' (known: llama2-70b, bloom-176b, stories260K)");
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
  // One CPU host running our CPU engine (the development machine's class: DDR bandwidth,
  // 10 GbE); cost and power are nominal, for trying the tools on CPU profiles.
  if (name == "cpu")
    return MachineSpec{name, "cpu", 1, 24e9, 20e9, 1.25e9, 0.001, 0.10, 0.2, 0.065, "CPU"};
  return Status::error("unknown machine '" + name + "' (known: a100, h100, h100cap, cpu)");
}

std::vector<std::string> machine_names() { return {"a100", "h100", "h100cap", "cpu"}; }

}  // namespace splitwise::sim
