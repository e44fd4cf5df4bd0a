#include "controller/kube/informer.h"

namespace splitwise::kube {

Informer::Informer(ListWatchClient& client, ListWatcherOptions options,
                   std::chrono::milliseconds resync)
    : watcher_(
          client, std::move(options),
          [this](std::vector<json> items, const std::string&) { on_list(std::move(items)); },
          [this](const WatchEvent& event) { on_event(event); }),
      resync_(resync) {}

Informer::~Informer() { stop(); }

void Informer::add_handlers(InformerHandlers handlers) { handlers_.push_back(std::move(handlers)); }

void Informer::start() {
  watch_thread_ = std::thread([this] { watcher_.run(); });
  if (resync_.count() > 0) resync_thread_ = std::thread([this] { resync_loop(); });
}

void Informer::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  watcher_.stop();
  if (watch_thread_.joinable()) watch_thread_.join();
  if (resync_thread_.joinable()) resync_thread_.join();
}

bool Informer::wait_for_sync(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return synced_.load() || stopping_; }) &&
         synced_.load();
}

std::optional<json> Informer::get(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = store_.find(key);
  if (it == store_.end()) return std::nullopt;
  return it->second;
}

std::vector<json> Informer::list() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<json> out;
  out.reserve(store_.size());
  for (const auto& [key, object] : store_) out.push_back(object);
  return out;
}

std::size_t Informer::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return store_.size();
}

void Informer::on_list(std::vector<json> items) {
  StoreDiff diff;
  {
    std::lock_guard<std::mutex> lock(mu_);
    diff = diff_relist(store_, items);
    store_.clear();
    for (json& item : items) {
      std::string key = object_key(item);
      store_.emplace(std::move(key), std::move(item));
    }
    synced_ = true;
    cv_.notify_all();
  }
  std::lock_guard<std::mutex> dispatch(dispatch_mu_);
  for (const InformerHandlers& h : handlers_) {
    if (h.on_delete) {
      for (const json& object : diff.deleted) h.on_delete(object);
    }
    if (h.on_add) {
      for (const json& object : diff.added) h.on_add(object);
    }
    if (h.on_update) {
      for (const auto& [old_object, new_object] : diff.updated) h.on_update(old_object, new_object);
    }
  }
}

void Informer::on_event(const WatchEvent& event) {
  const std::string key = object_key(event.object);
  std::optional<json> old_object;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = store_.find(key);
    if (it != store_.end()) old_object = std::move(it->second);
    if (event.type == WatchEventType::kDeleted) {
      if (it != store_.end()) store_.erase(it);
    } else {
      store_[key] = event.object;
    }
  }
  std::lock_guard<std::mutex> dispatch(dispatch_mu_);
  for (const InformerHandlers& h : handlers_) {
    if (event.type == WatchEventType::kDeleted) {
      if (h.on_delete) h.on_delete(event.object);
    } else if (old_object) {
      if (h.on_update) h.on_update(*old_object, event.object);
    } else if (h.on_add) {
      h.on_add(event.object);
    }
  }
}

void Informer::resync_loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, resync_, [this] { return stopping_; })) return;
    }
    if (!synced_) continue;
    const std::vector<json> objects = list();
    std::lock_guard<std::mutex> dispatch(dispatch_mu_);
    for (const InformerHandlers& h : handlers_) {
      if (!h.on_update) continue;
      for (const json& object : objects) h.on_update(object, object);
    }
  }
}

}  // namespace splitwise::kube
