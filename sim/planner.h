// splitwise-plan's search: pool sizes and machine types for a load, a model profile, SLOs
// and a budget. For a fixed load it finds, per design family, the smallest prompt/token
// pools that meet every SLO (each pool's feasibility is monotone in its size, so each
// size is a bisection); for a fixed budget it finds the split with the highest
// sustainable rate. Families are searched in parallel on all cores.
#pragma once

#include <string>
#include <vector>

#include "sim/designs.h"
#include "sim/report.h"
#include "sim/search.h"

namespace splitwise::sim {

struct PlanBudget {  // 0: no limit
  int machines = 0;
  double cost_per_hour = 0;
  double power = 0;
};

enum class Objective { kCost, kPower, kThroughput };

struct PlanLoad {
  std::vector<Request> lengths;  // token lengths to draw from (a trace)
  double rate = 0;               // req/s for kCost / kPower
  RateSearch probe;              // duration, cv, seed of each simulated run
};

struct Candidate {
  std::string design;  // family: baseline-a100, splitwise-ha, ...
  DesignSize size;
  int machines = 0;
  double cost_per_hour = 0, power = 0;  // nominal, all machines up
  double rate = 0;                      // the load met (kThroughput: the max found)
  Report report;
  bool feasible = false;
};

struct PlanResult {
  std::vector<Candidate> feasible;  // every feasible point evaluated
  std::vector<Candidate> pareto;    // not dominated in (cost, power, -rate)
  std::vector<Candidate> best_per_design;
  Candidate best;
  int simulations = 0;
};

PlanResult plan(ProfileSet& profiles, const PlanLoad& load, const SloSpec& slo,
                const PlanBudget& budget, Objective objective,
                const std::vector<std::string>& designs, int threads);

// Nominal cost and power of a design with all machines up.
Candidate describe(const std::string& design, const DesignSize& size);
bool within(const PlanBudget& budget, const Candidate& c);

// The `spec.pools` block of an InferenceCluster for a candidate, as YAML.
std::string pools_yaml(const Candidate& c, const std::string& comment);

}  // namespace splitwise::sim
