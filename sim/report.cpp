#include "sim/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <limits>
#include <map>
#include <sstream>

namespace splitwise::sim {

namespace {
std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}
}  // namespace

Percentiles percentiles(std::vector<double> v) {
  Percentiles p;
  if (v.empty()) return p;
  auto at = [&](double q) {
    const size_t k = std::min(v.size() - 1, static_cast<size_t>(std::ceil(q * v.size())) - 1);
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
  };
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  return p;
}

Report summarize(const std::vector<RequestRecord>& records,
                 const std::vector<MachineStats>& machines, const ClusterSpec& spec,
                 const PerfModel& reference, const SloSpec& slo, double end_s,
                 const LogHistogram* token_gaps) {
  Report r;
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::vector<double> ttft, tbt, e2e, ttft_slow, tbt_slow, e2e_slow, tail, ref_tbts;
  int64_t out_tokens = 0;
  for (const RequestRecord& q : records) {
    ++r.requests;
    r.duration_s = std::max(r.duration_s, q.arrival);
    r.preemptions += q.preemptions;
    const double ref_ttft = reference.prompt_ms(q.prompt_tokens) / 1e3;
    const double ref_tbt = reference.decode_ms(1, q.prompt_tokens + q.output_tokens / 2) / 1e3;
    const double ref_e2e = ref_ttft + (q.output_tokens - 1) * ref_tbt;
    ref_tbts.push_back(ref_tbt);
    if (q.rejected) ++r.rejected;
    if (!q.completed()) {
      // Never finished: a miss for every SLO, not a request that disappears.
      ttft_slow.push_back(q.first_token >= 0 ? q.ttft() / ref_ttft : kInf);
      if (q.output_tokens > 1) tbt_slow.push_back(kInf);
      e2e_slow.push_back(kInf);
      continue;
    }
    ++r.completed;
    out_tokens += q.output_tokens;
    ttft.push_back(q.ttft());
    e2e.push_back(q.e2e());
    ttft_slow.push_back(q.ttft() / ref_ttft);
    e2e_slow.push_back(q.e2e() / ref_e2e);
    if (q.output_tokens > 1) {
      tbt.push_back(q.tbt());
      tbt_slow.push_back(q.tbt() / ref_tbt);
    }
    if (q.token_machine >= 0) tail.push_back(q.kv_tail_s);
  }
  r.ttft_s = percentiles(ttft);
  r.tbt_s = percentiles(tbt);
  r.e2e_s = percentiles(e2e);
  r.ttft_slow = percentiles(ttft_slow);
  r.tbt_slow = percentiles(tbt_slow);
  r.e2e_slow = percentiles(e2e_slow);
  r.kv_tail_s = percentiles(tail);
  if (token_gaps != nullptr && token_gaps->total() > 0) {
    r.itl_s = {token_gaps->quantile(0.5), token_gaps->quantile(0.9), token_gaps->quantile(0.99)};
    const double ref = percentiles(ref_tbts).p50;
    r.itl_slow = {r.itl_s.p50 / ref, r.itl_s.p90 / ref, r.itl_s.p99 / ref};
    // Tokens of requests that never finished are not among the gaps: count them as misses.
    if (slo.tbt_per_token && r.completed < r.requests) r.itl_slow.p99 = kInf;
  }
  const double span = std::max(end_s, 1e-9);
  r.throughput_rps = r.completed / span;
  r.output_tokens_per_s = static_cast<double>(out_tokens) / span;

  r.slo_met = r.requests > 0;
  r.slo_verdict = r.requests > 0 ? "ok" : "no requests";
  auto check = [&](const char* name, const Percentiles& got, const std::array<double, 3>& lim) {
    const double v[3] = {got.p50, got.p90, got.p99};
    const char* q[3] = {"p50", "p90", "p99"};
    for (int i = 0; i < 3 && r.slo_met; ++i) {
      if (v[i] > lim[i]) {
        r.slo_met = false;
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s %s slowdown %.2fx > %.2fx", name, q[i], v[i], lim[i]);
        r.slo_verdict = buf;
      }
    }
  };
  check("TTFT", r.ttft_slow, slo.ttft);
  if (slo.tbt_per_token)
    check("TBT (per token)", r.itl_slow, slo.tbt);
  else
    check("TBT", r.tbt_slow, slo.tbt);
  check("E2E", r.e2e_slow, slo.e2e);

  double watt_s = 0;
  for (const MachineStats& m : machines) {
    const double up = std::max(0.0, (m.stopped >= 0 ? m.stopped : end_s) - m.started);
    const MachineSpec& ms = spec.pools[m.pool].machine;
    r.machine_hours += up / 3600;
    r.cost_usd += up / 3600 * ms.cost_per_hour;
    watt_s += up * ms.power;
  }
  r.cost_per_hour = r.cost_usd / (span / 3600);
  r.mean_power = watt_s / span;
  return r;
}

std::string format_report(const Report& r) {
  char buf[1800];
  std::snprintf(buf, sizeof buf,
                "requests %d  completed %d  rejected %d  preemptions %lld\n"
                "throughput %.2f req/s  %.0f output tok/s\n"
                "TTFT  p50 %.3f s  p90 %.3f s  p99 %.3f s   slowdown %.2fx %.2fx %.2fx\n"
                "TBT   p50 %.4f s  p90 %.4f s  p99 %.4f s   slowdown %.2fx %.2fx %.2fx\n"
                "E2E   p50 %.2f s  p90 %.2f s  p99 %.2f s   slowdown %.2fx %.2fx %.2fx\n"
                "token gaps  p50 %.4f s  p90 %.4f s  p99 %.4f s   slowdown %.2fx %.2fx %.2fx\n"
                "KV tail (not overlapped)  p50 %.2f ms  p99 %.2f ms\n"
                "SLOs: %s\n"
                "cost %.2f $/h  power %.1f units  machine-hours %.2f\n",
                r.requests, r.completed, r.rejected, static_cast<long long>(r.preemptions),
                r.throughput_rps, r.output_tokens_per_s, r.ttft_s.p50, r.ttft_s.p90, r.ttft_s.p99,
                r.ttft_slow.p50, r.ttft_slow.p90, r.ttft_slow.p99, r.tbt_s.p50, r.tbt_s.p90,
                r.tbt_s.p99, r.tbt_slow.p50, r.tbt_slow.p90, r.tbt_slow.p99, r.e2e_s.p50,
                r.e2e_s.p90, r.e2e_s.p99, r.e2e_slow.p50, r.e2e_slow.p90, r.e2e_slow.p99,
                r.itl_s.p50, r.itl_s.p90, r.itl_s.p99, r.itl_slow.p50, r.itl_slow.p90,
                r.itl_slow.p99, r.kv_tail_s.p50 * 1e3, r.kv_tail_s.p99 * 1e3,
                r.slo_met ? "all met" : ("missed: " + r.slo_verdict).c_str(), r.cost_per_hour,
                r.mean_power, r.machine_hours);
  return buf;
}

Status write_requests_csv(const std::filesystem::path& path,
                          const std::vector<RequestRecord>& records) {
  std::ofstream out(path);
  if (!out) return Status::error("cannot write " + path.string());
  out << "id,arrival_s,prompt_tokens,output_tokens,ttft_s,tbt_s,e2e_s,prompt_machine,"
         "token_machine,kv_tail_s,preemptions,status\n";
  char buf[256];
  for (size_t i = 0; i < records.size(); ++i) {
    const RequestRecord& q = records[i];
    const char* status = q.rejected ? "rejected" : q.completed() ? "ok" : "unfinished";
    std::snprintf(buf, sizeof buf, "%zu,%.6f,%d,%d,%.6f,%.6f,%.6f,%d,%d,%.6f,%d,%s\n", i, q.arrival,
                  q.prompt_tokens, q.output_tokens, q.first_token >= 0 ? q.ttft() : -1.0,
                  q.completed() ? q.tbt() : -1.0, q.completed() ? q.e2e() : -1.0, q.prompt_machine,
                  q.token_machine, q.kv_tail_s, q.preemptions, status);
    out << buf;
  }
  return out ? Status() : Status::error("error writing " + path.string());
}

Status write_latency_svg(const std::filesystem::path& path,
                         const std::vector<RequestRecord>& records, double bin_s,
                         const std::string& title) {
  std::map<int, std::vector<double>> ttft, tbt;
  for (const RequestRecord& q : records) {
    if (!q.completed()) continue;
    const int bin = static_cast<int>(q.arrival / bin_s);
    ttft[bin].push_back(q.ttft());
    if (q.output_tokens > 1) tbt[bin].push_back(q.tbt());
  }
  struct Series {
    const char* name;
    const char* color;
    std::vector<std::pair<double, double>> pts;
  };
  std::vector<Series> series = {{"TTFT p50", "#1f77b4", {}},
                                {"TTFT p99", "#aec7e8", {}},
                                {"TBT p50 x10", "#d62728", {}},
                                {"TBT p99 x10", "#ff9896", {}}};
  double xmax = bin_s, ymax = 1e-3;
  for (auto& [bin, v] : ttft) {
    const Percentiles p = percentiles(v);
    const double x = (bin + 0.5) * bin_s;
    series[0].pts.emplace_back(x, p.p50);
    series[1].pts.emplace_back(x, p.p99);
    xmax = std::max(xmax, x);
    ymax = std::max(ymax, p.p99);
  }
  for (auto& [bin, v] : tbt) {
    const Percentiles p = percentiles(v);
    const double x = (bin + 0.5) * bin_s;
    // TBT is 10-100x smaller than TTFT: scaled so both read on one axis.
    series[2].pts.emplace_back(x, 10 * p.p50);
    series[3].pts.emplace_back(x, 10 * p.p99);
    ymax = std::max(ymax, 10 * p.p99);
  }
  const double W = 900, H = 420, L = 70, R = 160, T = 40, B = 50;
  auto sx = [&](double x) { return L + x / xmax * (W - L - R); };
  auto sy = [&](double y) { return H - B - y / ymax * (H - T - B); };
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
      << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' "
         "fill='white'/>\n<text x='"
      << L << "' y='24' font-size='15'>" << xml_escape(title) << "</text>\n";
  svg << "<line x1='" << L << "' y1='" << H - B << "' x2='" << W - R << "' y2='" << H - B
      << "' stroke='black'/>\n<line x1='" << L << "' y1='" << T << "' x2='" << L << "' y2='"
      << H - B << "' stroke='black'/>\n";
  for (int i = 0; i <= 5; ++i) {
    const double y = ymax * i / 5, x = xmax * i / 5;
    svg << "<text x='" << L - 6 << "' y='" << sy(y) + 4 << "' text-anchor='end'>" << std::fixed
        << std::setprecision(2) << y << "</text>\n";
    svg << "<text x='" << sx(x) << "' y='" << H - B + 18 << "' text-anchor='middle'>"
        << std::setprecision(0) << x << "</text>\n";
  }
  svg << "<text x='" << (L + W - R) / 2 << "' y='" << H - 10
      << "' text-anchor='middle'>arrival time (s)</text>\n<text x='18' y='" << (T + H - B) / 2
      << "' transform='rotate(-90 18 " << (T + H - B) / 2
      << ")' text-anchor='middle'>seconds</text>\n";
  for (size_t s = 0; s < series.size(); ++s) {
    svg << "<polyline fill='none' stroke='" << series[s].color << "' stroke-width='1.5' points='";
    for (auto& [x, y] : series[s].pts) svg << std::setprecision(1) << sx(x) << ',' << sy(y) << ' ';
    svg << "'/>\n<text x='" << W - R + 10 << "' y='" << T + 18 * s + 10 << "' fill='"
        << series[s].color << "'>" << series[s].name << "</text>\n";
  }
  svg << "</svg>\n";
  std::ofstream out(path);
  if (!out) return Status::error("cannot write " + path.string());
  out << svg.str();
  return out ? Status() : Status::error("error writing " + path.string());
}

}  // namespace splitwise::sim
