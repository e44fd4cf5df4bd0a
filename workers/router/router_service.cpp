#include "workers/router/router_service.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include <chrono>
#include <nlohmann/json.hpp>

#include "workers/router/chat_template.h"
#include "workers/router/openai_api.h"
#include "workers/router/stop_matcher.h"

namespace splitwise::router {

namespace {
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void respond_error(net::ResponseWriter& w, const ApiError& e, int retry_after_s = 0) {
  std::map<std::string, std::string> headers;
  if (retry_after_s > 0) headers["retry-after"] = std::to_string(retry_after_s);
  w.respond(e.http_status, "application/json", to_body(error_json(e)), headers);
}

FinishReason finish_of(const std::string& s) {
  return s == "length" ? FinishReason::kLength : FinishReason::kStop;
}
}  // namespace

// State of one client request; lives as long as its flow's callbacks.
struct RouterService::Call {
  std::shared_ptr<net::ResponseWriter> writer;
  CompletionRequest request;
  std::string id;
  int64_t created = 0;
  Usage usage;
  engine::StreamDecoder decoder;
  StopMatcher matcher;
  std::string text;  // non-streaming: the whole completion
  bool stream_started = false;
  bool finished = false;
  Clock::time_point arrival = Clock::now();
  Clock::time_point last_token;
  std::shared_ptr<RequestFlow> flow;

  Call(const engine::Tokenizer& tok, CompletionRequest req)
      : request(std::move(req)), decoder(tok), matcher(request.stop) {}
};

RouterService::RouterService(const engine::Tokenizer* tokenizer, RouterOptions options)
    : tokenizer_(tokenizer), options_(std::move(options)) {
  net::ServerOptions http_opts;
  http_opts.host = options_.host;
  http_opts.port = options_.port;
  http_opts.max_body_bytes = options_.max_body_bytes;
  http_ = std::make_unique<net::HttpServer>(io_, http_opts);
  client_ = std::make_unique<net::HttpClient>(io_);
  pool_ = std::make_unique<WorkerPool>(io_, *client_, options_.workers, options_.pool);
  if (options_.chat_template) {
    Result<ChatTemplate> t = ChatTemplate::compile(*options_.chat_template);
    if (t.ok())
      chat_template_ = std::move(t.value());
    else
      spdlog::warn("model's chat template not usable ({}); chat uses the plain format",
                   t.status().message());
  }
  // Templates write the special tokens themselves, as text the tokenizer maps back.
  if (auto bos = tokenizer_->bos_id())
    template_options_.bos_token = tokenizer_->decode({&*bos, 1}, false);
  if (auto eos = tokenizer_->eos_ids(); !eos.empty())
    template_options_.eos_token = tokenizer_->decode({&eos[0], 1}, false);
  install_routes();
}

RouterService::~RouterService() { stop(); }

Status RouterService::start() {
  SW_RETURN_IF_ERROR(http_->start());
  pool_->start();
  thread_ = std::thread([this] { io_.run(); });
  return {};
}

void RouterService::stop() {
  if (!thread_.joinable()) return;
  boost::asio::post(io_, [this] {
    pool_->stop();
    http_->stop();
  });
  io_.stop();
  thread_.join();
}

void RouterService::refresh_pool_metrics() {
  for (auto role : {worker::Role::kPrompt, worker::Role::kToken, worker::Role::kMixed}) {
    metrics_.workers(worker::to_string(role), pool_->healthy_count(role), pool_->known_count(role));
  }
  metrics_.inflight(inflight_);
}

void RouterService::install_routes() {
  http_->route("GET", "/health", [this](net::HttpRequest, std::shared_ptr<net::ResponseWriter> w) {
    nlohmann::json j = {{"status", "ok"}};
    for (auto role : {worker::Role::kPrompt, worker::Role::kToken, worker::Role::kMixed})
      j["healthy_workers"][worker::to_string(role)] = pool_->healthy_count(role);
    w->respond(200, "application/json", j.dump());
  });
  http_->route("GET", "/metrics", [this](net::HttpRequest, std::shared_ptr<net::ResponseWriter> w) {
    refresh_pool_metrics();
    w->respond(200, "text/plain; version=0.0.4", metrics_.render());
  });
  http_->route("GET", "/v1/models",
               [this](net::HttpRequest, std::shared_ptr<net::ResponseWriter> w) {
                 const nlohmann::json model = {{"id", options_.model_name},
                                               {"object", "model"},
                                               {"created", 0},
                                               {"owned_by", "splitwise"}};
                 w->respond(200, "application/json",
                            nlohmann::json{{"object", "list"}, {"data", {model}}}.dump());
               });
  http_->route("POST", "/v1/completions",
               [this](net::HttpRequest req, std::shared_ptr<net::ResponseWriter> w) {
                 handle_completion(std::move(req), std::move(w), false);
               });
  http_->route("POST", "/v1/chat/completions",
               [this](net::HttpRequest req, std::shared_ptr<net::ResponseWriter> w) {
                 handle_completion(std::move(req), std::move(w), true);
               });
}

void RouterService::handle_completion(net::HttpRequest req, std::shared_ptr<net::ResponseWriter> w,
                                      bool chat) {
  ApiResult<CompletionRequest> parsed = parse_completion_request(req.body, chat);
  if (!parsed.ok()) {
    metrics_.request("invalid");
    return respond_error(*w, parsed.error());
  }
  CompletionRequest& cr = parsed.value();
  if (!cr.model.empty() && cr.model != options_.model_name) {
    metrics_.request("invalid");
    return respond_error(*w, ApiError{404, "invalid_request_error",
                                      "model '" + cr.model + "' does not exist; this server has '" +
                                          options_.model_name + "'",
                                      "model", "model_not_found"});
  }

  std::string text = cr.prompt;
  bool add_bos = true;
  if (chat && chat_template_) {
    Result<std::string> rendered = chat_template_->render(cr.messages, template_options_);
    if (!rendered.ok()) {
      // The conversation breaks the model's rules (e.g. roles must alternate).
      metrics_.request("invalid");
      return respond_error(
          *w, ApiError{400, "invalid_request_error", rendered.status().message(), "messages", ""});
    }
    text = std::move(rendered.value());
    add_bos = false;  // the template wrote bos_token itself
  } else if (chat) {
    text = render_fallback(cr.messages);
  }
  std::vector<int32_t> prompt = tokenizer_->encode(text, add_bos);
  if (prompt.empty()) {
    metrics_.request("invalid");
    return respond_error(*w, ApiError{400, "invalid_request_error", "the prompt is empty",
                                      chat ? "messages" : "prompt", ""});
  }
  ApiResult<int> max_tokens =
      resolve_max_tokens(cr, static_cast<int>(prompt.size()), options_.context_length);
  if (!max_tokens.ok()) {
    metrics_.request("invalid");
    return respond_error(*w, max_tokens.error());
  }
  if (inflight_ >= options_.max_inflight) {
    metrics_.request("rejected");
    return respond_error(
        *w,
        ApiError{429, "rate_limit_error",
                 "server is at its limit of " + std::to_string(options_.max_inflight) +
                     " requests in flight; retry later",
                 "", "overloaded"},
        1);
  }

  auto call = std::make_shared<Call>(*tokenizer_, std::move(cr));
  call->writer = w;
  call->id = make_request_id(chat, ++request_counter_ ^ static_cast<uint64_t>(unix_now()) << 20);
  call->created = unix_now();
  call->usage.prompt_tokens = static_cast<int64_t>(prompt.size());
  // The token before the completion decides how its first piece decodes (llama2.c drops
  // a leading space after BOS); its own text was the caller's and is not sent.
  (void)call->decoder.push(prompt.back());

  FlowRequest fr;
  fr.prompt = prompt;
  fr.max_new_tokens = max_tokens.value();
  fr.temperature = static_cast<float>(call->request.temperature);
  fr.top_p = static_cast<float>(call->request.top_p);
  fr.seed = call->request.seed ? static_cast<uint64_t>(*call->request.seed) : request_counter_;
  fr.stop_ids = tokenizer_->eos_ids();
  if (auto bos = tokenizer_->bos_id()) fr.stop_ids.push_back(*bos);

  ++inflight_;
  const auto model = options_.model_name;
  auto send_chunk = [call, chat, model](const std::string& piece, FinishReason finish) {
    if (!call->stream_started) {
      call->writer->start_stream(200, "text/event-stream", {{"cache-control", "no-cache"}});
      call->stream_started = true;
      if (chat)
        call->writer->write(sse_event(
            chat_chunk_json(call->id, model, call->created, true, "", FinishReason::kNone)));
    }
    if (piece.empty() && finish == FinishReason::kNone) return;
    call->writer->write(
        sse_event(chat ? chat_chunk_json(call->id, model, call->created, false, piece, finish)
                       : completion_chunk_json(call->id, model, call->created, piece, finish)));
  };
  auto finish = [this, call, chat, model, send_chunk](FinishReason reason) {
    if (call->finished) return;
    call->finished = true;
    --inflight_;
    if (call->flow) call->flow->cancel();
    std::string tail;
    if (!call->matcher.stopped()) {
      StopMatcher::Output out = call->matcher.push(call->decoder.flush());
      tail = out.text;
      if (out.stopped)
        reason = FinishReason::kStop;
      else
        tail += call->matcher.flush();
    }
    metrics_.end_to_end(since(call->arrival));
    metrics_.request_tokens(call->usage.prompt_tokens, call->usage.completion_tokens);
    metrics_.request(reason == FinishReason::kLength ? "length" : "stop");
    if (call->request.stream) {
      send_chunk(tail, reason);
      if (call->request.include_usage)
        call->writer->write(
            sse_event(usage_chunk_json(call->id, model, call->created, chat, call->usage)));
      call->writer->write(sse_done());
      call->writer->finish();
      call->flow.reset();
      return;
    }
    call->text += tail;
    const auto body =
        chat ? chat_completion_json(call->id, model, call->created, call->text, reason, call->usage)
             : completion_json(call->id, model, call->created, call->text, reason, call->usage);
    call->writer->respond(200, "application/json", to_body(body));
    call->flow.reset();  // breaks the call -> flow -> callbacks -> call cycle
  };

  FlowCallbacks cb;
  cb.on_token = [this, call, send_chunk, finish](int32_t token) {
    if (call->finished) return;
    const auto now = Clock::now();
    if (call->usage.completion_tokens++ == 0)
      metrics_.ttft(std::chrono::duration<double>(now - call->arrival).count());
    else
      metrics_.time_between_tokens(std::chrono::duration<double>(now - call->last_token).count());
    call->last_token = now;
    StopMatcher::Output out = call->matcher.push(call->decoder.push(token));
    if (call->request.stream)
      send_chunk(out.text, FinishReason::kNone);
    else
      call->text += out.text;
    if (out.stopped) finish(FinishReason::kStop);
  };
  cb.on_finish = [finish](const std::string& reason) { finish(finish_of(reason)); };
  cb.on_error = [this, call](int status, const std::string& message, int retry_after_s) {
    if (call->finished) return;
    call->finished = true;
    --inflight_;
    metrics_.request(status == 429 ? "rejected" : "failed");
    ApiError e{status,
               status == 429   ? "rate_limit_error"
               : status == 400 ? "invalid_request_error"
                               : "server_error",
               message, "", ""};
    if (!call->stream_started) {
      respond_error(*call->writer, e, retry_after_s);
    } else {
      call->writer->write(sse_event(error_json(e)));
      call->writer->write(sse_done());
      call->writer->finish();
    }
    call->flow.reset();
  };
  cb.on_failover = [this] { metrics_.failover(); };

  call->flow = std::make_shared<RequestFlow>(*pool_, *client_, options_.policy, options_.flow,
                                             std::move(fr), std::move(cb));
  w->on_client_gone([this, call] {
    if (call->finished) return;
    call->finished = true;
    --inflight_;
    metrics_.request("cancelled");
    call->flow->cancel();
    call->flow.reset();
  });
  // A local reference: the flow may finish (and the call drop it) inside start().
  std::shared_ptr<RequestFlow> flow = call->flow;
  flow->start();
}

}  // namespace splitwise::router
