// Unit tests of the autoscaler's pieces: spec.autoscaling parsing, the plausibility check
// of an observation, the decision (stabilisation, step, rollout, clamps, budgets) and the
// capacity model. Synthetic performance curves keep them independent of ../shared.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "controller/autoscaler.h"
#include "controller/autoscaling_spec.h"
#include "controller/capacity_model.h"
#include "sim/hardware.h"
#include "sim/perf_model.h"

namespace splitwise::controller {
namespace {

// ---------------------------------------------------------------------------------------
// parse_autoscaling

bool has_field(const std::vector<FieldError>& errors, const std::string& field) {
  for (const auto& e : errors)
    if (e.field == field) return true;
  return false;
}

std::string all(const std::vector<FieldError>& errors) {
  std::string s;
  for (const auto& e : errors) s += e.str() + "; ";
  return s;
}

void expect_defaults(const AutoscalingSpec& s) {
  EXPECT_FALSE(s.enabled);
  EXPECT_DOUBLE_EQ(s.interval_seconds, 30);
  EXPECT_DOUBLE_EQ(s.scale_up_window_seconds, 0);
  EXPECT_DOUBLE_EQ(s.scale_down_window_seconds, 300);
  EXPECT_EQ(s.max_step, 4);
  EXPECT_DOUBLE_EQ(s.target_utilization, 0.7);
  EXPECT_EQ(s.budget_gpus, 0);
  EXPECT_DOUBLE_EQ(s.budget_cost_per_hour, 0);
  EXPECT_DOUBLE_EQ(s.budget_kw, 0);
  EXPECT_TRUE(s.prometheus_url.empty());
  EXPECT_TRUE(s.router_metrics_url.empty());
  EXPECT_TRUE(s.profile_path.empty());
  EXPECT_TRUE(s.profile_model.empty());
}

TEST(ParseAutoscaling, NullIsDisabledWithDefaults) {
  std::vector<FieldError> errors;
  auto r = parse_autoscaling(Json(), &errors);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(errors.empty()) << all(errors);
  expect_defaults(*r);
}

TEST(ParseAutoscaling, EmptyObjectGivesDefaults) {
  std::vector<FieldError> errors;
  auto r = parse_autoscaling(Json::object(), &errors);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(errors.empty()) << all(errors);
  expect_defaults(*r);
}

TEST(ParseAutoscaling, ReadsEveryField) {
  const Json a = Json::parse(R"({
    "enabled": true, "intervalSeconds": 15, "scaleUpStabilizationSeconds": 60,
    "scaleDownStabilizationSeconds": 600, "maxStep": 2, "targetUtilization": 1,
    "budget": {"gpus": 64, "costPerHour": 250.5, "kW": 40},
    "metrics": {"prometheusURL": "http://prom:9090", "routerMetricsURL": "http://r/metrics"},
    "profile": {"path": "/profiles/perf_model.csv", "model": "llama2-70b"}})");
  std::vector<FieldError> errors;
  auto r = parse_autoscaling(a, &errors);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(errors.empty()) << all(errors);
  EXPECT_TRUE(r->enabled);
  EXPECT_DOUBLE_EQ(r->interval_seconds, 15);
  EXPECT_DOUBLE_EQ(r->scale_up_window_seconds, 60);
  EXPECT_DOUBLE_EQ(r->scale_down_window_seconds, 600);
  EXPECT_EQ(r->max_step, 2);
  EXPECT_DOUBLE_EQ(r->target_utilization, 1);
  EXPECT_EQ(r->budget_gpus, 64);
  EXPECT_DOUBLE_EQ(r->budget_cost_per_hour, 250.5);
  EXPECT_DOUBLE_EQ(r->budget_kw, 40);
  EXPECT_EQ(r->prometheus_url, "http://prom:9090");
  EXPECT_EQ(r->router_metrics_url, "http://r/metrics");
  EXPECT_EQ(r->profile_path, "/profiles/perf_model.csv");
  EXPECT_EQ(r->profile_model, "llama2-70b");
}

TEST(ParseAutoscaling, NotAnObjectIsAnError) {
  for (const char* text : {"5", "\"on\"", "[1]", "true"}) {
    SCOPED_TRACE(text);
    std::vector<FieldError> errors;
    auto r = parse_autoscaling(Json::parse(text), &errors);
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(has_field(errors, "spec.autoscaling")) << all(errors);
  }
}

TEST(ParseAutoscaling, EachBadFieldIsNamed) {
  struct Case {
    const char* json;
    const char* field;
  };
  const std::vector<Case> cases = {
      {R"({"enabled": "yes"})", "enabled"},
      {R"({"enabled": 1})", "enabled"},
      {R"({"intervalSeconds": "30"})", "intervalSeconds"},
      {R"({"intervalSeconds": 0.5})", "intervalSeconds"},
      {R"({"intervalSeconds": 0})", "intervalSeconds"},
      {R"({"intervalSeconds": -30})", "intervalSeconds"},
      {R"({"scaleUpStabilizationSeconds": "0"})", "scaleUpStabilizationSeconds"},
      {R"({"scaleUpStabilizationSeconds": -1})", "scaleUpStabilizationSeconds"},
      {R"({"scaleDownStabilizationSeconds": true})", "scaleDownStabilizationSeconds"},
      {R"({"scaleDownStabilizationSeconds": -300})", "scaleDownStabilizationSeconds"},
      {R"({"maxStep": "4"})", "maxStep"},
      {R"({"maxStep": 0})", "maxStep"},
      {R"({"maxStep": -2})", "maxStep"},
      {R"({"targetUtilization": "0.7"})", "targetUtilization"},
      {R"({"targetUtilization": 0})", "targetUtilization"},
      {R"({"targetUtilization": -0.5})", "targetUtilization"},
      {R"({"targetUtilization": 1.01})", "targetUtilization"},
      {R"({"targetUtilization": 70})", "targetUtilization"},
      {R"({"budget": 64})", "budget"},
      {R"({"budget": {"gpus": 0}})", "budget.gpus"},
      {R"({"budget": {"gpus": -8}})", "budget.gpus"},
      {R"({"budget": {"gpus": "64"}})", "budget.gpus"},
      {R"({"budget": {"costPerHour": 0}})", "budget.costPerHour"},
      {R"({"budget": {"costPerHour": -1.5}})", "budget.costPerHour"},
      {R"({"budget": {"costPerHour": null}})", "budget.costPerHour"},
      {R"({"budget": {"kW": 0}})", "budget.kW"},
      {R"({"budget": {"kW": -40}})", "budget.kW"},
      {R"({"budget": {"kW": [40]}})", "budget.kW"},
      {R"({"metrics": "http://prom"})", "metrics"},
      {R"({"metrics": {"prometheusURL": 9090}})", "metrics.prometheusURL"},
      {R"({"metrics": {"routerMetricsURL": false}})", "metrics.routerMetricsURL"},
      {R"({"profile": "perf_model.csv"})", "profile"},
      {R"({"profile": {"path": 1, "model": "m"}})", "profile.path"},
      {R"({"profile": {"path": "p.csv", "model": {}}})", "profile.model"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.json);
    std::vector<FieldError> errors;
    auto r = parse_autoscaling(Json::parse(c.json), &errors);
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(has_field(errors, std::string("spec.autoscaling.") + c.field)) << all(errors);
  }
}

TEST(ParseAutoscaling, ReportsEveryBadFieldAtOnce) {
  std::vector<FieldError> errors = {{"spec.pools.prompt.replicas", "earlier error"}};
  auto r = parse_autoscaling(
      Json::parse(R"({"maxStep": 0, "targetUtilization": 2, "budget": {"kW": -1}})"), &errors);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(has_field(errors, "spec.pools.prompt.replicas"));  // appended, not replaced
  EXPECT_TRUE(has_field(errors, "spec.autoscaling.maxStep")) << all(errors);
  EXPECT_TRUE(has_field(errors, "spec.autoscaling.targetUtilization")) << all(errors);
  EXPECT_TRUE(has_field(errors, "spec.autoscaling.budget.kW")) << all(errors);
}

TEST(ParseAutoscaling, EnabledNeedsProfilePathAndModel) {
  for (const char* text : {R"({"enabled": true})", R"({"enabled": true, "profile": {}})",
                           R"({"enabled": true, "profile": {"path": "p.csv"}})",
                           R"({"enabled": true, "profile": {"model": "llama2-70b"}})",
                           R"({"enabled": true, "profile": {"path": "", "model": "m"}})"}) {
    SCOPED_TRACE(text);
    std::vector<FieldError> errors;
    auto r = parse_autoscaling(Json::parse(text), &errors);
    EXPECT_FALSE(r.ok());
    bool named = false;
    for (const auto& e : errors) named |= e.field.rfind("spec.autoscaling.profile", 0) == 0;
    EXPECT_TRUE(named) << all(errors);
  }
  // Disabled, the profile is not needed; enabled with both, it parses.
  std::vector<FieldError> errors;
  EXPECT_TRUE(parse_autoscaling(Json::parse(R"({"enabled": false})"), &errors).ok());
  auto r = parse_autoscaling(
      Json::parse(R"({"enabled": true, "profile": {"path": "p.csv", "model": "m"}})"), &errors);
  ASSERT_TRUE(r.ok()) << all(errors);
  EXPECT_TRUE(r->enabled);
  EXPECT_TRUE(errors.empty()) << all(errors);
}

// Integer fields (maxStep, budget.gpus) given as fractions: the rest of the spec rejects
// them ("an integer"); here a positive GPU budget of 0.5 would silently become no budget.
TEST(ParseAutoscaling, FractionalIntegerFieldsAreRejected) {
  {
    std::vector<FieldError> errors;
    auto r = parse_autoscaling(Json::parse(R"({"budget": {"gpus": 0.5}})"), &errors);
    EXPECT_FALSE(r.ok() && r->budget_gpus == 0)
        << "a positive GPU budget was accepted and turned into no budget at all";
    if (!r.ok()) {
      EXPECT_TRUE(has_field(errors, "spec.autoscaling.budget.gpus")) << all(errors);
    }
  }
  {
    std::vector<FieldError> errors;
    auto r = parse_autoscaling(Json::parse(R"({"maxStep": 2.5})"), &errors);
    EXPECT_FALSE(r.ok()) << "maxStep 2.5 accepted as " << r->max_step;
    EXPECT_TRUE(has_field(errors, "spec.autoscaling.maxStep")) << all(errors);
  }
}

// ---------------------------------------------------------------------------------------
// plausible()

TEST(Plausible, AcceptsZeroTrafficAndOrdinaryLoad) {
  std::string why;
  EXPECT_TRUE(plausible({0, 0, 0}, &why)) << why;
  EXPECT_TRUE(plausible({2.5, 1000, 250}, &why)) << why;
  EXPECT_TRUE(plausible({0, 1000, 250}, &why)) << why;
}

TEST(Plausible, RejectsNonFiniteOrNegativeWithAReason) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<LoadObservation> bad = {
      {nan, 1000, 250}, {inf, 1000, 250}, {-inf, 1000, 250}, {-1, 1000, 250}, {2, nan, 250},
      {2, inf, 250},    {2, -5, 250},     {2, 1000, nan},    {2, 1000, inf},  {2, 1000, -1},
      {0, nan, 0},      {0, 0, -1},       {-0.001, 0, 0},
  };
  for (const auto& l : bad) {
    SCOPED_TRACE(testing::Message()
                 << l.arrival_rate << " " << l.mean_prompt_tokens << " " << l.mean_output_tokens);
    std::string why;
    EXPECT_FALSE(plausible(l, &why));
    EXPECT_FALSE(why.empty());
  }
}

TEST(Plausible, RejectsARateWithZeroLengths) {
  for (const LoadObservation& l :
       {LoadObservation{3, 0, 0}, LoadObservation{3, 0, 200}, LoadObservation{3, 800, 0}}) {
    std::string why;
    EXPECT_FALSE(plausible(l, &why));
    EXPECT_FALSE(why.empty());
  }
}

// ---------------------------------------------------------------------------------------
// Synthetic machines and model

sim::ModelSpec synthetic_model() {
  sim::ModelSpec m;
  m.name = "synthetic-7b";
  m.params = 7e9;
  m.layers = 32;
  m.kv_heads = 8;
  m.head_dim = 128;
  m.bytes_per_element = 2;
  return m;
}

sim::MachineSpec synthetic_machine() {
  sim::MachineSpec m;
  m.name = "synthetic";
  m.hardware = "synthetic";
  m.gpus = 8;
  m.hbm_bytes_per_gpu = 80e9;
  m.hbm_bandwidth_per_gpu = 2e12;
  return m;
}

// Prefill: 2048 tokens in 204.8 ms (10,000 tokens/s per machine). Decode: 20 ms at batch 1,
// 100 ms at batch 401, with `kv_ms_per_token` per token of context beyond 1024 per
// sequence (0: decode time independent of context).
MachineModel synthetic(double kv_ms_per_token) {
  auto perf =
      std::make_shared<sim::PerfModel>(sim::Curve({{1, 5}, {512, 60}, {2048, 204.8}}),
                                       sim::Curve({{1, 20}, {401, 100}}), 1024, kv_ms_per_token);
  return {synthetic_machine(), perf};
}

// ---------------------------------------------------------------------------------------
// Autoscaler::decide

PoolNow pool(int replicas, int min_replicas = 1, int max_replicas = 64) {
  PoolNow p;
  p.replicas = replicas;
  p.ready = replicas;
  p.min_replicas = min_replicas;
  p.max_replicas = max_replicas;
  p.gpus_per_worker = 8;
  return p;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

class AutoscalerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = synthetic_model();
    prompt_ = synthetic(0);
    token_ = synthetic(0);
    targets_.tbt_seconds = 0.1;
    targets_.utilization = 1.0;
    spec_.enabled = true;
    spec_.interval_seconds = 30;
    spec_.scale_up_window_seconds = 0;
    spec_.scale_down_window_seconds = 300;
    spec_.max_step = 4;
  }

  // A load for which the capacity model recommends exactly `np` prompt and `nt` token
  // machines (both >= 1).
  LoadObservation load_for(int np, int nt) {
    const PoolNeed probe = needed_machines({1, 1000, 101}, prompt_, token_, model_, targets_);
    const double rate = 100;
    LoadObservation l;
    l.arrival_rate = rate;
    l.mean_prompt_tokens = (np - 0.5) * probe.prompt_capacity * targets_.utilization / rate;
    l.mean_output_tokens = 1 + (nt - 0.5) * probe.token_capacity * targets_.utilization / rate;
    const PoolNeed need = needed_machines(l, prompt_, token_, model_, targets_);
    EXPECT_EQ(need.prompt, np);
    EXPECT_EQ(need.token, nt);
    return l;
  }

  Decision decide(double now, const LoadObservation& load,
                  const std::map<std::string, PoolNow>& p) {
    return as_.decide(now, spec_, &load, "", p, prompt_, token_, model_, targets_);
  }
  // Only the prompt pool, recommended `rec` machines.
  PoolDecision prompt_only(double now, int rec, const PoolNow& p) {
    const Decision d = decide(now, load_for(rec, 1), {{"prompt", p}});
    EXPECT_TRUE(d.observed);
    EXPECT_EQ(d.pools.at("prompt").recommended, rec);
    return d.pools.at("prompt");
  }

  sim::ModelSpec model_;
  MachineModel prompt_, token_;
  CapacityTargets targets_;
  AutoscalingSpec spec_;
  Autoscaler as_;
};

TEST_F(AutoscalerTest, SyntheticLoadsGiveTheRequestedRecommendations) {
  for (int np : {1, 2, 5, 17})
    for (int nt : {1, 3, 9}) {
      SCOPED_TRACE(testing::Message() << np << " " << nt);
      load_for(np, nt);
    }
}

TEST_F(AutoscalerTest, NoMetricsHoldsEveryPool) {
  const std::map<std::string, PoolNow> pools{{"prompt", pool(5)}, {"token", pool(7)}};
  const Decision d = as_.decide(100, spec_, nullptr, "prometheus: connection refused", pools,
                                prompt_, token_, model_, targets_);
  EXPECT_FALSE(d.observed);
  EXPECT_FALSE(d.limited());
  EXPECT_TRUE(contains(d.observation, "metrics unavailable")) << d.observation;
  EXPECT_TRUE(contains(d.observation, "connection refused")) << d.observation;
  ASSERT_EQ(d.pools.size(), 2u);
  EXPECT_EQ(d.pools.at("prompt").replicas, 5);
  EXPECT_EQ(d.pools.at("token").replicas, 7);
  for (const auto& [name, pd] : d.pools) {
    EXPECT_TRUE(contains(pd.reason, "metrics unavailable")) << name << ": " << pd.reason;
    EXPECT_FALSE(pd.limited);
  }
}

TEST_F(AutoscalerTest, GarbageMetricsHoldEveryPool) {
  const std::map<std::string, PoolNow> pools{{"prompt", pool(3)}, {"token", pool(2)}};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const LoadObservation& garbage :
       {LoadObservation{nan, 1000, 200}, LoadObservation{-4, 1000, 200}, LoadObservation{50, 0, 0},
        LoadObservation{5, 1000, std::numeric_limits<double>::infinity()}}) {
    const Decision d =
        as_.decide(100, spec_, &garbage, "", pools, prompt_, token_, model_, targets_);
    EXPECT_FALSE(d.observed);
    EXPECT_TRUE(contains(d.observation, "metrics unavailable")) << d.observation;
    EXPECT_EQ(d.pools.at("prompt").replicas, 3);
    EXPECT_EQ(d.pools.at("token").replicas, 2);
    for (const auto& [name, pd] : d.pools)
      EXPECT_TRUE(contains(pd.reason, "metrics unavailable")) << name << ": " << pd.reason;
  }
}

TEST_F(AutoscalerTest, NoMetricsBringsAnEmptyPoolToItsMinimumNeverZero) {
  const std::map<std::string, PoolNow> pools{{"prompt", pool(0, 0)}, {"token", pool(0, 3)}};
  const Decision d =
      as_.decide(0, spec_, nullptr, "timeout", pools, prompt_, token_, model_, targets_);
  EXPECT_FALSE(d.observed);
  EXPECT_EQ(d.pools.at("prompt").replicas, 1);
  EXPECT_EQ(d.pools.at("token").replicas, 3);
}

TEST_F(AutoscalerTest, ZeroTrafficNeverScalesBelowOne) {
  spec_.max_step = 100;
  const LoadObservation idle{0, 0, 0};
  std::map<std::string, PoolNow> pools{{"prompt", pool(6, 0)}, {"token", pool(0, 0)}};
  for (double t = 0; t <= 900; t += 30) {
    const Decision d = decide(t, idle, pools);
    ASSERT_TRUE(d.observed) << d.observation;
    for (auto& [name, p] : pools) {
      const PoolDecision& pd = d.pools.at(name);
      EXPECT_EQ(pd.recommended, 0) << name;
      EXPECT_GE(pd.replicas, 1) << name << " at " << t << ": " << pd.reason;
      p.replicas = p.ready = pd.replicas;
    }
  }
  EXPECT_EQ(pools.at("prompt").replicas, 1);  // shrunk, after the window, to one
  EXPECT_EQ(pools.at("token").replicas, 1);
}

TEST_F(AutoscalerTest, ScaleUpIsImmediateButBoundedByMaxStep) {
  PoolNow p = pool(2);
  PoolDecision pd = prompt_only(0, 11, p);  // the very first look of a fresh autoscaler
  EXPECT_EQ(pd.replicas, 6);
  EXPECT_FALSE(pd.limited);
  p.replicas = p.ready = pd.replicas;
  pd = prompt_only(30, 11, p);
  EXPECT_EQ(pd.replicas, 10);
  p.replicas = p.ready = pd.replicas;
  pd = prompt_only(60, 11, p);
  EXPECT_EQ(pd.replicas, 11);
  p.replicas = p.ready = pd.replicas;
  pd = prompt_only(90, 11, p);
  EXPECT_EQ(pd.replicas, 11);
}

TEST_F(AutoscalerTest, ScaleDownWaitsForAFullWindowThenStepsByMaxStep) {
  PoolNow p = pool(12);
  for (double t = 0; t < 300; t += 30) {
    const PoolDecision pd = prompt_only(t, 2, p);
    EXPECT_EQ(pd.replicas, 12) << "shrunk at " << t << " s before a whole window: " << pd.reason;
  }
  PoolDecision pd = prompt_only(300, 2, p);
  EXPECT_EQ(pd.replicas, 8) << pd.reason;
  p.replicas = p.ready = pd.replicas;
  pd = prompt_only(330, 2, p);
  EXPECT_EQ(pd.replicas, 4) << pd.reason;
  p.replicas = p.ready = pd.replicas;
  pd = prompt_only(360, 2, p);
  EXPECT_EQ(pd.replicas, 2) << pd.reason;
}

TEST_F(AutoscalerTest, RestartedAutoscalerDoesNotShrinkOnItsFirstLooks) {
  // A fresh Autoscaler (an operator restart) first decides at t = 5000.
  PoolNow p = pool(10);
  for (double t = 5000; t < 5300; t += 30)
    EXPECT_EQ(prompt_only(t, 1, p).replicas, 10) << "at " << t;
  EXPECT_EQ(prompt_only(5300, 1, p).replicas, 6);
}

TEST_F(AutoscalerTest, ScaleDownGoesToTheHighestRecommendationInTheWindow) {
  spec_.max_step = 100;
  PoolNow p = pool(12);
  // Recommendations over 0..300 s: 3, with one 7 at 120 s and a 5 at 240 s.
  for (double t = 0; t <= 300; t += 30) {
    const int rec = t == 120 ? 7 : t == 240 ? 5 : 3;
    const PoolDecision pd = prompt_only(t, rec, p);
    if (t < 300) {
      EXPECT_EQ(pd.replicas, 12) << "at " << t;
    }
    if (t == 300) {
      EXPECT_EQ(pd.replicas, 7) << pd.reason;
      p.replicas = p.ready = pd.replicas;
    }
  }
  // 7 leaves the window after 420 s; 5 after 540 s.
  PoolDecision pd = prompt_only(420, 3, p);
  EXPECT_EQ(pd.replicas, 7) << pd.reason;
  pd = prompt_only(450, 3, p);
  EXPECT_EQ(pd.replicas, 5) << pd.reason;
  p.replicas = p.ready = pd.replicas;
  pd = prompt_only(570, 3, p);
  EXPECT_EQ(pd.replicas, 3) << pd.reason;
}

TEST_F(AutoscalerTest, AShortDipDoesNotShrinkThePool) {
  PoolNow p = pool(10);
  double t = 0;
  for (; t <= 600; t += 30) EXPECT_EQ(prompt_only(t, 10, p).replicas, 10);
  for (int i = 0; i < 3; ++i, t += 30)  // 90 s of little load
    EXPECT_EQ(prompt_only(t, 2, p).replicas, 10) << "shrunk on a dip at " << t;
  for (; t <= 1200; t += 30) EXPECT_EQ(prompt_only(t, 10, p).replicas, 10) << "at " << t;
}

TEST_F(AutoscalerTest, RolloutHoldsGrowthButNotShrinkingAndIsReportedWhenItLasts) {
  PoolNow p = pool(4);
  p.ready = 2;
  PoolDecision pd = prompt_only(0, 12, p);
  EXPECT_EQ(pd.replicas, 4) << "no growth on top of pods not yet ready";
  EXPECT_TRUE(contains(pd.reason, "rollout in progress")) << pd.reason;
  EXPECT_TRUE(contains(pd.reason, "2 of 4")) << pd.reason;
  EXPECT_FALSE(pd.limited) << "a fresh rollout is not a limit yet";
  // Still not ready after kNotReadyLimitSeconds: limited, with its own reason.
  pd = prompt_only(kNotReadyLimitSeconds, 12, p);
  EXPECT_EQ(pd.replicas, 4);
  EXPECT_TRUE(pd.limited);
  EXPECT_EQ(pd.limit, "ReplicasNotReady");
  EXPECT_TRUE(contains(pd.reason, "pods pending or failing")) << pd.reason;

  // Shrinking stays allowed during a rollout, once the scale-down window has passed, so
  // a pool whose extra pods never start is not stuck large.
  Autoscaler fresh;
  PoolNow big = pool(12);
  big.ready = 11;
  const LoadObservation low = load_for(1, 1);
  int replicas = 12;
  for (double t = 0; t <= 600; t += 30) {
    big.replicas = replicas;
    const Decision d =
        fresh.decide(t, spec_, &low, "", {{"prompt", big}}, prompt_, token_, model_, targets_);
    replicas = d.pools.at("prompt").replicas;
    if (t < spec_.scale_down_window_seconds) {
      EXPECT_EQ(replicas, 12) << "at " << t;
    }
  }
  EXPECT_LT(replicas, 12);
}

TEST_F(AutoscalerTest, MaxReplicasClampsAndSetsLimited) {
  spec_.max_step = 100;
  PoolDecision pd = prompt_only(0, 20, pool(2, 1, 5));
  EXPECT_EQ(pd.recommended, 20);
  EXPECT_EQ(pd.replicas, 5);
  EXPECT_TRUE(pd.limited);
  EXPECT_TRUE(contains(pd.reason, "maxReplicas")) << pd.reason;
  // Unlimited when the recommendation fits.
  Autoscaler fresh;
  const LoadObservation fits = load_for(4, 1);
  const Decision d = fresh.decide(0, spec_, &fits, "", {{"prompt", pool(2, 1, 5)}}, prompt_, token_,
                                  model_, targets_);
  EXPECT_EQ(d.pools.at("prompt").replicas, 4);
  EXPECT_FALSE(d.pools.at("prompt").limited);
  EXPECT_FALSE(d.limited());
}

TEST_F(AutoscalerTest, MinReplicasRaisesALowRecommendation) {
  spec_.max_step = 100;
  PoolNow p = pool(3, 3);
  for (double t = 0; t <= 600; t += 30) EXPECT_EQ(prompt_only(t, 1, p).replicas, 3);
  EXPECT_EQ(prompt_only(630, 1, pool(0, 3)).replicas, 3);
}

// Both pools at 2 replicas of 8 GPUs; the load recommends 6 prompt and 4 token machines.
class AutoscalerBudgetTest : public AutoscalerTest {
 protected:
  void SetUp() override {
    AutoscalerTest::SetUp();
    spec_.max_step = 100;
  }
  std::map<std::string, PoolNow> pools(int prompt, int token) const {
    PoolNow p = pool(prompt), t = pool(token);
    p.cost_per_gpu_hour = 4, t.cost_per_gpu_hour = 2;
    p.kw_per_gpu = t.kw_per_gpu = 0.7;
    return {{"prompt", p}, {"token", t}};
  }
};

TEST_F(AutoscalerBudgetTest, WithoutABudgetBothPoolsGrow) {
  const Decision d = decide(0, load_for(6, 4), pools(2, 2));
  EXPECT_EQ(d.pools.at("prompt").replicas, 6);
  EXPECT_EQ(d.pools.at("token").replicas, 4);
  EXPECT_FALSE(d.limited());
  EXPECT_TRUE(d.limited_reason.empty());
}

TEST_F(AutoscalerBudgetTest, GpuBudgetTrimsTheLargestIncreaseFirst) {
  spec_.budget_gpus = 64;  // 8 machines
  const Decision d = decide(0, load_for(6, 4), pools(2, 2));
  // 6 + 4 = 10 machines: prompt's increase (4) is the largest, trimmed to 4 (+2, as token).
  EXPECT_EQ(d.pools.at("prompt").replicas, 4);
  EXPECT_EQ(d.pools.at("token").replicas, 4);
  EXPECT_EQ(d.pools.at("prompt").recommended, 6);
  EXPECT_TRUE(d.pools.at("prompt").limited);
  EXPECT_FALSE(d.pools.at("token").limited);
  EXPECT_TRUE(d.limited());
  EXPECT_TRUE(contains(d.limited_reason, "GPU budget")) << d.limited_reason;
  EXPECT_TRUE(contains(d.limited_reason, "64")) << d.limited_reason;
  EXPECT_TRUE(contains(d.pools.at("prompt").reason, "GPU budget")) << d.pools.at("prompt").reason;
}

TEST_F(AutoscalerBudgetTest, CostBudgetTrims) {
  // Now 2 x 8 x $4 + 2 x 8 x $2 = $96/h; the recommendation would cost $256/h.
  spec_.budget_cost_per_hour = 200;
  const Decision d = decide(0, load_for(6, 4), pools(2, 2));
  EXPECT_EQ(d.pools.at("prompt").replicas, 4);  // $128 + $64 = $192
  EXPECT_EQ(d.pools.at("token").replicas, 4);
  EXPECT_TRUE(d.pools.at("prompt").limited);
  EXPECT_TRUE(contains(d.limited_reason, "cost budget")) << d.limited_reason;
  EXPECT_TRUE(contains(d.limited_reason, "200")) << d.limited_reason;
}

TEST_F(AutoscalerBudgetTest, PowerBudgetTrims) {
  spec_.budget_kw = 45;  // 64 GPUs are 44.8 kW, 72 are 50.4 kW
  const Decision d = decide(0, load_for(6, 4), pools(2, 2));
  EXPECT_EQ(d.pools.at("prompt").replicas, 4);
  EXPECT_EQ(d.pools.at("token").replicas, 4);
  EXPECT_TRUE(d.pools.at("prompt").limited);
  EXPECT_TRUE(d.limited());
  EXPECT_TRUE(contains(d.limited_reason, "kW")) << d.limited_reason;
  EXPECT_TRUE(contains(d.limited_reason, "45")) << d.limited_reason;
}

TEST_F(AutoscalerBudgetTest, TrimsBothPoolsWhenOneIsNotEnough) {
  spec_.budget_gpus = 40;  // 5 machines: one more than the 4 running
  const Decision d = decide(0, load_for(6, 4), pools(2, 2));
  const int p = d.pools.at("prompt").replicas, t = d.pools.at("token").replicas;
  EXPECT_EQ(p + t, 5);
  EXPECT_GE(p, 2);
  EXPECT_GE(t, 2);
  EXPECT_TRUE(d.pools.at("prompt").limited);
  EXPECT_TRUE(d.pools.at("token").limited || t == 2);
}

TEST_F(AutoscalerBudgetTest, APoolAlreadyOverBudgetIsNotShrunkByIt) {
  spec_.budget_gpus = 64;
  // Running 6 + 4 = 80 GPUs (the budget was lowered); the load wants the same.
  Decision d = decide(0, load_for(6, 4), pools(6, 4));
  EXPECT_EQ(d.pools.at("prompt").replicas, 6);
  EXPECT_EQ(d.pools.at("token").replicas, 4);
  // Wanting more: the increase is refused, but nothing goes below what runs.
  Autoscaler fresh;
  const LoadObservation more = load_for(9, 5);
  d = fresh.decide(0, spec_, &more, "", pools(6, 4), prompt_, token_, model_, targets_);
  EXPECT_EQ(d.pools.at("prompt").replicas, 6);
  EXPECT_EQ(d.pools.at("token").replicas, 4);
  EXPECT_TRUE(d.limited());
  EXPECT_TRUE(contains(d.limited_reason, "GPU budget")) << d.limited_reason;
}

// A pool at 0 replicas is raised to its minimum (at least 1); the budget trims increases,
// but must not take that replica away again and leave the pool empty.
TEST_F(AutoscalerBudgetTest, BudgetNeverLeavesAPoolEmpty) {
  spec_.budget_gpus = 64;
  const Decision d = decide(0, load_for(1, 8), pools(0, 8));  // token alone fills the budget
  EXPECT_GE(d.pools.at("prompt").replicas, 1) << d.pools.at("prompt").reason;
  EXPECT_EQ(d.pools.at("token").replicas, 8);
}

// ---------------------------------------------------------------------------------------
// needed_machines

class CapacityModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = synthetic_model();
    prompt_ = synthetic(5e-4);
    token_ = synthetic(5e-4);
    targets_.tbt_seconds = 0.1;
    targets_.utilization = 0.7;
  }
  PoolNeed need(const LoadObservation& l) const {
    return needed_machines(l, prompt_, token_, model_, targets_);
  }
  sim::ModelSpec model_;
  MachineModel prompt_, token_;
  CapacityTargets targets_;
};

TEST_F(CapacityModelTest, NoLoadNeedsNoMachines) {
  const PoolNeed n = need({0, 0, 0});
  EXPECT_EQ(n.prompt, 0);
  EXPECT_EQ(n.token, 0);
  EXPECT_GT(n.prompt_capacity, 0);
  EXPECT_GT(n.token_capacity, 0);
  EXPECT_GE(n.token_batch, 1);
}

TEST_F(CapacityModelTest, PromptCapacityIsFullBatchTokenRate) {
  const PoolNeed n = need({10, 1000, 200});
  EXPECT_NEAR(n.prompt_capacity, 2048 / 0.2048, 1e-6);
  EXPECT_EQ(n.prompt, static_cast<int>(std::ceil(10 * 1000 / (n.prompt_capacity * 0.7))));
  EXPECT_EQ(n.token, static_cast<int>(std::ceil(10 * 199 / (n.token_capacity * 0.7))));
  // The assumed batch meets the TBT target (with its 80% margin), one more would not.
  const double ctx = 1000 + 200 / 2.0;
  const auto& perf = *token_.perf;
  EXPECT_LE(perf.decode_ms(n.token_batch, static_cast<int64_t>(n.token_batch * ctx)), 80 + 1e-9);
  EXPECT_GT(perf.decode_ms(n.token_batch + 1, static_cast<int64_t>((n.token_batch + 1) * ctx)), 80);
}

TEST_F(CapacityModelTest, MoreLoadNeverNeedsFewerMachines) {
  PoolNeed prev = need({0.1, 1000, 300});
  for (double rate = 0.2; rate <= 200; rate *= 1.3) {
    const PoolNeed n = need({rate, 1000, 300});
    EXPECT_GE(n.prompt, prev.prompt) << rate;
    EXPECT_GE(n.token, prev.token) << rate;
    prev = n;
  }
  EXPECT_GT(prev.prompt, 10);
  EXPECT_GT(prev.token, 10);
  prev = need({20, 10, 300});
  for (double p = 20; p <= 16000; p *= 1.5) {  // longer prompts: more of both
    const PoolNeed n = need({20, p, 300});
    EXPECT_GE(n.prompt, prev.prompt) << p;
    EXPECT_GE(n.token, prev.token) << p;
    EXPECT_LE(n.token_batch, prev.token_batch) << p;
    prev = n;
  }
  prev = need({20, 1000, 2});
  for (double o = 3; o <= 8000; o *= 1.5) {  // longer outputs: more token machines
    const PoolNeed n = need({20, 1000, o});
    EXPECT_EQ(n.prompt, prev.prompt) << o;
    EXPECT_GE(n.token, prev.token) << o;
    prev = n;
  }
}

TEST_F(CapacityModelTest, LowerTbtTargetMeansSmallerBatchAndMoreTokenMachines) {
  const LoadObservation l{30, 1000, 300};
  targets_.tbt_seconds = 0.1;
  const PoolNeed loose = need(l);
  targets_.tbt_seconds = 0.05;
  const PoolNeed tight = need(l);
  EXPECT_LT(tight.token_batch, loose.token_batch);
  EXPECT_LT(tight.token_capacity, loose.token_capacity);
  EXPECT_GT(tight.token, loose.token);
  EXPECT_EQ(tight.prompt, loose.prompt);  // the prompt pool does not depend on TBT
  // A sequence of TBT targets: batch and token machines monotone.
  PoolNeed prev = loose;
  for (double tbt : {0.09, 0.07, 0.05, 0.04, 0.03}) {
    targets_.tbt_seconds = tbt;
    const PoolNeed n = need(l);
    EXPECT_LE(n.token_batch, prev.token_batch) << tbt;
    EXPECT_GE(n.token, prev.token) << tbt;
    prev = n;
  }
  // No target: 1.25 x the batch-1 time; below the batch-1 time no batch meets it, batch 1.
  targets_.tbt_seconds = 0;
  EXPECT_GE(need(l).token_batch, 1);
  targets_.tbt_seconds = 0.001;
  EXPECT_EQ(need(l).token_batch, 1);
}

TEST_F(CapacityModelTest, DoublingTheRateRoughlyDoublesTheNeeds) {
  for (double rate : {5.0, 17.0, 40.0, 120.0}) {
    SCOPED_TRACE(rate);
    const PoolNeed one = need({rate, 1500, 400});
    const PoolNeed two = need({2 * rate, 1500, 400});
    EXPECT_DOUBLE_EQ(one.prompt_capacity, two.prompt_capacity);
    EXPECT_DOUBLE_EQ(one.token_capacity, two.token_capacity);
    EXPECT_EQ(one.token_batch, two.token_batch);
    EXPECT_NEAR(two.prompt, 2 * one.prompt, 1);
    EXPECT_NEAR(two.token, 2 * one.token, 1);
    EXPECT_GE(two.prompt, 2 * one.prompt - 1);
  }
  const PoolNeed a = need({100, 1500, 400}), b = need({200, 1500, 400});
  EXPECT_GT(a.prompt, 10);
  EXPECT_GT(a.token, 10);
  EXPECT_NEAR(static_cast<double>(b.prompt) / a.prompt, 2, 0.1);
  EXPECT_NEAR(static_cast<double>(b.token) / a.token, 2, 0.1);
}

TEST_F(CapacityModelTest, KvMemoryBoundsTheTokenBatch) {
  token_.machine.hbm_bytes_per_gpu = 2.5e9;  // 20 GB, 6 GB left for KV after 14 GB weights
  const LoadObservation l{5, 4000, 1000};
  const PoolNeed n = need(l);
  const double kv_tokens = 0.9 * (8 * 2.5e9 - model_.weight_bytes()) / model_.kv_bytes_per_token();
  EXPECT_LE(n.token_batch, static_cast<int>(kv_tokens / 5000));
  EXPECT_GE(n.token_batch, 1);
}

}  // namespace
}  // namespace splitwise::controller
