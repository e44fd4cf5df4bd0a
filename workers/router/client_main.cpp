// splitwise-client: sends one completion to a router and prints the text as it streams,
// then time to first token and tokens/s. The demo's client; also handy by hand.
#include <CLI/CLI.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "workers/net/http.h"

using namespace splitwise;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  CLI::App app{"Send one streamed completion to a Splitwise router"};
  std::string host = "127.0.0.1", prompt = "Once upon a time";
  int port = 8000, max_tokens = 120;
  double temperature = 0.0;
  double wait_s = 0;
  app.add_option("--host", host, "router address");
  app.add_option("--port", port, "router port");
  app.add_option("-p,--prompt", prompt, "prompt text");
  app.add_option("-n,--max-tokens", max_tokens, "tokens to generate")->check(CLI::PositiveNumber);
  app.add_option("-t,--temperature", temperature, "0 = greedy")->check(CLI::Range(0.0, 2.0));
  app.add_option("--wait", wait_s, "seconds to wait for the router to have healthy workers");
  CLI11_PARSE(app, argc, argv);

  boost::asio::io_context io;
  net::HttpClient client(io);
  // Workers join the router's pools on its first health poll: wait for a usable pair.
  for (const auto deadline = Clock::now() + std::chrono::duration<double>(wait_s);;) {
    bool ready = false;
    net::HttpRequest health;
    health.method = "GET";
    health.target = "/health";
    client.request(
        host, static_cast<uint16_t>(port), health, 1000, [&](Result<net::HttpResponse> r) {
          if (!r.ok() || r->status != 200) return;
          const auto j = nlohmann::json::parse(r->body, nullptr, false);
          if (j.is_discarded() || !j.contains("healthy_workers")) return;
          const auto& h = j["healthy_workers"];
          ready = (h.value("prompt", 0) > 0 && h.value("token", 0) > 0) || h.value("mixed", 0) > 0;
        });
    io.run();
    io.restart();
    if (ready) break;
    if (Clock::now() >= deadline) {
      std::fprintf(stderr, "router at %s:%d has no usable workers\n", host.c_str(), port);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  net::HttpRequest req;
  req.method = "POST";
  req.target = "/v1/completions";
  req.headers["content-type"] = "application/json";
  req.body = nlohmann::json{{"prompt", prompt},
                            {"max_tokens", max_tokens},
                            {"temperature", temperature},
                            {"stream", true},
                            {"stream_options", {{"include_usage", true}}}}
                 .dump();

  const auto start = Clock::now();
  Clock::time_point first{}, last{};
  int64_t tokens = 0, chunks = 0;
  int status = 0;
  std::string error;
  std::printf("%s", prompt.c_str());
  client.stream(
      host, static_cast<uint16_t>(port), req, 120000,
      [&](const net::HttpResponse& head) { status = head.status; },
      [&](std::string_view line) {
        if (line.rfind("data: ", 0) != 0) {
          if (status != 200 && !line.empty()) error += std::string(line);
          return;
        }
        line.remove_prefix(6);
        if (line == "[DONE]") return;
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded()) return;
        if (j.contains("error")) error = j["error"].value("message", "error");
        if (j.contains("usage") && j["usage"].is_object())
          tokens = j["usage"].value("completion_tokens", int64_t{0});
        if (!j.contains("choices") || j["choices"].empty()) return;
        const std::string text = j["choices"][0].value("text", "");
        if (!text.empty() && chunks++ == 0) first = Clock::now();
        last = Clock::now();
        std::printf("%s", text.c_str());
        std::fflush(stdout);
      },
      [&](Status st) {
        if (!st.ok() && error.empty()) error = st.message();
      });
  io.run();
  std::printf("\n");
  std::fflush(stdout);  // the text before the figures on stderr
  if (status != 200 || !error.empty()) {
    std::fprintf(stderr, "request failed (HTTP %d): %s\n", status, error.c_str());
    return 1;
  }
  const double ttft = std::chrono::duration<double>(first - start).count();
  const double decode = std::chrono::duration<double>(last - first).count();
  std::fprintf(stderr, "TTFT %.1f ms, %lld tokens, %.0f tokens/s after the first, %.1f ms total\n",
               ttft * 1e3, static_cast<long long>(tokens),
               tokens > 1 && decode > 0 ? (tokens - 1) / decode : 0.0,
               std::chrono::duration<double>(last - start).count() * 1e3);
  return 0;
}
