#include "controller/autoscaling_spec.h"

namespace splitwise::controller {

Result<AutoscalingSpec> parse_autoscaling(const Json& a, std::vector<FieldError>* errors) {
  AutoscalingSpec s;
  const size_t before = errors->size();
  if (a.is_null()) return s;
  if (!a.is_object()) {
    errors->push_back({"spec.autoscaling", "must be an object"});
    return Status::error("spec.autoscaling must be an object");
  }
  auto field = [](const char* name) { return std::string("spec.autoscaling.") + name; };
  auto number = [&](const char* name, double& out, double min, bool strict) {
    if (!a.contains(name)) return;
    const Json& v = a[name];
    if (!v.is_number()) {
      errors->push_back({field(name), "must be a number"});
      return;
    }
    const double x = v.get<double>();
    if (strict ? !(x > min) : !(x >= min)) {
      errors->push_back({field(name), std::string("must be ") + (strict ? "> " : ">= ") +
                                          std::to_string(min).substr(0, 4)});
      return;
    }
    out = x;
  };
  auto text = [&](const Json& obj, const char* name, const std::string& path, std::string& out) {
    if (!obj.contains(name)) return;
    if (!obj[name].is_string()) {
      errors->push_back({path, "must be a string"});
      return;
    }
    out = obj[name].get<std::string>();
  };
  if (a.contains("enabled")) {
    if (!a["enabled"].is_boolean())
      errors->push_back({field("enabled"), "must be true or false"});
    else
      s.enabled = a["enabled"].get<bool>();
  }
  number("intervalSeconds", s.interval_seconds, 1, false);
  number("scaleUpStabilizationSeconds", s.scale_up_window_seconds, 0, false);
  number("scaleDownStabilizationSeconds", s.scale_down_window_seconds, 0, false);
  if (a.contains("maxStep")) {
    if (!a["maxStep"].is_number_integer() || a["maxStep"].get<int64_t>() < 1 ||
        a["maxStep"].get<int64_t>() > 1000)
      errors->push_back({field("maxStep"), "must be an integer in [1, 1000]"});
    else
      s.max_step = static_cast<int>(a["maxStep"].get<int64_t>());
  }
  number("targetUtilization", s.target_utilization, 0, true);
  if (s.target_utilization > 1)
    errors->push_back({field("targetUtilization"), "must be in (0, 1]"});
  if (a.contains("budget")) {
    const Json& b = a["budget"];
    if (!b.is_object()) {
      errors->push_back({field("budget"), "must be an object"});
    } else {
      auto bnum = [&](const char* name, double& out) {
        if (!b.contains(name)) return;
        if (!b[name].is_number() || b[name].get<double>() <= 0)
          errors->push_back({field("budget.") + name, "must be a positive number"});
        else
          out = b[name].get<double>();
      };
      if (b.contains("gpus")) {
        if (!b["gpus"].is_number_integer() || b["gpus"].get<int64_t>() <= 0 ||
            b["gpus"].get<int64_t>() > 1'000'000)
          errors->push_back({field("budget.gpus"), "must be an integer in [1, 1000000]"});
        else
          s.budget_gpus = static_cast<int>(b["gpus"].get<int64_t>());
      }
      bnum("costPerHour", s.budget_cost_per_hour);
      bnum("kW", s.budget_kw);
    }
  }
  if (a.contains("metrics")) {
    const Json& m = a["metrics"];
    if (!m.is_object()) {
      errors->push_back({field("metrics"), "must be an object"});
    } else {
      text(m, "prometheusURL", field("metrics.prometheusURL"), s.prometheus_url);
      text(m, "routerMetricsURL", field("metrics.routerMetricsURL"), s.router_metrics_url);
    }
  }
  if (a.contains("profile")) {
    const Json& p = a["profile"];
    if (!p.is_object()) {
      errors->push_back({field("profile"), "must be an object"});
    } else {
      text(p, "path", field("profile.path"), s.profile_path);
      text(p, "model", field("profile.model"), s.profile_model);
    }
  }
  if (s.enabled && (s.profile_path.empty() || s.profile_model.empty()))
    errors->push_back(
        {field("profile"),
         "enabled autoscaling needs profile.path (a perf_model.csv) and profile.model"});
  if (errors->size() != before) return Status::error(errors->at(before).message);
  return s;
}

}  // namespace splitwise::controller
