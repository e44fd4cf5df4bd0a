#include "controller/kube/list_watcher.h"

#include <spdlog/spdlog.h>

namespace splitwise::kube {

ListWatcher::ListWatcher(ListWatchClient& client, ListWatcherOptions options, OnList on_list,
                         OnEvent on_event)
    : client_(client),
      options_(std::move(options)),
      on_list_(std::move(on_list)),
      on_event_(std::move(on_event)),
      backoff_(options_.backoff),
      rng_(std::random_device{}()) {}

std::string ListWatcher::resource_version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rv_;
}

void ListWatcher::stop() {
  std::shared_ptr<CancelToken> cancel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    cancel = cancel_;
    cv_.notify_all();
  }
  if (cancel) cancel->cancel();
}

bool ListWatcher::sleep_for(std::chrono::milliseconds delay) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, delay, [this] { return stopped_; });
  return !stopped_;
}

bool ListWatcher::list_once() {
  ListOptions options;
  options.label_selector = options_.label_selector;
  options.field_selector = options_.field_selector;
  ApiResult<json> list = client_.list(options_.resource, options_.ns, options);
  ++lists_;
  if (!list.ok()) {
    spdlog::warn("kube: listing {}: {}", options_.resource.resource, list.error().to_string());
    return false;
  }
  std::vector<json> items;
  if (list->contains("items") && (*list)["items"].is_array()) {
    items.reserve((*list)["items"].size());
    for (json& item : (*list)["items"]) items.push_back(std::move(item));
  }
  const std::string rv = resource_version_of(*list);
  {
    std::lock_guard<std::mutex> lock(mu_);
    rv_ = rv;
  }
  on_list_(std::move(items), rv);
  return true;
}

ListWatcher::WatchEnd ListWatcher::watch_once(std::chrono::milliseconds* retry_after,
                                              bool* saw_event) {
  auto cancel = std::make_shared<CancelToken>();
  WatchOptions options;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return WatchEnd::kClean;
    cancel_ = cancel;
    options.resource_version = rv_;
  }
  options.label_selector = options_.label_selector;
  options.field_selector = options_.field_selector;
  options.allow_bookmarks = true;
  std::uniform_int_distribution<std::int64_t> timeout(
      options_.min_watch_timeout.count(),
      std::max(options_.min_watch_timeout.count(), options_.max_watch_timeout.count()));
  options.timeout_seconds = static_cast<int>(timeout(rng_));

  WatchEnd end = WatchEnd::kClean;
  ++watches_;
  ApiStatus status = client_.watch(
      options_.resource, options_.ns, options,
      [&](std::string_view line) {
        Result<WatchEvent> event = parse_watch_event(line);
        if (!event.ok()) {
          spdlog::warn("kube: watch {}: {}", options_.resource.resource, event.status().message());
          return true;
        }
        if (event->type == WatchEventType::kError) {
          end = is_gone_event(*event) ? WatchEnd::kGone : WatchEnd::kError;
          if (end == WatchEnd::kError) {
            spdlog::warn("kube: watch {} error event: {}", options_.resource.resource,
                         event->object.dump());
          }
          return false;
        }
        if (const std::string rv = resource_version_of(event->object); !rv.empty()) {
          std::lock_guard<std::mutex> lock(mu_);
          rv_ = rv;
        }
        if (event->type == WatchEventType::kBookmark) return true;
        *saw_event = true;
        on_event_(*event);
        return true;
      },
      cancel.get());
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancel_.reset();
  }
  if (!status.ok()) {
    if (status.error().is_gone()) return WatchEnd::kGone;
    *retry_after = status.error().retry_after;
    spdlog::warn("kube: watch {}: {}", options_.resource.resource, status.error().to_string());
    return WatchEnd::kError;
  }
  return end;
}

void ListWatcher::run() {
  bool need_list = true;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
    }
    if (need_list) {
      if (!list_once()) {
        if (!sleep_for(backoff_.next())) return;
        continue;
      }
      need_list = false;
      backoff_.reset();
    }
    std::chrono::milliseconds retry_after{0};
    bool saw_event = false;
    const auto started = std::chrono::steady_clock::now();
    const WatchEnd end = watch_once(&retry_after, &saw_event);
    switch (end) {
      case WatchEnd::kGone:
        spdlog::info("kube: watch {} resourceVersion expired; relisting",
                     options_.resource.resource);
        need_list = true;
        break;
      case WatchEnd::kError: {
        auto delay = backoff_.next();
        if (retry_after > delay) delay = retry_after;
        if (!sleep_for(delay)) return;
        break;
      }
      case WatchEnd::kClean:
        if (!saw_event && std::chrono::steady_clock::now() - started < options_.min_healthy_watch) {
          if (!sleep_for(backoff_.next())) return;
        } else {
          backoff_.reset();
        }
        break;
    }
  }
}

}  // namespace splitwise::kube
