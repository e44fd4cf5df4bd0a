#include "controller/kube/list_watcher.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "tests/controller/kube/fake_list_watch.h"

namespace splitwise::kube {
namespace {

using namespace std::chrono_literals;
using testing::event_line;
using testing::eventually;
using testing::FakeListWatch;
using testing::make_list;
using testing::make_object;
using testing::WatchScript;

TEST(WatchEventTest, ParsesTypesAndObject) {
  auto ev = parse_watch_event(
      R"({"type":"MODIFIED","object":{"metadata":{"name":"a","namespace":"n","resourceVersion":"7"}}})");
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(ev->type, WatchEventType::kModified);
  EXPECT_EQ(resource_version_of(ev->object), "7");
  EXPECT_EQ(object_key(ev->object), "n/a");
  EXPECT_EQ(object_key(json{{"metadata", {{"name", "node1"}}}}), "node1");
  auto bookmark =
      parse_watch_event(R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}})");
  ASSERT_TRUE(bookmark.ok());
  EXPECT_EQ(bookmark->type, WatchEventType::kBookmark);
  EXPECT_FALSE(parse_watch_event("not json").ok());
  EXPECT_FALSE(parse_watch_event(R"({"type":"SURPRISE","object":{}})").ok());
  EXPECT_FALSE(parse_watch_event(R"({"object":{}})").ok());
  EXPECT_FALSE(parse_watch_event(R"({"type":"ADDED"})").ok());
}

TEST(WatchEventTest, DetectsGone) {
  auto gone = parse_watch_event(
      R"({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version"}})");
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(is_gone_event(*gone));
  auto gone_by_reason = parse_watch_event(R"({"type":"ERROR","object":{"reason":"Gone"}})");
  EXPECT_TRUE(is_gone_event(*gone_by_reason));
  auto other =
      parse_watch_event(R"({"type":"ERROR","object":{"code":500,"reason":"InternalError"}})");
  EXPECT_FALSE(is_gone_event(*other));
  auto added = parse_watch_event(R"({"type":"ADDED","object":{"code":410}})");
  EXPECT_FALSE(is_gone_event(*added));  // only ERROR events mean Gone
}

ListWatcherOptions fast_options() {
  ListWatcherOptions options;
  options.resource = Resource{"apps", "v1", "deployments", true};
  options.min_watch_timeout = 300s;
  options.max_watch_timeout = 600s;
  options.backoff = BackoffPolicy{1ms, 5ms, 0.5};
  options.min_healthy_watch = 0ms;
  return options;
}

struct Recorder {
  std::mutex mu;
  std::vector<std::string> lists;   // the rv of each list
  std::vector<std::string> events;  // "TYPE name"
  ListWatcher::OnList on_list() {
    return [this](std::vector<json>, const std::string& rv) {
      std::lock_guard<std::mutex> lock(mu);
      lists.push_back(rv);
    };
  }
  ListWatcher::OnEvent on_event() {
    return [this](const WatchEvent& e) {
      std::lock_guard<std::mutex> lock(mu);
      events.push_back(std::string(to_string(e.type)) + " " +
                       e.object["metadata"].value("name", ""));
    };
  }
  std::size_t n_lists() {
    std::lock_guard<std::mutex> lock(mu);
    return lists.size();
  }
  std::size_t n_events() {
    std::lock_guard<std::mutex> lock(mu);
    return events.size();
  }
};

TEST(ListWatcherTest, WatchesFromListRvAndFollowsEventsAndBookmarks) {
  FakeListWatch fake;
  fake.push_list(make_list("100", {make_object("a", "90")}));
  fake.push_watch({std::nullopt,
                   {event_line("ADDED", make_object("b", "101")),
                    event_line("BOOKMARK", json{{"metadata", {{"resourceVersion", "150"}}}})}});
  fake.push_watch(
      {std::nullopt, {"garbage line", event_line("MODIFIED", make_object("b", "160"))}});
  Recorder rec;
  ListWatcher watcher(fake, fast_options(), rec.on_list(), rec.on_event());
  std::thread t([&] { watcher.run(); });
  ASSERT_TRUE(eventually([&] { return fake.watch_options().size() >= 3; }));
  watcher.stop();
  t.join();
  auto options = fake.watch_options();
  EXPECT_EQ(options[0].resource_version, "100");  // from the list
  EXPECT_TRUE(options[0].allow_bookmarks);
  EXPECT_EQ(options[1].resource_version, "150");  // the bookmark moved it; clean end re-watches
  EXPECT_EQ(options[2].resource_version, "160");
  for (const auto& o : options) {
    EXPECT_GE(o.timeout_seconds, 300);
    EXPECT_LE(o.timeout_seconds, 600);
  }
  EXPECT_EQ(rec.lists, (std::vector<std::string>{"100"}));
  EXPECT_EQ(rec.events, (std::vector<std::string>{"ADDED b", "MODIFIED b"}));  // no BOOKMARK
  EXPECT_EQ(fake.list_calls(), 1);
}

TEST(ListWatcherTest, RandomizesWatchTimeout) {
  FakeListWatch fake;
  fake.push_list(make_list("1", {}));
  for (int i = 0; i < 30; ++i) fake.push_watch({std::nullopt, {}});
  Recorder rec;
  ListWatcher watcher(fake, fast_options(), rec.on_list(), rec.on_event());
  std::thread t([&] { watcher.run(); });
  ASSERT_TRUE(eventually([&] { return fake.watch_options().size() >= 31; }));
  watcher.stop();
  t.join();
  std::set<int> timeouts;
  for (const auto& o : fake.watch_options()) timeouts.insert(o.timeout_seconds);
  EXPECT_GT(timeouts.size(), 5u);
}

TEST(ListWatcherTest, RelistsOnHttp410) {
  FakeListWatch fake;
  fake.push_list(make_list("100", {}));
  fake.push_watch({ApiError{410, "Expired", "too old"}, {}});
  fake.push_list(make_list("200", {}));
  Recorder rec;
  ListWatcher watcher(fake, fast_options(), rec.on_list(), rec.on_event());
  std::thread t([&] { watcher.run(); });
  ASSERT_TRUE(eventually([&] { return fake.watch_options().size() >= 2; }));
  watcher.stop();
  t.join();
  EXPECT_EQ(rec.lists, (std::vector<std::string>{"100", "200"}));
  EXPECT_EQ(fake.watch_options()[1].resource_version, "200");
}

TEST(ListWatcherTest, RelistsOnGoneErrorEvent) {
  FakeListWatch fake;
  fake.push_list(make_list("100", {}));
  fake.push_watch({std::nullopt,
                   {event_line("ADDED", make_object("a", "101")),
                    R"({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}})",
                    event_line("ADDED", make_object("never", "102"))}});
  fake.push_list(make_list("300", {}));
  Recorder rec;
  ListWatcher watcher(fake, fast_options(), rec.on_list(), rec.on_event());
  std::thread t([&] { watcher.run(); });
  ASSERT_TRUE(eventually([&] { return fake.watch_options().size() >= 2; }));
  watcher.stop();
  t.join();
  EXPECT_EQ(rec.lists, (std::vector<std::string>{"100", "300"}));
  EXPECT_EQ(rec.events, (std::vector<std::string>{"ADDED a"}));  // nothing after the ERROR
  EXPECT_EQ(fake.watch_options()[1].resource_version, "300");
}

TEST(ListWatcherTest, OtherWatchErrorsBackOffWithoutRelisting) {
  FakeListWatch fake;
  fake.push_list(make_list("100", {}));
  fake.push_watch({ApiError{500, "InternalError", "boom"}, {}});
  fake.push_watch({ApiError::transport("reset"), {}});
  fake.push_watch({std::nullopt, {R"({"type":"ERROR","object":{"code":500}})"}});
  Recorder rec;
  ListWatcher watcher(fake, fast_options(), rec.on_list(), rec.on_event());
  std::thread t([&] { watcher.run(); });
  ASSERT_TRUE(eventually([&] { return fake.watch_options().size() >= 4; }));
  watcher.stop();
  t.join();
  EXPECT_EQ(fake.list_calls(), 1);
  for (const auto& o : fake.watch_options()) EXPECT_EQ(o.resource_version, "100");
}

TEST(ListWatcherTest, RetriesFailedListAndStopsWhileIdle) {
  FakeListWatch fake;
  fake.push_list(ApiError{503, "ServiceUnavailable", "starting"});
  fake.push_list(make_list("5", {}));
  Recorder rec;
  ListWatcher watcher(fake, fast_options(), rec.on_list(), rec.on_event());
  std::thread t([&] { watcher.run(); });
  ASSERT_TRUE(eventually([&] { return fake.watch_options().size() >= 1; }));  // idle watch
  const auto start = std::chrono::steady_clock::now();
  watcher.stop();  // cancels the idle watch
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_EQ(fake.list_calls(), 2);
  EXPECT_EQ(rec.lists, (std::vector<std::string>{"5"}));
}

}  // namespace
}  // namespace splitwise::kube
