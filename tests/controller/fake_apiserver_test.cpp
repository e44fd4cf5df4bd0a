// Tests of the fake Kubernetes API server, over real HTTP with the project's client.
#include "tests/controller/fake_apiserver.h"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>

#include <chrono>
#include <condition_variable>
#include <future>
#include <thread>

#include "workers/net/http.h"

namespace splitwise::fake {
namespace {

using namespace std::chrono_literals;

struct Resp {
  int code = 0;  // 0: transport error
  json body;
  std::map<std::string, std::string> headers;
  std::string error;
};

// Lines of one watch stream, collected on the client's io thread.
struct WatchStream {
  std::mutex mu;
  std::condition_variable cv;
  int code = 0;
  std::vector<json> events;
  bool ended = false;
  bool ended_ok = false;
  std::function<void()> cancel;

  bool wait_events(size_t n, std::chrono::milliseconds timeout = 3000ms) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return events.size() >= n; });
  }
  bool wait_head(std::chrono::milliseconds timeout = 3000ms) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return code != 0 || ended; });
  }
  bool wait_end(std::chrono::milliseconds timeout = 3000ms) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return ended; });
  }
  std::vector<json> snapshot() {
    std::lock_guard lock(mu);
    return events;
  }
  // Events other than bookmarks.
  std::vector<json> changes() {
    std::vector<json> out;
    for (auto& e : snapshot()) {
      if (e["type"] != "BOOKMARK") out.push_back(e);
    }
    return out;
  }
};

json configmap(const std::string& name, json data = {{"k", "v"}}, json labels = json::object()) {
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata", {{"name", name}, {"namespace", "ns"}, {"labels", labels}}},
          {"data", data}};
}

json cluster(const std::string& name, int replicas) {
  return {{"apiVersion", "splitwise.io/v1alpha1"},
          {"kind", "InferenceCluster"},
          {"metadata", {{"name", name}, {"namespace", "ns"}}},
          {"spec", {{"model", "tiny"}, {"replicas", replicas}}}};
}

uint64_t rv_of(const json& object) {
  return std::stoull(object["metadata"]["resourceVersion"].get<std::string>());
}

constexpr const char* kConfigMaps = "/api/v1/namespaces/ns/configmaps";
constexpr const char* kClusters = "/apis/splitwise.io/v1alpha1/namespaces/ns/inferenceclusters";
constexpr const char* kDeployments = "/apis/apps/v1/namespaces/ns/deployments";

class FakeApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FakeApiServerOptions options;
    options.bookmark_interval_ms = 50;
    restart(options);
    io_thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    for (auto& w : watches_) w->cancel();
    server_->stop();
    guard_.reset();
    io_.stop();
    io_thread_.join();
  }
  void restart(FakeApiServerOptions options) {
    if (server_) server_->stop();
    server_ = std::make_unique<FakeApiServer>(options);
    ASSERT_TRUE(server_->start().ok());
  }

  Resp call(const std::string& method, const std::string& target, const json& body = nullptr,
            const std::string& content_type = "application/json") {
    net::HttpRequest req;
    req.method = method;
    req.target = target;
    if (!body.is_null()) {
      req.body = body.dump();
      req.headers["content-type"] = content_type;
    }
    std::promise<Resp> done;
    client_.request("127.0.0.1", server_->port(), req, 5000, [&](Result<net::HttpResponse> r) {
      Resp out;
      if (!r.ok()) {
        out.error = r.status().message();
      } else {
        out.code = r->status;
        out.headers = r->headers;
        out.body = json::parse(r->body, nullptr, false);
      }
      done.set_value(out);
    });
    return done.get_future().get();
  }

  std::shared_ptr<WatchStream> watch(const std::string& target) {
    auto w = std::make_shared<WatchStream>();
    net::HttpRequest req;
    req.method = "GET";
    req.target = target;
    w->cancel = client_.stream(
        "127.0.0.1", server_->port(), req, 10000,
        [w](const net::HttpResponse& head) {
          std::lock_guard lock(w->mu);
          w->code = head.status;
          w->cv.notify_all();
        },
        [w](std::string_view line) {
          std::lock_guard lock(w->mu);
          w->events.push_back(json::parse(line));
          w->cv.notify_all();
        },
        [w](Status st) {
          std::lock_guard lock(w->mu);
          w->ended = true;
          w->ended_ok = st.ok();
          w->cv.notify_all();
        });
    watches_.push_back(w);
    return w;
  }

  std::unique_ptr<FakeApiServer> server_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{
      io_.get_executor()};
  net::HttpClient client_{io_};
  std::thread io_thread_;
  std::vector<std::shared_ptr<WatchStream>> watches_;
};

TEST_F(FakeApiServerTest, DiscoveryServesMonitoringOnlyWhenEnabled) {
  auto groups = call("GET", "/apis");
  ASSERT_EQ(groups.code, 200);
  std::string dump = groups.body.dump();
  EXPECT_NE(dump.find("splitwise.io"), std::string::npos);
  EXPECT_EQ(dump.find("monitoring.coreos.com"), std::string::npos);
  EXPECT_EQ(call("GET", "/apis/monitoring.coreos.com/v1").code, 404);
  EXPECT_EQ(call("GET", "/apis/monitoring.coreos.com/v1/namespaces/ns/servicemonitors").code, 404);
  auto ic = call("GET", "/apis/splitwise.io/v1alpha1");
  ASSERT_EQ(ic.code, 200);
  EXPECT_EQ(ic.body["kind"], "APIResourceList");
  std::vector<std::string> names;
  for (auto& r : ic.body["resources"]) names.push_back(r["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"inferenceclusters", "inferenceclusters/status"}));
  EXPECT_EQ(call("GET", "/api").body["versions"][0], "v1");

  FakeApiServerOptions options;
  options.serve_monitoring = true;
  restart(options);
  EXPECT_NE(call("GET", "/apis").body.dump().find("monitoring.coreos.com"), std::string::npos);
  auto mon = call("GET", "/apis/monitoring.coreos.com/v1");
  ASSERT_EQ(mon.code, 200);
  EXPECT_EQ(mon.body["resources"][0]["name"], "servicemonitors");
  EXPECT_EQ(call("GET", "/apis/monitoring.coreos.com/v1/namespaces/ns/servicemonitors").code, 200);
}

TEST_F(FakeApiServerTest, CreateGetListWithMonotonicResourceVersions) {
  uint64_t last = 0;
  for (int i = 0; i < 3; ++i) {
    auto r = call("POST", kConfigMaps,
                  configmap("cm" + std::to_string(i), {{"k", "v"}}, {{"app", i < 2 ? "a" : "b"}}));
    ASSERT_EQ(r.code, 201) << r.body.dump();
    EXPECT_GT(rv_of(r.body), last);
    last = rv_of(r.body);
    EXPECT_EQ(r.body["metadata"]["generation"], 1);
    EXPECT_FALSE(r.body["metadata"]["uid"].get<std::string>().empty());
  }
  auto dup = call("POST", kConfigMaps, configmap("cm0"));
  EXPECT_EQ(dup.code, 409);
  EXPECT_EQ(dup.body["reason"], "AlreadyExists");
  EXPECT_EQ(dup.body["code"], 409);

  auto got = call("GET", std::string(kConfigMaps) + "/cm1");
  ASSERT_EQ(got.code, 200);
  EXPECT_EQ(got.body["data"]["k"], "v");
  EXPECT_EQ(call("GET", std::string(kConfigMaps) + "/nope").body["reason"], "NotFound");

  auto list = call("GET", std::string(kConfigMaps) + "?labelSelector=app%3Da");
  ASSERT_EQ(list.code, 200);
  EXPECT_EQ(list.body["items"].size(), 2u);
  EXPECT_EQ(rv_of(list.body), last);
  EXPECT_EQ(call("GET", "/api/v1/configmaps?labelSelector=app!%3Da").body["items"].size(), 1u);
  EXPECT_EQ(call("GET", "/api/v1/namespaces/other/configmaps").body["items"].size(), 0u);
}

TEST_F(FakeApiServerTest, GenerationFollowsSpecAndUpdatesNeedTheCurrentVersion) {
  json dep = {{"apiVersion", "apps/v1"},
              {"kind", "Deployment"},
              {"metadata", {{"name", "d"}}},
              {"spec", {{"replicas", 1}}}};
  auto created = call("POST", kDeployments, dep);
  ASSERT_EQ(created.code, 201);
  json obj = created.body;
  obj["metadata"]["labels"] = {{"x", "y"}};
  auto labelled = call("PUT", std::string(kDeployments) + "/d", obj);
  ASSERT_EQ(labelled.code, 200);
  EXPECT_EQ(labelled.body["metadata"]["generation"], 1);
  EXPECT_GT(rv_of(labelled.body), rv_of(created.body));

  obj = labelled.body;
  obj["spec"]["replicas"] = 3;
  auto scaled = call("PUT", std::string(kDeployments) + "/d", obj);
  ASSERT_EQ(scaled.code, 200);
  EXPECT_EQ(scaled.body["metadata"]["generation"], 2);

  auto stale = call("PUT", std::string(kDeployments) + "/d", obj);  // obj has the old RV
  EXPECT_EQ(stale.code, 409);
  EXPECT_EQ(stale.body["reason"], "Conflict");
  obj["metadata"].erase("resourceVersion");
  EXPECT_EQ(call("PUT", std::string(kDeployments) + "/d", obj).code, 422);

  // Objects without spec: anything but metadata and status is the spec.
  auto cm = call("POST", kConfigMaps, configmap("c")).body;
  cm["data"]["k"] = "w";
  EXPECT_EQ(call("PUT", std::string(kConfigMaps) + "/c", cm).body["metadata"]["generation"], 2);

  // Leases: the optimistic concurrency leader election depends on.
  std::string leases = "/apis/coordination.k8s.io/v1/namespaces/ns/leases";
  json lease = {{"metadata", {{"name", "leader"}}}, {"spec", {{"holderIdentity", "a"}}}};
  auto l = call("POST", leases, lease);
  ASSERT_EQ(l.code, 201);
  json mine = l.body, theirs = l.body;
  mine["spec"]["holderIdentity"] = "b";
  theirs["spec"]["holderIdentity"] = "c";
  EXPECT_EQ(call("PUT", leases + "/leader", mine).code, 200);
  EXPECT_EQ(call("PUT", leases + "/leader", theirs).code, 409);
  EXPECT_EQ(call("POST", leases, lease).body["reason"], "AlreadyExists");
}

TEST_F(FakeApiServerTest, NoopUpdateKeepsTheResourceVersion) {
  auto cm = call("POST", kConfigMaps, configmap("c")).body;
  server_->reset_counters();
  auto same = call("PUT", std::string(kConfigMaps) + "/c", cm);
  ASSERT_EQ(same.code, 200);
  EXPECT_EQ(same.body["metadata"]["resourceVersion"], cm["metadata"]["resourceVersion"]);
  auto patched = call("PATCH", std::string(kConfigMaps) + "/c", {{"data", {{"k", "v"}}}},
                      "application/merge-patch+json");
  EXPECT_EQ(patched.body["metadata"]["resourceVersion"], cm["metadata"]["resourceVersion"]);
  auto c = server_->counters();
  EXPECT_EQ(c.writes, 0);
  EXPECT_EQ(c.noop_writes, 2);
  EXPECT_EQ(c.count("update", "configmaps"), 1);
  EXPECT_EQ(c.count("patch", "configmaps"), 1);
  ASSERT_EQ(c.log.size(), 2u);
  EXPECT_EQ(c.log[1].method, "PATCH");
  EXPECT_EQ(c.log[1].name, "c");
}

TEST_F(FakeApiServerTest, StatusSubresourceIsIsolatedFromTheMainResource) {
  json ic = cluster("ic", 1);
  ic["status"] = {{"phase", "ignored"}};
  auto created = call("POST", kClusters, ic);
  ASSERT_EQ(created.code, 201);
  EXPECT_FALSE(created.body.contains("status"));

  json with_status = created.body;
  with_status["status"] = {{"observedGeneration", 1}};
  auto st = call("PUT", std::string(kClusters) + "/ic/status", with_status);
  ASSERT_EQ(st.code, 200) << st.body.dump();
  EXPECT_EQ(st.body["status"]["observedGeneration"], 1);
  EXPECT_EQ(st.body["metadata"]["generation"], 1);

  // Spec changes through /status are ignored; status changes through the main resource too.
  json both = st.body;
  both["spec"]["replicas"] = 5;
  both["status"]["observedGeneration"] = 7;
  auto main = call("PUT", std::string(kClusters) + "/ic", both);
  ASSERT_EQ(main.code, 200);
  EXPECT_EQ(main.body["spec"]["replicas"], 5);
  EXPECT_EQ(main.body["status"]["observedGeneration"], 1);
  EXPECT_EQ(main.body["metadata"]["generation"], 2);
  auto patch = call("PATCH", std::string(kClusters) + "/ic/status",
                    {{"spec", {{"replicas", 9}}}, {"status", {{"observedGeneration", 2}}}},
                    "application/merge-patch+json");
  ASSERT_EQ(patch.code, 200);
  EXPECT_EQ(patch.body["spec"]["replicas"], 5);
  EXPECT_EQ(patch.body["status"]["observedGeneration"], 2);
  EXPECT_EQ(patch.body["metadata"]["generation"], 2);
  // ConfigMaps have no status subresource.
  EXPECT_EQ(call("GET", std::string(kConfigMaps) + "/x/status").code, 404);
}

TEST_F(FakeApiServerTest, ServerSideApplyCreatesSkipsNoopsRemovesAndConflicts) {
  std::string url = std::string(kDeployments) + "/web?fieldManager=op";
  const std::string apply = "application/apply-patch+yaml";
  json want = {
      {"apiVersion", "apps/v1"},
      {"kind", "Deployment"},
      {"metadata", {{"name", "web"}, {"labels", {{"a", "1"}, {"b", "2"}}}}},
      {"spec",
       {{"replicas", 2},
        {"template", {{"spec", {{"containers", {{{"name", "app"}, {"image", "img:1"}}}}}}}}}}};
  EXPECT_EQ(call("PATCH", std::string(kDeployments) + "/web", want, apply).code, 422);
  auto created = call("PATCH", url, want, apply);
  ASSERT_EQ(created.code, 201) << created.body.dump();

  server_->reset_counters();
  auto again = call("PATCH", url, want, apply);
  ASSERT_EQ(again.code, 200);
  EXPECT_EQ(again.body["metadata"]["resourceVersion"], created.body["metadata"]["resourceVersion"]);
  EXPECT_EQ(server_->counters().noop_applies, 1);
  EXPECT_EQ(server_->counters().writes, 0);

  // Another manager adds a sidecar; the list merges by name.
  json sidecar = {
      {"apiVersion", "apps/v1"},
      {"kind", "Deployment"},
      {"metadata", {{"name", "web"}}},
      {"spec",
       {{"template", {{"spec", {{"containers", {{{"name", "side"}, {"image", "s:1"}}}}}}}}}}};
  ASSERT_EQ(
      call("PATCH", std::string(kDeployments) + "/web?fieldManager=mesh", sidecar, apply).code,
      200);
  // Dropping label b (owned by op alone) removes it; the sidecar stays.
  want["metadata"]["labels"].erase("b");
  auto dropped = call("PATCH", url, want, apply);
  ASSERT_EQ(dropped.code, 200);
  EXPECT_FALSE(dropped.body["metadata"]["labels"].contains("b"));
  EXPECT_EQ(dropped.body["spec"]["template"]["spec"]["containers"].size(), 2u);
  EXPECT_EQ(dropped.body["metadata"]["generation"], 2);  // the sidecar changed the spec

  // A person scales by hand: the operator's next apply of replicas conflicts.
  auto scaled = server_->merge_patch("deployments", "ns", "web", {{"spec", {{"replicas", 5}}}});
  ASSERT_TRUE(scaled.ok()) << scaled.status().message();
  auto conflicted = call("PATCH", url, want, apply);
  EXPECT_EQ(conflicted.code, 409);
  EXPECT_EQ(conflicted.body["reason"], "Conflict");
  EXPECT_NE(conflicted.body["message"].get<std::string>().find(".spec.replicas"),
            std::string::npos);
  auto forced = call("PATCH", url + "&force=true", want, apply);
  ASSERT_EQ(forced.code, 200);
  EXPECT_EQ(forced.body["spec"]["replicas"], 2);
  auto owners = server_->managed_fields("deployments", "ns", "web");
  EXPECT_NE(std::find(owners["op"].begin(), owners["op"].end(), ".spec.replicas"),
            owners["op"].end());

  // Dropping its container removes only that item.
  want["spec"]["template"]["spec"].erase("containers");
  auto trimmed = call("PATCH", url, want, apply);
  ASSERT_EQ(trimmed.code, 200);
  auto containers = trimmed.body["spec"]["template"]["spec"]["containers"];
  ASSERT_EQ(containers.size(), 1u);
  EXPECT_EQ(containers[0]["name"], "side");
}

TEST_F(FakeApiServerTest, ApplyToStatusChangesOnlyStatus) {
  ASSERT_EQ(call("POST", kClusters, cluster("ic", 1)).code, 201);
  json st = {{"apiVersion", "splitwise.io/v1alpha1"},
             {"kind", "InferenceCluster"},
             {"metadata", {{"name", "ic"}}},
             {"spec", {{"replicas", 9}}},
             {"status", {{"conditions", {{{"type", "Ready"}, {"status", "True"}}}}}}};
  auto r = call("PATCH", std::string(kClusters) + "/ic/status?fieldManager=op", st,
                "application/apply-patch+yaml");
  ASSERT_EQ(r.code, 200) << r.body.dump();
  EXPECT_EQ(r.body["spec"]["replicas"], 1);
  EXPECT_EQ(r.body["status"]["conditions"][0]["type"], "Ready");
  EXPECT_EQ(r.body["metadata"]["generation"], 1);
}

TEST_F(FakeApiServerTest, FinalizersDelayDeletionUntilTheLastIsRemoved) {
  auto w = watch(std::string(kConfigMaps) +
                 "?watch=true&resourceVersion=" + server_->resource_version());
  ASSERT_TRUE(w->wait_head());
  json cm = configmap("f");
  cm["metadata"]["finalizers"] = {"splitwise.io/cleanup"};
  ASSERT_EQ(call("POST", kConfigMaps, cm).code, 201);
  auto del = call("DELETE", std::string(kConfigMaps) + "/f");
  ASSERT_EQ(del.code, 200);
  auto held = server_->get("configmaps", "ns", "f");
  ASSERT_TRUE(held.has_value());
  EXPECT_TRUE((*held)["metadata"].contains("deletionTimestamp"));
  EXPECT_EQ((*held)["metadata"]["deletionGracePeriodSeconds"], 0);

  json released = *held;
  released["metadata"]["finalizers"] = json::array();
  auto put = call("PUT", std::string(kConfigMaps) + "/f", released);
  ASSERT_EQ(put.code, 200);
  EXPECT_FALSE(server_->get("configmaps", "ns", "f").has_value());
  ASSERT_TRUE(w->wait_events(3));
  auto events = w->changes();
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[0]["type"], "ADDED");
  EXPECT_EQ(events[1]["type"], "MODIFIED");
  EXPECT_TRUE(events[1]["object"]["metadata"].contains("deletionTimestamp"));
  EXPECT_EQ(events[2]["type"], "DELETED");
}

TEST_F(FakeApiServerTest, GarbageCollectorDeletesOwnedObjectsRecursively) {
  auto owner = server_->create("inferenceclusters", cluster("ic", 1));
  ASSERT_TRUE(owner.ok());
  auto ref = [](const json& o) {
    return json::array({{{"apiVersion", o["apiVersion"]},
                         {"kind", o["kind"]},
                         {"name", o["metadata"]["name"]},
                         {"uid", o["metadata"]["uid"]},
                         {"controller", true}}});
  };
  json child = configmap("child");
  child["metadata"]["ownerReferences"] = ref(*owner);
  auto c = server_->create("configmaps", child);
  ASSERT_TRUE(c.ok());
  json grandchild = configmap("grandchild");
  grandchild["metadata"]["ownerReferences"] = ref(*c);
  ASSERT_TRUE(server_->create("configmaps", grandchild).ok());
  ASSERT_TRUE(server_->create("configmaps", configmap("bystander")).ok());

  ASSERT_EQ(call("DELETE", std::string(kClusters) + "/ic").code, 200);
  EXPECT_FALSE(server_->get("configmaps", "ns", "child").has_value());
  EXPECT_FALSE(server_->get("configmaps", "ns", "grandchild").has_value());
  EXPECT_TRUE(server_->get("configmaps", "ns", "bystander").has_value());

  FakeApiServerOptions no_gc;
  no_gc.garbage_collector = false;
  restart(no_gc);
  owner = server_->create("inferenceclusters", cluster("ic", 1));
  child["metadata"]["ownerReferences"] = ref(*owner);
  ASSERT_TRUE(server_->create("configmaps", child).ok());
  ASSERT_TRUE(server_->remove("inferenceclusters", "ns", "ic").ok());
  EXPECT_TRUE(server_->get("configmaps", "ns", "child").has_value());
}

TEST_F(FakeApiServerTest, WatchReplaysFromAResourceVersionInOrder) {
  ASSERT_EQ(call("POST", kConfigMaps, configmap("before")).code, 201);
  std::string from = server_->resource_version();
  auto a = call("POST", kConfigMaps, configmap("a")).body;
  a["data"]["k"] = "changed";
  ASSERT_EQ(call("PUT", std::string(kConfigMaps) + "/a", a).code, 200);
  ASSERT_EQ(call("DELETE", std::string(kConfigMaps) + "/a").code, 200);
  // Other namespaces and kinds stay out of the stream.
  ASSERT_TRUE(server_->create("inferenceclusters", cluster("ic", 1)).ok());

  auto w = watch(std::string(kConfigMaps) + "?watch=1&resourceVersion=" + from);
  ASSERT_TRUE(w->wait_events(3));
  // A live event after the replay, written the way a person would.
  ASSERT_TRUE(server_->put_object("configmaps", configmap("live")).ok());
  ASSERT_TRUE(w->wait_events(4));
  std::this_thread::sleep_for(50ms);
  auto events = w->changes();
  ASSERT_EQ(events.size(), 4u);
  std::vector<std::string> types;
  uint64_t last = std::stoull(from);
  for (auto& e : events) {
    types.push_back(e["type"]);
    EXPECT_GT(rv_of(e["object"]), last);
    last = rv_of(e["object"]);
  }
  EXPECT_EQ(types, (std::vector<std::string>{"ADDED", "MODIFIED", "DELETED", "ADDED"}));
  EXPECT_EQ(events[3]["object"]["metadata"]["name"], "live");

  // "0": the current state as synthetic ADDED events.
  auto fresh = watch(std::string(kConfigMaps) + "?watch=true&resourceVersion=0");
  ASSERT_TRUE(fresh->wait_events(2));
  auto initial = fresh->changes();
  ASSERT_EQ(initial.size(), 2u) << json(initial).dump();
  EXPECT_EQ(initial[0]["object"]["metadata"]["name"], "before");
  EXPECT_EQ(initial[1]["object"]["metadata"]["name"], "live");
}

TEST_F(FakeApiServerTest, BookmarksCarryTheCurrentVersionOnlyWhenAsked) {
  ASSERT_TRUE(server_->create("configmaps", configmap("c")).ok());
  auto with = watch(std::string(kConfigMaps) + "?watch=true&allowWatchBookmarks=true");
  auto without = watch(std::string(kConfigMaps) + "?watch=true");
  ASSERT_TRUE(with->wait_events(2));  // ADDED, then a bookmark
  std::this_thread::sleep_for(150ms);
  auto events = with->snapshot();
  EXPECT_EQ(events[1]["type"], "BOOKMARK");
  EXPECT_EQ(events[1]["object"]["metadata"]["resourceVersion"], server_->resource_version());
  EXPECT_EQ(events[1]["object"]["kind"], "ConfigMap");
  for (auto& e : without->snapshot()) EXPECT_NE(e["type"], "BOOKMARK");
}

TEST_F(FakeApiServerTest, WatchTimeoutEndsTheStreamCleanly) {
  auto w = watch(std::string(kConfigMaps) + "?watch=true&timeoutSeconds=1");
  ASSERT_TRUE(w->wait_end(3000ms));
  EXPECT_TRUE(w->ended_ok);
  EXPECT_EQ(w->code, 200);
}

TEST_F(FakeApiServerTest, ExpiredWatchIsA410BothWays) {
  ASSERT_TRUE(server_->create("configmaps", configmap("a")).ok());
  std::string old = server_->resource_version();
  ASSERT_TRUE(server_->create("configmaps", configmap("b")).ok());
  std::string target = std::string(kConfigMaps) + "?watch=true&resourceVersion=" + old;
  // Still in the history: fine.
  auto ok = watch(target);
  ASSERT_TRUE(ok->wait_events(1));
  EXPECT_EQ(ok->code, 200);

  server_->compact();
  auto gone = call("GET", target);
  EXPECT_EQ(gone.code, 410);
  EXPECT_EQ(gone.body["reason"], "Expired");
  EXPECT_EQ(gone.body["code"], 410);

  // As an ERROR event in a 200 stream, by fault (for one request) ...
  FaultRule rule;
  rule.query_regex = "watch=true";
  rule.action = FaultRule::Action::kExpiredAsEvent;
  server_->set_fault(rule);
  auto ev = watch(std::string(kConfigMaps) +
                  "?watch=true&resourceVersion=" + server_->resource_version());
  ASSERT_TRUE(ev->wait_end());
  EXPECT_EQ(ev->code, 200);
  ASSERT_EQ(ev->snapshot().size(), 1u);
  EXPECT_EQ(ev->snapshot()[0]["type"], "ERROR");
  EXPECT_EQ(ev->snapshot()[0]["object"]["code"], 410);
  EXPECT_EQ(ev->snapshot()[0]["object"]["reason"], "Expired");

  // ... and by option, when a bounded history ran out.
  FakeApiServerOptions options;
  options.watch_history = 2;
  options.expired_watch_as_event = true;
  restart(options);
  ASSERT_TRUE(server_->create("configmaps", configmap("a")).ok());
  std::string first = server_->resource_version();
  for (auto name : {"b", "c", "d"})
    ASSERT_TRUE(server_->create("configmaps", configmap(name)).ok());
  auto too_old = watch(std::string(kConfigMaps) + "?watch=true&resourceVersion=" + first);
  ASSERT_TRUE(too_old->wait_end());
  ASSERT_EQ(too_old->snapshot().size(), 1u);
  EXPECT_EQ(too_old->snapshot()[0]["object"]["code"], 410);
}

TEST_F(FakeApiServerTest, FaultsThrottleFailDelayAndDrop) {
  FaultRule throttle;
  throttle.method = "GET";
  throttle.path_regex = "/configmaps$";
  throttle.status = 429;
  throttle.retry_after_s = 3;
  int id = server_->set_fault(throttle);
  auto r = call("GET", kConfigMaps);
  EXPECT_EQ(r.code, 429);
  EXPECT_EQ(r.headers["retry-after"], "3");
  EXPECT_EQ(r.body["reason"], "TooManyRequests");
  EXPECT_EQ(call("GET", kConfigMaps).code, 200);  // one-shot
  EXPECT_EQ(server_->fault_hits(id), 1);

  FaultRule fail;
  fail.method = "POST";
  fail.status = 500;
  fail.times = 2;
  server_->set_fault(fail);
  EXPECT_EQ(call("POST", kConfigMaps, configmap("x")).code, 500);
  EXPECT_EQ(call("POST", kConfigMaps, configmap("x")).code, 500);
  EXPECT_EQ(call("POST", kConfigMaps, configmap("x")).code, 201);

  FaultRule delay;
  delay.action = FaultRule::Action::kDelay;
  delay.delay_ms = 300;
  server_->set_fault(delay);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(call("GET", std::string(kConfigMaps) + "/x").code, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);

  FaultRule drop;
  drop.action = FaultRule::Action::kDrop;
  server_->set_fault(drop);
  auto dropped = call("GET", std::string(kConfigMaps) + "/x");
  EXPECT_NE(dropped.code, 200);
  EXPECT_FALSE(dropped.error.empty());
  EXPECT_EQ(call("GET", std::string(kConfigMaps) + "/x").code, 200);

  auto c = server_->counters();
  EXPECT_EQ(c.count("create", "configmaps"), 3);
  EXPECT_EQ(c.count("get", "configmaps"), 3);
}

TEST_F(FakeApiServerTest, CutWatchBreaksTheStreamAfterKEvents) {
  FaultRule cut;
  cut.query_regex = "watch=true";
  cut.action = FaultRule::Action::kCutWatch;
  cut.cut_after_events = 2;
  server_->set_fault(cut);
  auto w = watch(std::string(kConfigMaps) + "?watch=true");
  ASSERT_TRUE(w->wait_head());
  for (auto name : {"a", "b", "c"}) {
    ASSERT_TRUE(server_->create("configmaps", configmap(name)).ok());
  }
  ASSERT_TRUE(w->wait_end());
  EXPECT_FALSE(w->ended_ok);
  EXPECT_EQ(w->changes().size(), 2u);
}

TEST_F(FakeApiServerTest, EventsAreStoredForTests) {
  json event = {{"apiVersion", "v1"},
                {"kind", "Event"},
                {"metadata", {{"name", "ic.1"}, {"namespace", "ns"}}},
                {"reason", "Scaled"},
                {"involvedObject", {{"kind", "InferenceCluster"}, {"name", "ic"}}}};
  ASSERT_EQ(call("POST", "/api/v1/namespaces/ns/events", event).code, 201);
  auto events = server_->events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["reason"], "Scaled");
}

}  // namespace
}  // namespace splitwise::fake
