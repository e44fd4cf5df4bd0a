// The fake apiserver's HTTP face: URL routing, discovery, faults and the test API.
#include "tests/controller/fake_apiserver.h"

#include <spdlog/spdlog.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <random>
#include <regex>
#include <thread>

#include "tests/controller/fake_apiserver_internal.h"

namespace splitwise::fake {

namespace asio = boost::asio;
using internal::ApiResponse;
using internal::Store;

namespace {

std::vector<ResourceInfo> builtin_resources() {
  return {
      {"", "v1", "configmaps", "ConfigMap", true, false},
      {"", "v1", "services", "Service", true, true},
      {"", "v1", "events", "Event", true, false},
      {"", "v1", "pods", "Pod", true, true},
      {"", "v1", "nodes", "Node", false, true},
      {"apps", "v1", "deployments", "Deployment", true, true},
      {"coordination.k8s.io", "v1", "leases", "Lease", true, false},
      {"splitwise.io", "v1alpha1", "inferenceclusters", "InferenceCluster", true, true},
      {"monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", true, false},
  };
}

constexpr const char* kMonitoringGroup = "monitoring.coreos.com";

std::string url_decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    if (next > pos) out.push_back(url_decode(path.substr(pos, next - pos)));
    pos = next + 1;
  }
  return out;
}

json error_body(int code, const std::string& reason, const std::string& message) {
  return internal::status_json({code, reason, message});
}

}  // namespace

namespace internal {

Query parse_query(const std::string& raw) {
  Query q;
  size_t pos = 0;
  while (pos <= raw.size() && !raw.empty()) {
    size_t amp = raw.find('&', pos);
    if (amp == std::string::npos) amp = raw.size();
    std::string pair = raw.substr(pos, amp - pos);
    size_t eq = pair.find('=');
    if (!pair.empty()) {
      q.params[url_decode(pair.substr(0, eq))] =
          eq == std::string::npos ? "" : url_decode(pair.substr(eq + 1));
    }
    pos = amp + 1;
  }
  return q;
}

}  // namespace internal

struct FaultEntry {
  int id;
  FaultRule rule;
  std::regex path;
  std::regex query;
  int hits = 0;
};

struct FakeApiServer::Impl {
  explicit Impl(FakeApiServerOptions opts)
      : options(std::move(opts)), store(options), rng(options.seed) {
    for (auto& r : builtin_resources()) types.push_back(r);
    for (auto& r : options.extra_resources) types.push_back(r);
  }

  FakeApiServerOptions options;
  std::deque<ResourceInfo> types;  // stable addresses: the store keys on them
  Store store;

  asio::io_context io;
  std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::unique_ptr<net::HttpServer> server;  // after io: destroyed before it
  std::unique_ptr<asio::steady_timer> bookmark_timer;
  std::thread thread;
  uint16_t port = 0;

  mutable std::mutex faults_mu;  // guards faults, next_fault_id, rng
  std::vector<FaultEntry> faults;
  int next_fault_id = 1;
  std::mt19937_64 rng;

  bool served(const ResourceInfo& t) const {
    return t.group != kMonitoringGroup || options.serve_monitoring;
  }

  const ResourceInfo* find_type(const std::string& group, const std::string& version,
                                const std::string& resource) const {
    for (const auto& t : types) {
      if (t.group == group && t.version == version && t.resource == resource) return &t;
    }
    return nullptr;
  }

  // "deployments" or "apps/v1/deployments" or "v1/configmaps". A typo is a test bug.
  const ResourceInfo* resolve(const std::string& name) const {
    auto parts = split_path(name);
    const ResourceInfo* found = nullptr;
    if (parts.size() == 1) {
      for (const auto& t : types) {
        if (t.resource == parts[0]) found = &t;
      }
    } else if (parts.size() == 2) {
      found = find_type("", parts[0], parts[1]);
    } else if (parts.size() == 3) {
      found = find_type(parts[0], parts[1], parts[2]);
    }
    if (found == nullptr) spdlog::error("fake apiserver: unknown resource {}", name);
    SW_CHECK(found != nullptr);
    return found;
  }

  std::optional<FaultRule> match_fault(const std::string& method, const std::string& path,
                                       const std::string& query) {
    std::lock_guard lock(faults_mu);
    for (auto& f : faults) {
      if (f.rule.times == 0) continue;
      if (!f.rule.method.empty() && f.rule.method != method) continue;
      if (!f.rule.path_regex.empty() && !std::regex_search(path, f.path)) continue;
      if (!f.rule.query_regex.empty() && !std::regex_search(query, f.query)) continue;
      if (f.rule.probability < 1.0 &&
          std::uniform_real_distribution<double>(0, 1)(rng) >= f.rule.probability) {
        continue;
      }
      if (f.rule.times > 0) --f.rule.times;
      ++f.hits;
      return f.rule;
    }
    return std::nullopt;
  }

  void handle(net::HttpRequest req, std::shared_ptr<net::ResponseWriter> writer);
  void serve(net::HttpRequest req, std::shared_ptr<net::ResponseWriter> writer,
             RequestRecord record, const std::optional<FaultRule>& fault);
  ApiResponse discovery(const std::vector<std::string>& parts, bool* handled) const;
  void arm_bookmarks();
};

ApiResponse FakeApiServer::Impl::discovery(const std::vector<std::string>& parts,
                                           bool* handled) const {
  *handled = true;
  auto resource_list = [&](const std::string& group, const std::string& version) {
    json resources = json::array();
    for (const auto& t : types) {
      if (t.group != group || t.version != version || !served(t)) continue;
      resources.push_back(
          {{"name", t.resource},
           {"singularName", ""},
           {"namespaced", t.namespaced},
           {"kind", t.kind},
           {"verbs", {"create", "delete", "get", "list", "patch", "update", "watch"}}});
      if (t.status_subresource) {
        resources.push_back({{"name", t.resource + "/status"},
                             {"singularName", ""},
                             {"namespaced", t.namespaced},
                             {"kind", t.kind},
                             {"verbs", {"get", "patch", "update"}}});
      }
    }
    std::string gv = group.empty() ? version : group + "/" + version;
    if (resources.empty()) {
      return ApiResponse{404, error_body(404, "NotFound", "the server could not find " + gv)};
    }
    return ApiResponse{200,
                       {{"kind", "APIResourceList"},
                        {"apiVersion", "v1"},
                        {"groupVersion", gv},
                        {"resources", resources}}};
  };
  auto group_json = [&](const std::string& group) {
    json versions = json::array();
    for (const auto& t : types) {
      if (t.group != group || !served(t)) continue;
      json v = {{"groupVersion", group + "/" + t.version}, {"version", t.version}};
      if (std::find(versions.begin(), versions.end(), v) == versions.end()) versions.push_back(v);
    }
    if (versions.empty()) return json();
    return json{{"name", group}, {"versions", versions}, {"preferredVersion", versions[0]}};
  };
  if (parts.size() == 1 && parts[0] == "version") {
    return {200, {{"major", "1"}, {"minor", "30"}, {"gitVersion", "v1.30.0-splitwise-fake"}}};
  }
  if (parts.size() == 1 && parts[0] == "api") {
    return {200,
            {{"kind", "APIVersions"},
             {"versions", {"v1"}},
             {"serverAddressByClientCIDRs",
              {{{"clientCIDR", "0.0.0.0/0"},
                {"serverAddress", "127.0.0.1:" + std::to_string(port)}}}}}};
  }
  if (parts.size() == 2 && parts[0] == "api" && parts[1] == "v1") return resource_list("", "v1");
  if (parts.size() == 1 && parts[0] == "apis") {
    json groups = json::array();
    std::vector<std::string> seen;
    for (const auto& t : types) {
      if (t.group.empty() || std::find(seen.begin(), seen.end(), t.group) != seen.end()) continue;
      seen.push_back(t.group);
      json g = group_json(t.group);
      if (!g.is_null()) groups.push_back(g);
    }
    return {200, {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}}};
  }
  if (parts.size() == 2 && parts[0] == "apis") {
    json g = group_json(parts[1]);
    if (g.is_null())
      return {404, error_body(404, "NotFound", "the server could not find " + parts[1])};
    g["kind"] = "APIGroup";
    g["apiVersion"] = "v1";
    return {200, g};
  }
  if (parts.size() == 3 && parts[0] == "apis") return resource_list(parts[1], parts[2]);
  *handled = false;
  return {};
}

void FakeApiServer::Impl::handle(net::HttpRequest req,
                                 std::shared_ptr<net::ResponseWriter> writer) {
  size_t q = req.target.find('?');
  RequestRecord record;
  record.method = req.method;
  record.path = req.target.substr(0, q);
  record.query = q == std::string::npos ? "" : req.target.substr(q + 1);
  auto fault = match_fault(req.method, record.path, record.query);
  if (fault && fault->action == FaultRule::Action::kDelay) {
    auto timer =
        std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(fault->delay_ms));
    timer->async_wait([this, timer, req = std::move(req), writer = std::move(writer),
                       record](boost::system::error_code) mutable {
      serve(std::move(req), std::move(writer), std::move(record), std::nullopt);
    });
    return;
  }
  serve(std::move(req), std::move(writer), std::move(record), fault);
}

void FakeApiServer::Impl::serve(net::HttpRequest req, std::shared_ptr<net::ResponseWriter> writer,
                                RequestRecord record, const std::optional<FaultRule>& fault) {
  auto parts = split_path(record.path);
  auto query = internal::parse_query(record.query);
  auto answer = [&](int code, const json& body, std::map<std::string, std::string> headers = {}) {
    record.code = code;
    store.count_request(record);
    writer->respond(code, "application/json", body.dump(), std::move(headers));
  };

  // Resolve the URL: /api/v1/... or /apis/{g}/{v}/..., then
  // [namespaces/{ns}/]{res}[/{name}[/status]].
  Store::Op op;
  op.query = query;
  bool handled = false;
  ApiResponse disc = discovery(parts, &handled);
  std::vector<std::string> rest;
  std::string group, version;
  if (!handled) {
    if (parts.size() >= 3 && parts[0] == "api" && parts[1] == "v1") {
      version = "v1";
      rest.assign(parts.begin() + 2, parts.end());
    } else if (parts.size() >= 4 && parts[0] == "apis") {
      group = parts[1];
      version = parts[2];
      rest.assign(parts.begin() + 3, parts.end());
    }
  }
  if (!rest.empty() && rest[0] == "namespaces" && rest.size() >= 3) {
    op.ns = rest[1];
    rest.erase(rest.begin(), rest.begin() + 2);
  } else if (!rest.empty() && rest[0] == "namespaces") {
    rest.clear();  // the namespaces resource itself is not served
  }
  if (!rest.empty()) {
    op.type = find_type(group, version, rest[0]);
    if (op.type && !served(*op.type)) op.type = nullptr;
  }
  if (op.type && rest.size() >= 2) op.name = rest[1];
  op.status = rest.size() == 3 && rest[2] == "status";
  bool shape_ok = op.type != nullptr && rest.size() <= 3 && (rest.size() < 3 || op.status) &&
                  (op.type->namespaced || op.ns.empty());
  record.ns = op.ns;
  record.name = op.name;
  if (op.type) record.resource = op.type->resource + (op.status ? "/status" : "");

  std::string content_type = req.headers.count("content-type") ? req.headers["content-type"] : "";
  content_type = content_type.substr(0, content_type.find(';'));
  bool watch = query.flag("watch");
  if (handled) {
    record.verb = "discovery";
  } else if (shape_ok && req.method == "GET") {
    record.verb = op.name.empty() ? (watch ? "watch" : "list") : "get";
  } else if (shape_ok && req.method == "POST" && op.name.empty()) {
    record.verb = "create";
  } else if (shape_ok && req.method == "PUT" && !op.name.empty()) {
    record.verb = "update";
  } else if (shape_ok && req.method == "PATCH" && !op.name.empty()) {
    record.verb = content_type == "application/apply-patch+yaml" ? "apply" : "patch";
  } else if (shape_ok && req.method == "DELETE" && !op.name.empty()) {
    record.verb = "delete";
  } else {
    record.verb = "unknown";
  }

  if (fault && fault->action == FaultRule::Action::kStatus) {
    std::map<std::string, std::string> headers;
    std::string reason = "InternalError";
    if (fault->status == 429) reason = "TooManyRequests";
    if (fault->status == 503) reason = "ServiceUnavailable";
    if (fault->status == 429 || fault->status == 503) {
      headers["Retry-After"] = std::to_string(fault->retry_after_s);
    }
    answer(fault->status, error_body(fault->status, reason, "injected fault"), headers);
    return;
  }
  if (fault && fault->action == FaultRule::Action::kDrop) {
    // The net server has no way to close a socket unanswered: a started stream whose
    // writer is dropped goes out as a status line and then a connection closed in the
    // middle of the body, which every client reads as a broken response.
    store.count_request(record);
    writer->start_stream(200, "application/json");
    return;
  }
  if (handled) {
    answer(disc.code, disc.body);
    return;
  }
  if (op.type == nullptr || !shape_ok) {
    answer(404, error_body(404, "NotFound", "the server could not find the requested resource"));
    return;
  }
  if (record.verb == "unknown") {
    answer(405, error_body(405, "MethodNotAllowed",
                           "the server does not allow this method on the requested resource"));
    return;
  }
  if (op.type->namespaced && op.ns.empty() && record.verb != "list" && record.verb != "watch") {
    answer(404, error_body(404, "NotFound", "the server could not find the requested resource"));
    return;
  }
  if (op.status && !op.type->status_subresource) {
    answer(404, error_body(404, "NotFound", "the server could not find the requested resource"));
    return;
  }
  op.verb = record.verb;
  op.field_manager = query.get("fieldManager");
  op.force = query.flag("force");
  if (record.verb == "patch") {
    if (content_type == "application/merge-patch+json" ||
        content_type == "application/strategic-merge-patch+json") {
      op.patch_type = "merge";  // strategic merge is served as a plain merge patch
    } else if (content_type == "application/json-patch+json") {
      op.patch_type = "json";
    } else {
      answer(415, error_body(415, "UnsupportedMediaType",
                             "the body of the request was in an unknown format - accepted "
                             "media types include: application/json-patch+json, "
                             "application/merge-patch+json, application/apply-patch+yaml"));
      return;
    }
  }
  bool has_body = record.verb == "create" || record.verb == "update" || record.verb == "patch" ||
                  record.verb == "apply" || (record.verb == "delete" && !req.body.empty());
  if (has_body) {
    try {
      op.body = json::parse(req.body);
    } catch (const std::exception& e) {
      answer(400, error_body(400, "BadRequest",
                             std::string("the body is not JSON (this fake accepts only JSON, "
                                         "also for apply): ") +
                                 e.what()));
      return;
    }
  }
  if (record.verb == "watch") {
    int cut_after =
        fault && fault->action == FaultRule::Action::kCutWatch ? fault->cut_after_events : -1;
    bool force_expired = fault && fault->action == FaultRule::Action::kExpiredAsEvent;
    std::shared_ptr<internal::Watcher> w;
    auto refused = store.watch(op, writer, cut_after, force_expired, &w);
    if (refused) {
      answer(refused->code, refused->body);
      return;
    }
    record.code = 200;
    store.count_request(record);
    if (!w) return;
    uint64_t id = w->id;
    int timeout_s = std::atoi(query.get("timeoutSeconds").c_str());
    if (timeout_s > 0) {
      auto timer = std::make_shared<asio::steady_timer>(io, std::chrono::seconds(timeout_s));
      timer->async_wait([this, id](boost::system::error_code ec) {
        if (!ec) store.remove_watcher(id, true);
      });
      w->timer = timer;
    }
    w->writer->on_client_gone([this, id] { store.remove_watcher(id, false); });
    return;
  }
  ApiResponse resp = store.execute(op);
  answer(resp.code, resp.body);
}

void FakeApiServer::Impl::arm_bookmarks() {
  if (options.bookmark_interval_ms <= 0) return;
  bookmark_timer->expires_after(std::chrono::milliseconds(options.bookmark_interval_ms));
  bookmark_timer->async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    store.send_bookmarks();
    arm_bookmarks();
  });
}

FakeApiServer::FakeApiServer(FakeApiServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

FakeApiServer::~FakeApiServer() { stop(); }

Status FakeApiServer::start() {
  auto& im = *impl_;
  if (im.thread.joinable()) return Status::error("fake apiserver already started");
  net::ServerOptions so;
  so.host = "127.0.0.1";
  so.port = 0;
  so.max_body_bytes = 8 << 20;
  im.server = std::make_unique<net::HttpServer>(im.io, so);
  im.server->fallback([&im](net::HttpRequest req, std::shared_ptr<net::ResponseWriter> w) {
    im.handle(std::move(req), std::move(w));
  });
  SW_RETURN_IF_ERROR(im.server->start().with_context("fake apiserver"));
  im.port = im.server->port();
  im.io.restart();
  im.guard = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
      im.io.get_executor());
  im.bookmark_timer = std::make_unique<asio::steady_timer>(im.io);
  im.arm_bookmarks();
  im.thread = std::thread([&im] { im.io.run(); });
  return Status();
}

void FakeApiServer::stop() {
  auto& im = *impl_;
  if (!im.thread.joinable()) return;
  im.server->stop();
  im.store.close_watchers();
  asio::post(im.io, [&im] { im.bookmark_timer->cancel(); });
  im.guard.reset();
  // Lets the closes and stream ends posted above go out, without waiting for lingering
  // connections to drain.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  im.io.stop();
  im.thread.join();
  im.server.reset();
  im.bookmark_timer.reset();
}

uint16_t FakeApiServer::port() const { return impl_->port; }

std::string FakeApiServer::url() const { return "http://127.0.0.1:" + std::to_string(impl_->port); }

namespace {

Result<json> to_result(const ApiResponse& resp) {
  if (resp.code < 300) return resp.body;
  return Status::error(std::to_string(resp.code) + " " + resp.body.value("reason", "") + ": " +
                       resp.body.value("message", ""));
}

std::string meta_string(const json& object, const char* key) {
  if (!object.contains("metadata") || !object["metadata"].is_object()) return "";
  return object["metadata"].value(key, "");
}

}  // namespace

std::optional<json> FakeApiServer::get(const std::string& resource, const std::string& ns,
                                       const std::string& name) const {
  return impl_->store.get(impl_->resolve(resource), ns, name);
}

std::vector<json> FakeApiServer::list(const std::string& resource, const std::string& ns) const {
  Store::Op op;
  op.verb = "list";
  op.type = impl_->resolve(resource);
  op.ns = ns;
  auto resp = impl_->store.execute(op);
  return resp.body["items"].get<std::vector<json>>();
}

Result<json> FakeApiServer::create(const std::string& resource, json object) {
  Store::Op op;
  op.verb = "create";
  op.type = impl_->resolve(resource);
  op.ns = op.type->namespaced ? meta_string(object, "namespace") : "";
  op.body = std::move(object);
  return to_result(impl_->store.execute(op));
}

Result<json> FakeApiServer::put_object(const std::string& resource, json object) {
  Store::Op op;
  op.type = impl_->resolve(resource);
  op.ns = op.type->namespaced ? meta_string(object, "namespace") : "";
  op.name = meta_string(object, "name");
  op.verb = impl_->store.get(op.type, op.ns, op.name) ? "update" : "create";
  op.unconditional = true;
  op.body = std::move(object);
  return to_result(impl_->store.execute(op));
}

Result<json> FakeApiServer::update_status(const std::string& resource, const std::string& ns,
                                          const std::string& name, json status) {
  Store::Op op;
  op.verb = "update";
  op.type = impl_->resolve(resource);
  op.ns = ns;
  op.name = name;
  op.status = op.type->status_subresource;
  op.unconditional = true;
  auto current = impl_->store.get(op.type, ns, name);
  if (!current) return Status::error("404 NotFound: " + name);
  op.body = *current;
  op.body["metadata"].erase("resourceVersion");
  op.body["status"] = std::move(status);
  return to_result(impl_->store.execute(op));
}

Result<json> FakeApiServer::merge_patch(const std::string& resource, const std::string& ns,
                                        const std::string& name, const json& patch) {
  Store::Op op;
  op.verb = "patch";
  op.patch_type = "merge";
  op.type = impl_->resolve(resource);
  op.ns = ns;
  op.name = name;
  op.body = patch;
  return to_result(impl_->store.execute(op));
}

Result<json> FakeApiServer::apply(const std::string& resource, json object,
                                  const std::string& field_manager, bool force) {
  Store::Op op;
  op.verb = "apply";
  op.type = impl_->resolve(resource);
  op.ns = op.type->namespaced ? meta_string(object, "namespace") : "";
  op.name = meta_string(object, "name");
  op.field_manager = field_manager;
  op.force = force;
  op.body = std::move(object);
  return to_result(impl_->store.execute(op));
}

Status FakeApiServer::remove(const std::string& resource, const std::string& ns,
                             const std::string& name) {
  Store::Op op;
  op.verb = "delete";
  op.type = impl_->resolve(resource);
  op.ns = ns;
  op.name = name;
  auto result = to_result(impl_->store.execute(op));
  return result.ok() ? Status() : result.status();
}

std::vector<json> FakeApiServer::events() const { return list("v1/events"); }

std::map<std::string, std::vector<std::string>> FakeApiServer::managed_fields(
    const std::string& resource, const std::string& ns, const std::string& name) const {
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [manager, paths] : impl_->store.managers(impl_->resolve(resource), ns, name)) {
    for (const auto& p : paths) out[manager].push_back(internal::path_string(p));
  }
  return out;
}

std::string FakeApiServer::resource_version() const { return std::to_string(impl_->store.rv()); }

Counters FakeApiServer::counters() const { return impl_->store.counters(); }

void FakeApiServer::reset_counters() { impl_->store.reset_counters(); }

int FakeApiServer::set_fault(FaultRule rule) {
  std::lock_guard lock(impl_->faults_mu);
  int id = impl_->next_fault_id++;
  std::regex path(rule.path_regex), query(rule.query_regex);
  impl_->faults.push_back({id, std::move(rule), std::move(path), std::move(query), 0});
  return id;
}

void FakeApiServer::clear_faults() {
  std::lock_guard lock(impl_->faults_mu);
  impl_->faults.clear();
}

int FakeApiServer::fault_hits(int id) const {
  std::lock_guard lock(impl_->faults_mu);
  for (const auto& f : impl_->faults) {
    if (f.id == id) return f.hits;
  }
  return 0;
}

void FakeApiServer::compact() { impl_->store.compact(); }

}  // namespace splitwise::fake
