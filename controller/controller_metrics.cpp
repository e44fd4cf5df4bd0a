#include "controller/controller_metrics.h"

#include <prometheus/text_serializer.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "workers/net/http.h"

namespace splitwise::controller {

namespace {
using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

double value_of(const prometheus::Counter* c) { return c->Value(); }
}  // namespace

ControllerMetrics::ControllerMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  auto& total = BuildCounter()
                    .Name("splitwise_controller_reconcile_total")
                    .Help("Reconcile passes by result (requeue: succeeded, asked to run again)")
                    .Register(r);
  success_ = &total.Add({{"result", "success"}});
  error_ = &total.Add({{"result", "error"}});
  requeue_ = &total.Add({{"result", "requeue"}});
  // A pass is a handful of API calls: milliseconds normally, seconds under retries.
  duration_ = &BuildHistogram()
                   .Name("splitwise_controller_reconcile_duration_seconds")
                   .Help("Time of one reconcile pass")
                   .Register(r)
                   .Add({}, Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                        2.5, 5, 10, 30});
  depth_ = &BuildGauge()
                .Name("splitwise_controller_workqueue_depth")
                .Help("Keys ready to be reconciled (not counting delayed or in-flight keys)")
                .Register(r)
                .Add({});
  retries_ = &BuildCounter()
                  .Name("splitwise_controller_workqueue_retries_total")
                  .Help("Keys put back into the queue with a rate-limited delay after an error")
                  .Register(r)
                  .Add({});
  leader_ = &BuildGauge()
                 .Name("splitwise_controller_is_leader")
                 .Help("1 while this replica holds the leader lease and runs the workers")
                 .Register(r)
                 .Add({});
  pool_replicas_ = &BuildGauge()
                        .Name("splitwise_controller_pool_replicas")
                        .Help("Replicas of an InferenceCluster pool, desired and ready")
                        .Register(r);
  desired_ = &BuildGauge()
                  .Name("splitwise_autoscaler_desired_replicas")
                  .Help("Replicas the autoscaler last decided for a pool")
                  .Register(r);
  decisions_ = &BuildCounter()
                    .Name("splitwise_autoscaler_decisions_total")
                    .Help("Autoscaler decisions that changed a pool's replicas, by direction")
                    .Register(r);
  limited_ = &BuildGauge()
                  .Name("splitwise_autoscaler_limited")
                  .Help("1 when maxReplicas or the budget kept a pool below what the load needs")
                  .Register(r);
  metrics_up_ = &BuildGauge()
                     .Name("splitwise_autoscaler_metrics_up")
                     .Help("1 when the autoscaler's last look at the load succeeded")
                     .Register(r);
}

void ControllerMetrics::set_pool_replicas(const std::string& ns, const std::string& cluster,
                                          const std::string& pool, int desired, int ready) {
  const prometheus::Labels base{{"namespace", ns}, {"cluster", cluster}, {"pool", pool}};
  auto with = [&](const char* state) {
    prometheus::Labels l = base;
    l["state"] = state;
    return l;
  };
  pool_replicas_->Add(with("desired")).Set(desired);
  pool_replicas_->Add(with("ready")).Set(ready);
}

void ControllerMetrics::autoscaler_decision(const std::string& ns, const std::string& cluster,
                                            const std::string& pool, int previous, int desired,
                                            bool limited) {
  const prometheus::Labels l{{"namespace", ns}, {"cluster", cluster}, {"pool", pool}};
  desired_->Add(l).Set(desired);
  limited_->Add(l).Set(limited ? 1 : 0);
  // Both directions exist from the first decision, so rate() has a zero to start from.
  for (const char* dir : {"up", "down"}) {
    prometheus::Labels d = l;
    d["direction"] = dir;
    auto& c = decisions_->Add(d);
    if ((desired > previous && dir[0] == 'u') || (desired < previous && dir[0] == 'd'))
      c.Increment();
  }
}

void ControllerMetrics::autoscaler_metrics_up(const std::string& ns, const std::string& cluster,
                                              bool up) {
  metrics_up_->Add({{"namespace", ns}, {"cluster", cluster}}).Set(up ? 1 : 0);
}

void ControllerMetrics::forget_cluster(const std::string& ns, const std::string& cluster) {
  // prometheus-cpp removes one exact label set at a time: try every one this class adds.
  for (const char* pool : {"prompt", "token", "mixed", "router"}) {
    const prometheus::Labels l{{"namespace", ns}, {"cluster", cluster}, {"pool", pool}};
    for (const char* state : {"desired", "ready"}) {
      prometheus::Labels s = l;
      s["state"] = state;
      if (pool_replicas_->Has(s)) pool_replicas_->Remove(&pool_replicas_->Add(s));
    }
  }
  forget_autoscaler(ns, cluster);
}

void ControllerMetrics::forget_autoscaler(const std::string& ns, const std::string& cluster) {
  for (const char* pool : {"prompt", "token", "mixed"}) {
    const prometheus::Labels l{{"namespace", ns}, {"cluster", cluster}, {"pool", pool}};
    if (desired_->Has(l)) desired_->Remove(&desired_->Add(l));
    if (limited_->Has(l)) limited_->Remove(&limited_->Add(l));
    for (const char* dir : {"up", "down"}) {
      prometheus::Labels d = l;
      d["direction"] = dir;
      if (decisions_->Has(d)) decisions_->Remove(&decisions_->Add(d));
    }
  }
  const prometheus::Labels c{{"namespace", ns}, {"cluster", cluster}};
  if (metrics_up_->Has(c)) metrics_up_->Remove(&metrics_up_->Add(c));
}

void ControllerMetrics::observe_reconcile(std::string_view result, double seconds) {
  if (result == "success") {
    success_->Increment();
  } else if (result == "requeue") {
    requeue_->Increment();
  } else {
    error_->Increment();
  }
  duration_->Observe(seconds);
}

void ControllerMetrics::retried() { retries_->Increment(); }
void ControllerMetrics::set_queue_depth(std::size_t depth) {
  depth_->Set(static_cast<double>(depth));
}
void ControllerMetrics::set_leader(bool leader) { leader_->Set(leader ? 1 : 0); }

double ControllerMetrics::reconcile_total(const std::string& result) const {
  if (result == "success") return value_of(success_);
  if (result == "requeue") return value_of(requeue_);
  return value_of(error_);
}
double ControllerMetrics::retries_total() const { return retries_->Value(); }
double ControllerMetrics::is_leader() const { return leader_->Value(); }

std::string ControllerMetrics::render() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

struct ProbeServer::Impl {
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard{io.get_executor()};
  net::HttpServer server;
  std::thread thread;

  explicit Impl(const ProbeServerOptions& options)
      : server(io, net::ServerOptions{.host = options.host, .port = options.port}) {}
};

ProbeServer::ProbeServer(ProbeServerOptions options, std::function<std::string()> render_metrics,
                         std::function<bool()> ready)
    : impl_(std::make_unique<Impl>(options)) {
  impl_->server.route("GET", "/metrics",
                      [render = std::move(render_metrics)](net::HttpRequest,
                                                           std::shared_ptr<net::ResponseWriter> w) {
                        w->respond(200, "text/plain; version=0.0.4", render());
                      });
  impl_->server.route("GET", "/healthz",
                      [](net::HttpRequest, std::shared_ptr<net::ResponseWriter> w) {
                        w->respond(200, "text/plain", "ok\n");
                      });
  impl_->server.route(
      "GET", "/readyz",
      [ready = std::move(ready)](net::HttpRequest, std::shared_ptr<net::ResponseWriter> w) {
        if (ready()) {
          w->respond(200, "text/plain", "ok\n");
        } else {
          w->respond(503, "text/plain", "informers not synced\n");
        }
      });
}

ProbeServer::~ProbeServer() { stop(); }

Status ProbeServer::start() {
  if (Status st = impl_->server.start(); !st.ok()) return st;
  impl_->thread = std::thread([this] { impl_->io.run(); });
  return Status();
}

uint16_t ProbeServer::port() const { return impl_->server.port(); }

void ProbeServer::stop() {
  if (!impl_->thread.joinable()) return;
  impl_->server.stop();
  impl_->guard.reset();
  impl_->io.stop();
  impl_->thread.join();
}

}  // namespace splitwise::controller
