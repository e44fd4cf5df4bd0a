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
