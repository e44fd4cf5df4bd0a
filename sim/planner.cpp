#include "sim/planner.h"

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <sstream>
#include <tuple>

namespace splitwise::sim {
namespace {

std::pair<std::string, std::string> machine_types(const std::string& design) {
  if (design == "baseline-a100") return {"a100", "a100"};
  if (design == "baseline-h100") return {"h100", "h100"};
  if (design == "splitwise-aa") return {"a100", "a100"};
  if (design == "splitwise-hh") return {"h100", "h100"};
  if (design == "splitwise-ha") return {"h100", "a100"};
  if (design == "splitwise-hhcap") return {"h100", "h100cap"};
  return {"", ""};
}

bool is_baseline(const std::string& design) { return design.rfind("baseline-", 0) == 0; }

// Searches one design family. Shares the profile cache, so loads happen before threads.
class FamilySearch {
 public:
  FamilySearch(const std::string& design, ProfileSet& profiles, const PerfModel& reference,
               const PlanLoad& load, const SloSpec& slo, const PlanBudget& budget)
      : design_(design),
        profiles_(profiles),
        reference_(reference),
        load_(load),
        slo_(slo),
        budget_(budget) {}

  std::vector<Candidate> min_cost();
  std::vector<Candidate> max_throughput();
  int simulations() const { return sims_; }

 private:
  // Evaluates at load_.rate; feasible when every SLO holds.
  Candidate eval(const DesignSize& size) {
    const auto key = std::make_tuple(size.prompt, size.token, size.mixed);
    if (auto it = memo_.find(key); it != memo_.end()) return it->second;
    Candidate c = describe(design_, size);
    auto spec = make_design(design_, size, profiles_);
    if (!spec.ok()) return c;
    ++sims_;
    c.report = probe(*spec, load_.lengths, reference_, slo_, load_.probe, load_.rate);
    c.rate = load_.rate;
    c.feasible = c.report.slo_met;
    memo_[key] = c;
    return c;
  }
  // Smallest n in [lo, hi] with ok(n), or -1; ok is monotone.
  template <typename F>
  int smallest(int lo, int hi, F ok) {
    if (lo > hi || !ok(hi)) return -1;
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (ok(mid))
        hi = mid;
      else
        lo = mid + 1;
    }
    return lo;
  }
  // Smallest n in [1, cap()] with ok(n): doubling from 1, then bisecting.
  template <typename F>
  int smallest_growing(F ok) {
    int hi = 1;
    while (!ok(hi)) {
      if (hi >= cap()) return -1;
      hi = std::min(cap(), 2 * hi);
    }
    return smallest(hi / 2 + 1, hi, ok);  // ok(hi) is known; bisect below it
  }
  int cap() const { return budget_.machines > 0 ? budget_.machines : 400; }

  std::string design_;
  ProfileSet& profiles_;
  const PerfModel& reference_;
  const PlanLoad& load_;
  const SloSpec& slo_;
  const PlanBudget& budget_;
  int sims_ = 0;
  std::map<std::tuple<int, int, int>, Candidate> memo_;  // bisections revisit sizes
};

std::vector<Candidate> FamilySearch::min_cost() {
  std::vector<Candidate> found;
  auto keep = [&](const Candidate& c) {
    const bool seen = std::any_of(found.begin(), found.end(), [&](const Candidate& o) {
      return o.size.prompt == c.size.prompt && o.size.token == c.size.token;
    });
    if (c.feasible && within(budget_, c) && !seen) found.push_back(c);
    return c.feasible;
  };
  if (is_baseline(design_)) {
    smallest_growing([&](int n) { return keep(eval({n, 0, 0})); });
    return found;
  }
  // Sizes are searched from below (doubling, then bisecting) so no probe simulates a
  // cluster much larger than the answer. First the token pool that ample prompt
  // machines need, then the fewest prompt machines with twice that, then for each prompt
  // pool size from there the fewest token machines; a few past the minimum is enough,
  // since more prompt machines only cost more once prefill queues are short.
  const int ample = std::min(cap(), 64);
  const int t0 = smallest_growing([&](int t) { return eval({ample, t, 0}).feasible; });
  if (t0 < 0) return found;
  const int t_big = std::min(cap(), 2 * t0);
  const int p_min = smallest_growing([&](int p) { return eval({p, t_big, 0}).feasible; });
  if (p_min < 0) return found;
  int best_total = 1 << 30;
  for (int p = p_min; p <= std::min(cap(), p_min + 6); ++p) {
    const int t = smallest(1, t_big, [&](int t) { return keep(eval({p, t, 0})); });
    if (t < 0) continue;
    if (p + t > best_total + 3) break;  // growing the prompt pool no longer pays
    best_total = std::min(best_total, p + t);
  }
  return found;
}

std::vector<Candidate> FamilySearch::max_throughput() {
  std::vector<Candidate> found;
  auto run = [&](const DesignSize& size) {
    Candidate c = describe(design_, size);
    if (!within(budget_, c)) return;
    auto spec = make_design(design_, size, profiles_);
    if (!spec.ok()) return;
    RateSearch s = load_.probe;
    s.start_rate = std::max(1.0, 0.5 * c.machines);
    const RateResult r = max_rate_meeting_slo(*spec, load_.lengths, reference_, slo_, s);
    sims_ += r.probes;
    if (r.max_rate <= 0) return;
    c.rate = r.max_rate;
    c.report = r.at_max;
    c.feasible = true;
    found.push_back(c);
  };
  // The largest design the budget allows: every machine counts for throughput.
  auto fits = [&](const DesignSize& s) { return within(budget_, describe(design_, s)); };
  if (is_baseline(design_)) {
    int n = 1;
    while (n < cap() && fits({n + 1, 0, 0})) ++n;
    if (fits({n, 0, 0})) run({n, 0, 0});
    return found;
  }
  std::vector<DesignSize> splits;
  for (int p = 1; p < cap(); ++p) {
    int t = 0;
    while (t < cap() && fits({p, t + 1, 0})) ++t;
    if (t == 0) break;
    splits.push_back({p, t, 0});
  }
  // A coarse pass over at most 8 splits, then every split around the best of them.
  const size_t step = std::max<size_t>(1, splits.size() / 8);
  for (size_t i = 0; i < splits.size(); i += step) run(splits[i]);
  if (found.empty()) return found;
  const auto best = std::max_element(found.begin(), found.end(), [](auto& a, auto& b) {
                      return a.rate < b.rate;
                    })->size.prompt;
  for (const DesignSize& s : splits)
    if (s.prompt != best && std::abs(s.prompt - best) < static_cast<int>(step)) run(s);
  return found;
}

bool dominates(const Candidate& a, const Candidate& b) {
  const bool no_worse =
      a.cost_per_hour <= b.cost_per_hour && a.power <= b.power && a.rate >= b.rate;
  const bool better = a.cost_per_hour < b.cost_per_hour || a.power < b.power || a.rate > b.rate;
  return no_worse && better;
}

}  // namespace

Candidate describe(const std::string& design, const DesignSize& size) {
  Candidate c;
  c.design = design;
  c.size = size;
  const auto [pt, tt] = machine_types(design);
  auto pm = machine_spec(pt.empty() ? "a100" : pt);
  auto tm = machine_spec(tt.empty() ? "a100" : tt);
  const int prompt = size.prompt, token = size.token + size.mixed;
  c.machines = prompt + token;
  c.cost_per_hour = prompt * pm->cost_per_hour + token * tm->cost_per_hour;
  c.power = prompt * pm->power + token * tm->power;
  return c;
}

bool within(const PlanBudget& b, const Candidate& c) {
  return (b.machines <= 0 || c.machines <= b.machines) &&
         (b.cost_per_hour <= 0 || c.cost_per_hour <= b.cost_per_hour + 1e-9) &&
         (b.power <= 0 || c.power <= b.power + 1e-9);
}

PlanResult plan(ProfileSet& profiles, const PlanLoad& load, const SloSpec& slo,
                const PlanBudget& budget, Objective objective,
                const std::vector<std::string>& designs, int threads) {
  PlanResult result;
  // Load every profile up front: the searches then only read the shared cache.
  auto reference = profiles.get("a100");
  if (!reference.ok()) return result;
  for (const auto& d : designs) {
    const auto [pt, tt] = machine_types(d);
    if (!pt.empty()) (void)profiles.get(pt);
    if (!tt.empty()) (void)profiles.get(tt);
  }
  std::mutex mu;
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next++) < designs.size();) {
      FamilySearch f(designs[i], profiles, **reference, load, slo, budget);
      auto found = objective == Objective::kThroughput ? f.max_throughput() : f.min_cost();
      std::lock_guard<std::mutex> lock(mu);
      result.simulations += f.simulations();
      result.feasible.insert(result.feasible.end(), found.begin(), found.end());
    }
  };
  std::vector<std::future<void>> pool;
  for (int t = 0; t < std::max(1, threads); ++t)
    pool.push_back(std::async(std::launch::async, worker));
  for (auto& f : pool) f.get();

  auto better = [&](const Candidate& a, const Candidate& b) {
    switch (objective) {
      case Objective::kCost:
        return a.cost_per_hour != b.cost_per_hour ? a.cost_per_hour < b.cost_per_hour
                                                  : a.power < b.power;
      case Objective::kPower:
        return a.power != b.power ? a.power < b.power : a.cost_per_hour < b.cost_per_hour;
      case Objective::kThroughput:
        return a.rate != b.rate ? a.rate > b.rate : a.cost_per_hour < b.cost_per_hour;
    }
    return false;
  };
  std::sort(result.feasible.begin(), result.feasible.end(), better);
  for (const Candidate& c : result.feasible) {
    const bool dominated = std::any_of(result.feasible.begin(), result.feasible.end(),
                                       [&](const Candidate& o) { return dominates(o, c); });
    const bool dup =
        std::any_of(result.pareto.begin(), result.pareto.end(), [&](const Candidate& o) {
          return o.design == c.design && o.size.prompt == c.size.prompt &&
                 o.size.token == c.size.token;
        });
    if (!dominated && !dup) result.pareto.push_back(c);
    const bool seen = std::any_of(result.best_per_design.begin(), result.best_per_design.end(),
                                  [&](const Candidate& o) { return o.design == c.design; });
    if (!seen) result.best_per_design.push_back(c);
  }
  if (!result.feasible.empty()) result.best = result.feasible.front();
  return result;
}

std::string pools_yaml(const Candidate& c, const std::string& comment) {
  const auto [pt, tt] = machine_types(c.design);
  std::ostringstream y;
  y << "# " << comment << "\n";
  y << "# Each replica is one instance of the profile's machine (gpusPerWorker GPUs, the\n"
       "# profile's tensor-parallel size); size pools of other shapes from their own profile.\n";
  y << "pools:\n";
  auto pool = [&](const char* name, const std::string& type, int n) {
    auto m = machine_spec(type);
    y << "  " << name << ":\n";
    y << "    gpuType: " << m->gpu_type << "\n";
    y << "    replicas: " << n << "\n";
    y << "    minReplicas: 1\n";
    y << "    maxReplicas: " << std::max(n, 2 * n) << "\n";
    y << "    gpusPerWorker: " << m->gpus << "\n";
  };
  if (is_baseline(c.design)) {
    pool("mixed", pt, c.size.prompt + c.size.mixed);
  } else {
    pool("prompt", pt, c.size.prompt);
    pool("token", tt, c.size.token);
    if (c.size.mixed > 0) pool("mixed", tt, c.size.mixed);
  }
  return y.str();
}

}  // namespace splitwise::sim
