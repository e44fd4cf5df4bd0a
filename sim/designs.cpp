#include "sim/designs.h"

namespace splitwise::sim {

Result<std::shared_ptr<const PerfModel>> ProfileSet::get(const std::string& machine) {
  if (auto it = cache_.find(machine); it != cache_.end()) return it->second;
  auto spec = machine_spec(machine);
  if (!spec.ok()) return spec.status();
  auto perf = PerfModel::from_csv(csv_, model_, *spec, spec->gpus);
  if (!perf.ok()) return perf.status();
  auto p = std::make_shared<const PerfModel>(std::move(perf).value());
  cache_[machine] = p;
  return p;
}

Result<ClusterSpec> make_cluster(const std::string& prompt_type, int prompt,
                                 const std::string& token_type, int token,
                                 const std::string& mixed_type, int mixed, ProfileSet& profiles) {
  ClusterSpec spec;
  spec.model = profiles.model();
  auto add = [&](const char* name, Role role, const std::string& type, int n) -> Status {
    if (n <= 0) return Status();
    auto m = machine_spec(type);
    if (!m.ok()) return m.status();
    auto perf = profiles.get(type);
    if (!perf.ok()) return perf.status();
    spec.pools.push_back({name, role, *m, *perf, n});
    return Status();
  };
  for (auto st : {add("prompt", Role::kPrompt, prompt_type, prompt),
                  add("token", Role::kToken, token_type, token),
                  add("mixed", Role::kMixed, mixed_type, mixed)})
    if (!st.ok()) return st;
  if (spec.pools.empty()) return Status::error("a cluster needs at least one machine");
  const bool split = prompt > 0 && token > 0;
  if (!split && mixed <= 0)
    return Status::error("a cluster needs prompt and token machines, or mixed machines");
  // A mixed machine prefers prompts (the paper's mixed pool); with no split pools it is
  // a baseline machine, which batches like vLLM: the same rule, without the pool split.
  spec.batching.prefill_first = true;
  return spec;
}

Result<ClusterSpec> make_design(const std::string& name, const DesignSize& size,
                                ProfileSet& profiles) {
  if (name == "baseline-a100")
    return make_cluster("", 0, "", 0, "a100", size.prompt + size.mixed, profiles);
  if (name == "baseline-h100")
    return make_cluster("", 0, "", 0, "h100", size.prompt + size.mixed, profiles);
  static const std::map<std::string, std::pair<std::string, std::string>> kSplit = {
      {"splitwise-aa", {"a100", "a100"}},
      {"splitwise-hh", {"h100", "h100"}},
      {"splitwise-ha", {"h100", "a100"}},
      {"splitwise-hhcap", {"h100", "h100cap"}}};
  auto it = kSplit.find(name);
  if (it == kSplit.end())
    return Status::error("unknown design '" + name +
                         "' (known: baseline-a100, baseline-h100, splitwise-aa, splitwise-hh, "
                         "splitwise-ha, splitwise-hhcap)");
  return make_cluster(it->second.first, size.prompt, it->second.second, size.token,
                      it->second.second, size.mixed, profiles);
}

}  // namespace splitwise::sim
