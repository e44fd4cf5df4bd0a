#include "sim/perf_model.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <map>
#include <sstream>

namespace splitwise::sim {

Curve::Curve(std::vector<std::pair<double, double>> points) : points_(std::move(points)) {
  std::sort(points_.begin(), points_.end());
  // Profiles are noisy at the small end (a 256-token prefill measured faster than a
  // 128-token one); a simulator must not reward bigger batches with shorter times.
  for (size_t i = 1; i < points_.size(); ++i)
    points_[i].second = std::max(points_[i].second, points_[i - 1].second);
}

double Curve::operator()(double x) const {
  if (points_.empty()) return 0;
  if (x <= points_.front().first || points_.size() == 1) return points_.front().second;
  auto hi = std::lower_bound(points_.begin(), points_.end(), std::make_pair(x, -1e300));
  if (hi == points_.end()) hi = points_.end() - 1;
  auto lo = hi - 1;
  const double t = (x - lo->first) / (hi->first - lo->first);
  return lo->second + t * (hi->second - lo->second);
}

PerfModel::PerfModel(Curve prompt_ms, Curve decode_ms, double reference_context,
                     double kv_ms_per_token)
    : prompt_(std::move(prompt_ms)),
      decode_(std::move(decode_ms)),
      reference_context_(reference_context),
      kv_ms_per_token_(kv_ms_per_token) {}

double PerfModel::decode_ms(int64_t batch, int64_t context_tokens) const {
  if (batch <= 0) return 0;
  const double b = static_cast<double>(batch);
  const double base = decode_(b);
  const double extra =
      kv_ms_per_token_ * (static_cast<double>(context_tokens) - b * reference_context_);
  // Shorter contexts than measured save their KV reads, but never the weight reads.
  return std::max(base + extra, 0.5 * base);
}

double PerfModel::mixed_ms(int64_t prefill_tokens, int64_t decodes, int64_t decode_context) const {
  if (prefill_tokens <= 0) return decode_ms(decodes, decode_context);
  return prompt_ms(prefill_tokens + decodes) +
         kv_ms_per_token_ * static_cast<double>(decode_context);
}

namespace {

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) {
    while (!cell.empty() && (cell.back() == '\r' || cell.back() == ' ')) cell.pop_back();
    out.push_back(cell);
  }
  return out;
}

// The whole cell must be a number ("50ms" is not 50).
bool parse_number(const std::string& cell, double& out) {
  const char* end = cell.data() + cell.size();
  auto r = std::from_chars(cell.data(), end, out);
  return r.ec == std::errc() && r.ptr == end && !cell.empty();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

Result<PerfModel> PerfModel::from_csv(const std::filesystem::path& path, const ModelSpec& model,
                                      const MachineSpec& machine, int tensor_parallel) {
  std::ifstream in(path);
  if (!in) return Status::error("cannot open performance profile " + path.string());
  std::string line;
  if (!std::getline(in, line)) return Status::error(path.string() + ": empty file");
  const auto header = split_csv(line);
  std::map<std::string, size_t> col;
  for (size_t i = 0; i < header.size(); ++i) col[header[i]] = i;
  for (const char* need : {"model", "hardware", "prompt_size", "batch_size", "token_size",
                           "prompt_time", "token_time", "tensor_parallel"})
    if (!col.count(need))
      return Status::error(path.string() + ": header lacks column '" + need + "'");

  struct Row {
    double prompt = 0, batch = 0, tokens = 0, prompt_ms = 0, token_ms = 0;
    int tp = 0;
  };
  std::vector<Row> rows;
  int line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    const auto cells = split_csv(line);
    if (cells.size() < header.size())
      return Status::error(path.string() + ":" + std::to_string(line_no) + ": " +
                           std::to_string(cells.size()) + " cells, header has " +
                           std::to_string(header.size()));
    if (cells[col["model"]] != model.name || cells[col["hardware"]] != machine.hardware) continue;
    Row row;
    double tp = 0;
    const std::pair<const char*, double*> fields[] = {
        {"prompt_size", &row.prompt},    {"batch_size", &row.batch},    {"token_size", &row.tokens},
        {"prompt_time", &row.prompt_ms}, {"token_time", &row.token_ms}, {"tensor_parallel", &tp}};
    for (const auto& [name, out] : fields) {
      if (!parse_number(cells[col[name]], *out))
        return Status::error(path.string() + ":" + std::to_string(line_no) + ": " + name + " '" +
                             cells[col[name]] + "' is not a number");
    }
    row.tp = static_cast<int>(tp);
    if (row.tp != tp)
      return Status::error(path.string() + ":" + std::to_string(line_no) +
                           ": tensor_parallel is not a whole number");
    rows.push_back(row);
  }
  if (tensor_parallel == 0)
    for (const Row& r : rows) tensor_parallel = std::max(tensor_parallel, r.tp);
  std::erase_if(rows, [&](const Row& r) { return r.tp != tensor_parallel; });
  if (rows.empty())
    return Status::error(path.string() + ": no rows for model " + model.name + " on " +
                         machine.hardware +
                         (tensor_parallel ? " at tensor_parallel " + std::to_string(tensor_parallel)
                                          : std::string()));

  // Prefill: median time per total batch tokens.
  std::map<double, std::vector<double>> prompt_by_tokens;
  for (const Row& r : rows) prompt_by_tokens[r.prompt * r.batch].push_back(r.prompt_ms);
  // Decode: the batch sweep at the most common (prompt, token) setting.
  std::map<std::pair<double, double>, int> settings;
  for (const Row& r : rows) ++settings[{r.prompt, r.tokens}];
  const auto ref = std::max_element(settings.begin(), settings.end(), [](auto& a, auto& b) {
                     return a.second < b.second;
                   })->first;
  std::map<double, std::vector<double>> decode_by_batch;
  for (const Row& r : rows)
    if (r.prompt == ref.first && r.tokens == ref.second)
      decode_by_batch[r.batch].push_back(r.token_ms);

  std::vector<std::pair<double, double>> p, d;
  for (auto& [x, ys] : prompt_by_tokens) p.emplace_back(x, median(ys));
  for (auto& [x, ys] : decode_by_batch) d.emplace_back(x, median(ys));
  const int tp = std::max(tensor_parallel, 1);
  const double kv_ms =
      model.kv_bytes_per_token() / (tp * machine.hbm_bandwidth_per_gpu * kKvReadEfficiency) * 1e3;
  // Decode was measured while generating ref.second tokens after a ref.first prompt: the
  // mean context over that run is the prompt plus half the generated tokens.
  PerfModel m(Curve(std::move(p)), Curve(std::move(d)), ref.first + ref.second / 2, kv_ms);
  m.info_ = {model.name, machine.hardware, tensor_parallel, static_cast<int>(rows.size())};
  return m;
}

}  // namespace splitwise::sim
