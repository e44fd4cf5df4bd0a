// splitwise-plan: pool sizes and machine types for a load and a budget, from simulation.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "sim/planner.h"
#include "sim/sim_cli.h"

using namespace splitwise::sim;

int main(int argc, char** argv) {
  CLI::App app{
      "Splitwise planner: the cheapest, lowest-power or fastest design that meets every SLO"};
  TraceOptions topt;
  topt.add_to(app);
  PlanLoad load;
  load.probe.duration_s = 300;
  PlanBudget budget;
  std::string objective = "cost", out;
  std::vector<std::string> designs = {"baseline-a100", "baseline-h100", "splitwise-aa",
                                      "splitwise-hh",  "splitwise-ha",  "splitwise-hhcap"};
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  app.add_option("--rate", load.rate, "Load to serve, req/s (cost and power objectives)");
  app.add_option("--duration", load.probe.duration_s, "Seconds simulated per candidate")
      ->capture_default_str();
  app.add_option("--cv", load.probe.cv, "Inter-arrival coefficient of variation (1: Poisson)");
  app.add_option("--objective", objective, "cost, power or throughput")->capture_default_str();
  app.add_option("--budget-machines", budget.machines, "At most this many machines");
  app.add_option("--budget-cost", budget.cost_per_hour, "At most this many $ per hour");
  app.add_option("--budget-power", budget.power, "At most this much power (the paper's units)");
  app.add_option("--designs", designs, "Design families to consider")->delimiter(',');
  app.add_option("--threads", threads, "Parallel searches")->capture_default_str();
  app.add_option("--write-pools", out, "Write the best design's spec.pools here (YAML)");
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "splitwise-plan: %s\n", msg.c_str());
    return 1;
  };
  Objective obj;
  if (objective == "cost")
    obj = Objective::kCost;
  else if (objective == "power")
    obj = Objective::kPower;
  else if (objective == "throughput")
    obj = Objective::kThroughput;
  else
    return fail("--objective must be cost, power or throughput, not '" + objective + "'");
  if (obj != Objective::kThroughput && load.rate <= 0)
    return fail("--rate (req/s) is required for the " + objective + " objective");
  if (obj == Objective::kThroughput && budget.machines <= 0 && budget.cost_per_hour <= 0 &&
      budget.power <= 0)
    return fail(
        "the throughput objective needs a budget: --budget-machines, --budget-cost or "
        "--budget-power");
  for (const auto& d : designs) {
    if (!describe(d, {1, 1, 0}).machines || d.find("-") == std::string::npos)
      return fail("unknown design '" + d + "'");
  }
  auto model = model_spec(topt.model);
  if (!model.ok()) return fail(model.status().message());
  auto lengths = topt.load();
  if (!lengths.ok()) return fail(lengths.status().message());
  load.lengths = std::move(*lengths);
  ProfileSet profiles(topt.profile_path(), *model);
  for (const auto& m : machine_names())
    if (auto p = profiles.get(m); !p.ok()) return fail(p.status().message());

  const auto t0 = std::chrono::steady_clock::now();
  const PlanResult r = plan(profiles, load, SloSpec{}, budget, obj, designs, threads);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d simulations in %.1f s on %d threads; %zu feasible designs\n", r.simulations, wall,
              threads, r.feasible.size());
  if (r.feasible.empty()) {
    std::printf("no design meets every SLO within the budget\n");
    return 2;
  }
  auto row = [](const Candidate& c) {
    std::printf("%-16s %6d %6d %8d %10.2f %8.1f %9.2f %8.3f %8.4f\n", c.design.c_str(),
                c.size.prompt, c.size.token, c.machines, c.cost_per_hour, c.power, c.rate,
                c.report.ttft_s.p99, c.report.tbt_s.p99);
  };
  const char* header = "%-16s %6s %6s %8s %10s %8s %9s %8s %8s\n";
  std::printf("\nBest per design (objective: %s)\n", objective.c_str());
  std::printf(header, "design", "prompt", "token", "machines", "$/hour", "power", "req/s",
              "TTFTp99", "TBTp99");
  for (const auto& c : r.best_per_design) row(c);
  std::printf("\nPareto front (cost, power, rate)\n");
  std::printf(header, "design", "prompt", "token", "machines", "$/hour", "power", "req/s",
              "TTFTp99", "TBTp99");
  for (const auto& c : r.pareto) row(c);
  char comment[256];
  std::snprintf(comment, sizeof comment,
                "splitwise-plan: %s, %s, %s trace, %.2f req/s, objective %s", r.best.design.c_str(),
                topt.model.c_str(), topt.trace.c_str(), r.best.rate, objective.c_str());
  const std::string yaml = pools_yaml(r.best, comment);
  std::printf("\n%s", yaml.c_str());
  if (!out.empty()) {
    std::ofstream f(out);
    f << yaml;
    if (!f) return fail("cannot write " + out);
  }
  return 0;
}
