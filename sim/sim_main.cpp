// splitwise-sim: replay a trace (or Poisson arrivals at a rate) through one cluster
// design and print latency, SLO attainment, throughput, cost and power.
#include <chrono>
#include <cstdio>

#include "sim/designs.h"
#include "sim/report.h"
#include "sim/search.h"
#include "sim/sim_cli.h"

using namespace splitwise::sim;

int main(int argc, char** argv) {
  CLI::App app{"Splitwise cluster simulator"};
  TraceOptions topt;
  topt.add_to(app);
  std::string design = "splitwise-hh";
  DesignSize size{25, 15, 0};
  double rate = 0, duration = 600, cv = 1;
  uint64_t seed = 1;
  bool find_max = false, tbt_per_token = false;
  std::string csv, svg, prompt_machine, token_machine, reference_machine = "a100";
  app.add_option("--design", design,
                 "baseline-a100, baseline-h100, splitwise-aa, splitwise-hh, splitwise-ha, "
                 "splitwise-hhcap")
      ->capture_default_str();
  app.add_option("--prompt", size.prompt, "Prompt machines (baseline: all machines)")
      ->capture_default_str();
  app.add_option("--token", size.token, "Token machines")->capture_default_str();
  app.add_option("--mixed", size.mixed, "Mixed overflow machines")->capture_default_str();
  app.add_option("--rate", rate, "Poisson arrivals at this rate (req/s) with the trace's lengths");
  app.add_option("--duration", duration, "Seconds of arrivals with --rate")->capture_default_str();
  app.add_option("--cv", cv, "Inter-arrival coefficient of variation with --rate (1: Poisson)");
  app.add_option("--seed", seed, "Random seed for --rate");
  app.add_flag("--find-max-rate", find_max, "Search the highest --rate at which every SLO holds");
  app.add_flag("--tbt-per-token", tbt_per_token,
               "Judge the TBT SLOs on every token's gap, not on each request's mean gap");
  app.add_option(
      "--prompt-machine", prompt_machine,
      "Machine type of the prompt pool (a100, h100, h100cap, cpu), instead of the design's");
  app.add_option("--token-machine", token_machine,
                 "Machine type of the token (and mixed) pool, instead of the design's");
  app.add_option("--reference", reference_machine,
                 "Machine whose batch-1 times the slowdown SLOs are relative to")
      ->capture_default_str();
  app.add_option("--csv", csv, "Write one row per request here");
  app.add_option("--svg", svg, "Write latency over time here");
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const splitwise::Status& st) {
    std::fprintf(stderr, "splitwise-sim: %s\n", st.message().c_str());
    return 1;
  };
  auto model = model_spec(topt.model);
  if (!model.ok()) return fail(model.status());
  ProfileSet profiles(topt.profile_path(), *model);
  auto spec = prompt_machine.empty() && token_machine.empty()
                  ? make_design(design, size, profiles)
                  : make_cluster(prompt_machine, size.prompt,
                                 token_machine.empty() ? prompt_machine : token_machine, size.token,
                                 token_machine.empty() ? prompt_machine : token_machine, size.mixed,
                                 profiles);
  if (!spec.ok()) return fail(spec.status());
  // The paper's SLOs are relative to a DGX-A100 running the request alone.
  auto reference = profiles.get(reference_machine);
  if (!reference.ok()) return fail(reference.status());
  auto lengths = topt.load();
  if (!lengths.ok()) return fail(lengths.status());
  SloSpec slo;
  slo.tbt_per_token = tbt_per_token;

  const auto t0 = std::chrono::steady_clock::now();
  if (find_max) {
    RateSearch s{duration, cv, seed, rate > 0 ? rate : 1, 0.02};
    const RateResult r = max_rate_meeting_slo(*spec, *lengths, **reference, slo, s);
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s %s on %s: max rate with every SLO met: %.2f req/s (%d probes, %.2f s)\n",
                design.c_str(), topt.model.c_str(), topt.trace.c_str(), r.max_rate, r.probes, wall);
    if (r.max_rate > 0) std::printf("%s", format_report(r.at_max).c_str());
    return 0;
  }
  std::vector<Request> trace = *lengths;
  if (rate > 0) trace = generate({rate, duration, cv, seed}, *lengths);
  const SimRun run = simulate(*spec, trace);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const Report rep =
      summarize(run.records, run.machines, *spec, **reference, slo, run.end_s, &run.token_gaps);
  std::printf("%s, %s, %zu requests over %.0f s: simulated in %.3f s wall (%lld events)\n",
              design.c_str(), topt.model.c_str(), trace.size(),
              trace.empty() ? 0.0 : trace.back().arrival_s, wall,
              static_cast<long long>(run.events));
  std::printf("%s", format_report(rep).c_str());
  if (!csv.empty())
    if (auto st = write_requests_csv(csv, run.records); !st.ok()) return fail(st);
  if (!svg.empty())
    if (auto st = write_latency_svg(svg, run.records, std::max(1.0, run.end_s / 60),
                                    design + " " + topt.model + " " + topt.trace);
        !st.ok())
      return fail(st);
  return 0;
}
