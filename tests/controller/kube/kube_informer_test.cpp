#include "controller/kube/informer.h"

#include <gtest/gtest.h>

#include "tests/controller/kube/fake_list_watch.h"

namespace splitwise::kube {
namespace {

using namespace std::chrono_literals;
using testing::event_line;
using testing::eventually;
using testing::FakeListWatch;
using testing::make_list;
using testing::make_object;

TEST(StoreDiffTest, FindsAddsUpdatesAndDeletesOfTheGap) {
  std::map<std::string, json> cached = {{"ns/a", make_object("a", "1")},
                                        {"ns/b", make_object("b", "2")},
                                        {"ns/c", make_object("c", "3")}};
  StoreDiff diff =
      diff_relist(cached, {make_object("a", "1"), make_object("b", "5"), make_object("d", "6")});
  ASSERT_EQ(diff.added.size(), 1u);
  EXPECT_EQ(object_key(diff.added[0]), "ns/d");
  ASSERT_EQ(diff.updated.size(), 1u);
  EXPECT_EQ(resource_version_of(diff.updated[0].first), "2");
  EXPECT_EQ(resource_version_of(diff.updated[0].second), "5");
  ASSERT_EQ(diff.deleted.size(), 1u);
  EXPECT_EQ(object_key(diff.deleted[0]), "ns/c");
  EXPECT_TRUE(
      diff_relist(cached, {make_object("a", "1"), make_object("b", "2"), make_object("c", "3")})
          .empty());
}

TEST(StoreDiffTest, ComparesContentsWithoutResourceVersion) {
  std::map<std::string, json> cached = {{"x", json{{"metadata", {{"name", "x"}}}, {"v", 1}}}};
  EXPECT_TRUE(diff_relist(cached, {json{{"metadata", {{"name", "x"}}}, {"v", 1}}}).empty());
  EXPECT_EQ(diff_relist(cached, {json{{"metadata", {{"name", "x"}}}, {"v", 2}}}).updated.size(),
            1u);
}

struct Log {
  std::mutex mu;
  std::vector<std::string> entries;
  InformerHandlers handlers() {
    return InformerHandlers{[this](const json& o) { push("add " + object_key(o)); },
                            [this](const json& a, const json& b) {
                              push("update " + object_key(b) + " " + resource_version_of(a) + "->" +
                                   resource_version_of(b));
                            },
                            [this](const json& o) { push("delete " + object_key(o)); }};
  }
  void push(std::string s) {
    std::lock_guard<std::mutex> lock(mu);
    entries.push_back(std::move(s));
  }
  std::vector<std::string> get() {
    std::lock_guard<std::mutex> lock(mu);
    return entries;
  }
};

ListWatcherOptions options() {
  ListWatcherOptions o;
  o.resource = Resource{"", "v1", "configmaps", true};
  o.backoff = BackoffPolicy{1ms, 5ms, 0.5};
  o.min_healthy_watch = 0ms;
  return o;
}

TEST(InformerTest, SyncsCacheAndDispatchesEvents) {
  FakeListWatch fake;
  fake.push_list(make_list("10", {make_object("a", "1"), make_object("b", "2")}));
  fake.push_watch(
      {std::nullopt,
       {event_line("MODIFIED", make_object("a", "11")), event_line("ADDED", make_object("c", "12")),
        event_line("DELETED", make_object("b", "13"))}});
  Informer informer(fake, options());
  Log log;
  informer.add_handlers(log.handlers());
  EXPECT_FALSE(informer.synced());
  informer.start();
  ASSERT_TRUE(informer.wait_for_sync(3000ms));
  ASSERT_TRUE(eventually([&] { return log.get().size() >= 5; }));
  informer.stop();
  EXPECT_EQ(log.get(), (std::vector<std::string>{"add ns/a", "add ns/b", "update ns/a 1->11",
                                                 "add ns/c", "delete ns/b"}));
  EXPECT_EQ(informer.size(), 2u);
  ASSERT_TRUE(informer.get("ns/a"));
  EXPECT_EQ(resource_version_of(*informer.get("ns/a")), "11");
  EXPECT_FALSE(informer.get("ns/b"));
}

TEST(InformerTest, RelistAfterGoneDeliversMissedDeletesAndUpdates) {
  FakeListWatch fake;
  fake.push_list(
      make_list("10", {make_object("a", "1"), make_object("b", "2"), make_object("c", "3")}));
  fake.push_watch({std::nullopt, {R"({"type":"ERROR","object":{"code":410}})"}});
  // While no watch was open: b was deleted, c changed, d appeared.
  fake.push_list(
      make_list("50", {make_object("a", "1"), make_object("c", "30"), make_object("d", "40")}));
  Informer informer(fake, options());
  Log log;
  informer.add_handlers(log.handlers());
  informer.start();
  ASSERT_TRUE(eventually([&] { return log.get().size() >= 6; }));
  informer.stop();
  EXPECT_EQ(log.get(), (std::vector<std::string>{"add ns/a", "add ns/b", "add ns/c", "delete ns/b",
                                                 "add ns/d", "update ns/c 3->30"}));
  EXPECT_EQ(informer.size(), 3u);
  EXPECT_EQ(informer.list_count(), 2);
}

TEST(InformerTest, ResyncReplaysCachedObjectsAsUpdates) {
  FakeListWatch fake;
  fake.push_list(make_list("10", {make_object("a", "1")}));
  Informer informer(fake, options(), 20ms);
  Log log;
  informer.add_handlers(log.handlers());
  informer.start();
  ASSERT_TRUE(eventually([&] {
    int n = 0;
    for (const auto& e : log.get()) n += e == "update ns/a 1->1";
    return n >= 2;
  }));
  informer.stop();
}

TEST(InformerTest, NotSyncedWhileListFails) {
  FakeListWatch fake;  // every list fails
  Informer informer(fake, options());
  informer.start();
  EXPECT_FALSE(informer.wait_for_sync(50ms));
  EXPECT_FALSE(informer.synced());
  informer.stop();
}

}  // namespace
}  // namespace splitwise::kube
