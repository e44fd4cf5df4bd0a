// The cluster designs of the Splitwise paper, by name, on a given model and profile:
// baseline-a100 / baseline-h100 (every machine runs both phases) and splitwise-aa, -hh,
// -ha, -hhcap (prompt pool on the first machine type, token pool on the second).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "sim/cluster_sim.h"

namespace splitwise::sim {

// Loads each machine type's PerfModel once.
class ProfileSet {
 public:
  ProfileSet(std::filesystem::path csv, ModelSpec model)
      : csv_(std::move(csv)), model_(std::move(model)) {}
  Result<std::shared_ptr<const PerfModel>> get(const std::string& machine);
  const ModelSpec& model() const { return model_; }

 private:
  std::filesystem::path csv_;
  ModelSpec model_;
  std::map<std::string, std::shared_ptr<const PerfModel>> cache_;
};

struct DesignSize {
  int prompt = 0;  // baseline: machines in its one mixed pool
  int token = 0;
  int mixed = 0;  // Splitwise's optional overflow pool (of the token machine type)
};

// Names: baseline-a100, baseline-h100, splitwise-aa, splitwise-hh, splitwise-ha,
// splitwise-hhcap. Machine types: a100, h100, h100cap.
Result<ClusterSpec> make_design(const std::string& name, const DesignSize& size,
                                ProfileSet& profiles);

// A pool layout from machine types: prompt_type/token_type empty means none of that pool.
Result<ClusterSpec> make_cluster(const std::string& prompt_type, int prompt,
                                 const std::string& token_type, int token,
                                 const std::string& mixed_type, int mixed, ProfileSet& profiles);

}  // namespace splitwise::sim
