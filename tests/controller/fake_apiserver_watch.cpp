// Watches of the fake apiserver: history, resume from an RV, 410 Expired, bookmarks.
#include "tests/controller/fake_apiserver_internal.h"

namespace splitwise::fake::internal {

namespace {

std::string api_version(const ResourceInfo& t) {
  return t.group.empty() ? t.version : t.group + "/" + t.version;
}

std::string line(const std::string& type, const json& object) {
  return json{{"type", type}, {"object", object}}.dump() + "\n";
}

bool selected(const Watcher& w, const ResourceInfo* type, const json& object) {
  if (type != w.type) return false;
  const json& meta = object["metadata"];
  if (!w.ns.empty() && meta.value("namespace", "") != w.ns) return false;
  return w.labels.matches(meta.value("labels", json::object())) &&
         w.fields.matches(field_view(object));
}

json expired_status(uint64_t asked, uint64_t oldest) {
  return status_json(
      {410, "Expired",
       "too old resource version: " + std::to_string(asked) + " (" + std::to_string(oldest) + ")"});
}

}  // namespace

bool Store::deliver(Watcher& w, const std::string& kind, const json& object) {
  w.writer->write(line(kind, object));
  ++w.sent;
  return w.cut_after < 0 || w.sent < w.cut_after;
}

void Store::emit(const ResourceInfo* type, const std::string& kind, const json& object) {
  uint64_t rv = std::stoull(object["metadata"]["resourceVersion"].get<std::string>());
  const json& meta = object["metadata"];
  history_.push_back({rv, type, meta.value("namespace", ""), kind, object});
  while (history_.size() > options_.watch_history) {
    compacted_rv_ = history_.front().rv;
    history_.pop_front();
  }
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    Watcher& w = *it->second;
    if (selected(w, type, object) && !deliver(w, kind, object)) {
      // A cut stream: dropping the writer mid-stream closes the connection unfinished.
      it = watchers_.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<ApiResponse> Store::watch(const Op& op, std::shared_ptr<net::ResponseWriter> writer,
                                        int cut_after, bool force_expired_event,
                                        std::shared_ptr<Watcher>* registered) {
  auto labels = parse_label_selector(op.query.get("labelSelector"));
  auto fields = parse_field_selector(op.query.get("fieldSelector"));
  auto bad = [&](const std::string& message) {
    return ApiResponse{400, status_json({400, "BadRequest", message})};
  };
  if (!labels.ok()) return bad(labels.status().message());
  if (!fields.ok()) return bad(fields.status().message());
  std::string rv_text = op.query.get("resourceVersion");
  uint64_t from = 0;
  if (!rv_text.empty()) {
    try {
      size_t used = 0;
      from = std::stoull(rv_text, &used);
      if (used != rv_text.size()) throw std::invalid_argument(rv_text);
    } catch (const std::exception&) {
      return bad("invalid resource version: " + rv_text);
    }
  }

  std::lock_guard lock(mu_);
  bool expired = from != 0 && from < compacted_rv_;
  if (force_expired_event || (expired && options_.expired_watch_as_event)) {
    writer->start_stream(200, "application/json");
    writer->write(line("ERROR", expired_status(from, compacted_rv_ + 1)));
    writer->finish();
    return std::nullopt;
  }
  if (expired) return ApiResponse{410, expired_status(from, compacted_rv_ + 1)};

  auto w = std::make_shared<Watcher>();
  w->id = next_watcher_id_++;
  w->type = op.type;
  w->ns = op.ns;
  w->labels = *labels;
  w->fields = *fields;
  w->bookmarks = op.query.flag("allowWatchBookmarks");
  w->cut_after = cut_after;
  w->writer = std::move(writer);
  w->writer->start_stream(200, "application/json");
  bool alive = true;
  if (from == 0) {
    // "0" or absent: the current state as synthetic ADDED events, then live events.
    for (const auto& [key, stored] : objects_) {
      if (alive && selected(*w, std::get<0>(key), stored.object)) {
        alive = deliver(*w, "ADDED", stored.object);
      }
    }
  } else {
    for (const auto& event : history_) {
      if (alive && event.rv > from && selected(*w, event.type, event.object)) {
        alive = deliver(*w, event.kind, event.object);
      }
    }
  }
  if (!alive) return std::nullopt;  // cut during the replay: the writer goes unfinished
  watchers_[w->id] = w;
  *registered = w;
  return std::nullopt;
}

void Store::remove_watcher(uint64_t id, bool finish) {
  std::lock_guard lock(mu_);
  auto it = watchers_.find(id);
  if (it == watchers_.end()) return;
  if (finish) it->second->writer->finish();
  watchers_.erase(it);
}

void Store::send_bookmarks() {
  std::lock_guard lock(mu_);
  for (auto& [id, w] : watchers_) {
    if (!w->bookmarks) continue;
    json object = {{"kind", w->type->kind},
                   {"apiVersion", api_version(*w->type)},
                   {"metadata", {{"resourceVersion", std::to_string(rv_)}}}};
    w->writer->write(line("BOOKMARK", object));
  }
}

void Store::close_watchers() {
  std::lock_guard lock(mu_);
  for (auto& [id, w] : watchers_) w->writer->finish();
  watchers_.clear();
}

void Store::compact() {
  std::lock_guard lock(mu_);
  history_.clear();
  compacted_rv_ = rv_;
}

}  // namespace splitwise::fake::internal
