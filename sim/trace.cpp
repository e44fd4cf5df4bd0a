#include "sim/trace.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

namespace splitwise::sim {
namespace {

// Days since 1970-01-01 of a civil date (proleptic Gregorian), for timestamps that
// may span midnight or months without depending on the process's time zone.
int64_t days_from_civil(int y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return int64_t{era} * 146097 + static_cast<int64_t>(doe) - 719468;
}

// "2023-11-16 18:17:03.9799600" -> seconds since the epoch.
bool parse_timestamp(const std::string& s, double& out) {
  int y, mo, d, h, mi;
  double sec;
  if (std::sscanf(s.c_str(), "%d-%d-%d %d:%d:%lf", &y, &mo, &d, &h, &mi, &sec) != 6) return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59) return false;
  out = static_cast<double>(days_from_civil(y, mo, d)) * 86400.0 + h * 3600.0 + mi * 60.0 + sec;
  return true;
}

bool parse_int(const std::string& s, int& out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

Result<std::vector<Request>> load_azure_trace(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return Status::error("cannot open trace " + path.string());
  std::string line;
  if (!std::getline(in, line) || line.rfind("TIMESTAMP,ContextTokens,GeneratedTokens", 0) != 0)
    return Status::error(path.string() +
                         ": expected the header TIMESTAMP,ContextTokens,GeneratedTokens");
  std::vector<std::pair<double, Request>> rows;
  int line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const size_t a = line.find(','), b = line.find(',', a + 1);
    double t;
    Request r;
    if (a == std::string::npos || b == std::string::npos ||
        !parse_timestamp(line.substr(0, a), t) ||
        !parse_int(line.substr(a + 1, b - a - 1), r.prompt_tokens) ||
        !parse_int(line.substr(b + 1), r.output_tokens) || r.prompt_tokens < 1 ||
        r.output_tokens < 0)
      return Status::error(path.string() + ":" + std::to_string(line_no) + ": malformed row '" +
                           line + "'");
    r.output_tokens = std::max(r.output_tokens, 1);  // the prefill always yields one token
    rows.emplace_back(t, r);
  }
  if (rows.empty()) return Status::error(path.string() + ": no requests");
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<Request> out;
  out.reserve(rows.size());
  for (auto& [t, r] : rows) {
    r.arrival_s = t - rows.front().first;
    out.push_back(r);
  }
  return out;
}

std::vector<Request> window(const std::vector<Request>& trace, double start_s, double duration_s) {
  std::vector<Request> out;
  for (const Request& r : trace) {
    if (r.arrival_s < start_s || r.arrival_s >= start_s + duration_s) continue;
    out.push_back(r);
    out.back().arrival_s -= start_s;
  }
  return out;
}

std::vector<Request> generate(const ArrivalProcess& p, const std::vector<Request>& lengths) {
  std::vector<Request> out;
  if (lengths.empty() || p.rate <= 0 || p.duration_s <= 0) return out;
  std::mt19937_64 rng(p.seed);
  // Gamma gaps with shape 1/cv^2 and mean 1/rate (shape 1: exponential, i.e. Poisson).
  const double shape = 1.0 / std::max(p.cv * p.cv, 1e-6);
  std::gamma_distribution<double> gap(shape, 1.0 / (p.rate * shape));
  std::uniform_int_distribution<size_t> pick(0, lengths.size() - 1);
  out.reserve(static_cast<size_t>(p.rate * p.duration_s * 1.1) + 16);
  for (double t = gap(rng); t < p.duration_s; t += gap(rng)) {
    Request r = lengths[pick(rng)];
    r.arrival_s = t;
    out.push_back(r);
  }
  return out;
}

double mean_rate(const std::vector<Request>& trace) {
  if (trace.size() < 2) return 0;
  const double span = trace.back().arrival_s - trace.front().arrival_s;
  return span > 0 ? static_cast<double>(trace.size() - 1) / span : 0;
}

}  // namespace splitwise::sim
