// The phase-split cluster as a client sees it: real splitwise-worker and splitwise-router
// processes on local ports, driven through the OpenAI HTTP API, checked against llama2.c's
// greedy output and the processes' own metrics.
#include <gtest/gtest.h>

#include <latch>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/e2e/cluster_harness.h"
#include "tests/test_util.h"

namespace {

using namespace splitwise::e2e;
using json = nlohmann::json;

constexpr const char* kModel = "models/stories260K/stories260K.bin";
constexpr const char* kGolden = "models/golden/s260_greedy_n64_prompt_once.stdout.txt";
constexpr const char* kOnce = "Once upon a time";
const Labels kPrefill{{"phase", "prefill"}}, kDecode{{"phase", "decode"}};

struct Completion {
  int status = 0;
  std::string text;
  std::string finish;  // finish_reason; "" while null
  json usage;
  int events = 0;     // streamed: data events before [DONE]
  bool done = false;  // streamed: [DONE] arrived
  std::string error;  // transport failure, error event or error body
};

json request(const std::string& prompt, int max_tokens, double temperature = 0,
             std::optional<int64_t> seed = std::nullopt) {
  json j = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", temperature}};
  if (seed) j["seed"] = *seed;
  return j;
}

Completion complete(const Endpoint& router, const json& body) {
  Completion c;
  const HttpResult r = http_post(router, "/v1/completions", body.dump());
  c.status = r.status;
  const json j = json::parse(r.body, nullptr, false);
  if (r.status != 200 || !j.is_object() || !j.contains("choices")) {
    c.error = r.error + r.body;
    return c;
  }
  c.text = j["choices"][0].value("text", "");
  if (j["choices"][0]["finish_reason"].is_string()) c.finish = j["choices"][0]["finish_reason"];
  c.usage = j.value("usage", json());
  return c;
}

// Streams `body` and joins the text of every chunk; `on_chunk(n)` runs after the n-th.
Completion complete_streamed(const Endpoint& router, json body,
                             const std::function<void(int)>& on_chunk = {}) {
  body["stream"] = true;
  Completion c;
  const SseResult r = http_post_sse(router, "/v1/completions", body.dump(), [&](const auto& data) {
    if (c.done) c.error += "event after [DONE]: " + data + "\n";
    if (data == "[DONE]") return c.done = true;
    const json j = json::parse(data, nullptr, false);
    if (!j.is_object() || j.contains("error")) c.error += "bad or error event: " + data + "\n";
    if (j.is_object() && j.contains("usage")) c.usage = j["usage"];
    if (j.is_object() && j.contains("choices") && !j["choices"].empty()) {
      const json& choice = j["choices"][0];
      c.text += choice.value("text", "");
      if (choice["finish_reason"].is_string()) c.finish = choice["finish_reason"];
    }
    ++c.events;
    if (on_chunk) on_chunk(c.events);
    return true;
  });
  c.status = r.status;
  c.error += r.error + r.body;
  if (!r.complete && r.error.empty()) c.error += "stream did not end";
  return c;
}

ClusterOptions pools(int prompt, int token, int mixed) {
  ClusterOptions o;
  o.prompt = prompt;
  o.token = token;
  o.mixed = mixed;
  return o;
}

double worker_metric(const Worker& w, std::string_view name, const Labels& labels) {
  return w.metric(name, labels).value_or(-1);  // -1: absent, which every check here rejects
}

TEST(Cluster, SplitPathGolden) {
  SW_REQUIRE_SHARED(model, kModel);
  SW_REQUIRE_SHARED(golden_path, kGolden);
  const std::string golden = splitwise::testing::read_file(golden_path);
  Cluster cluster(model);
  ASSERT_EQ(cluster.start(), "");

  const Completion whole = complete(cluster.router(), request(kOnce, 60));
  ASSERT_EQ(whole.status, 200) << whole.error;
  EXPECT_EQ(kOnce + whole.text + "\n", golden);
  EXPECT_EQ(whole.finish, "length");
  EXPECT_EQ(whole.usage,
            json({{"prompt_tokens", 5}, {"completion_tokens", 60}, {"total_tokens", 65}}));

  json body = request(kOnce, 60);
  body["stream_options"] = {{"include_usage", true}};
  const Completion streamed = complete_streamed(cluster.router(), body);
  EXPECT_TRUE(streamed.done && streamed.error.empty()) << streamed.error;
  EXPECT_EQ(kOnce + streamed.text + "\n", golden);
  EXPECT_EQ(streamed.finish, "length");
  EXPECT_GE(streamed.events, 60);  // one chunk per token, at least
  EXPECT_EQ(streamed.usage["completion_tokens"], 60);

  // Two requests of 5 prompt tokens: the prompt worker prefilled them (and sampled each
  // first token); the token worker decoded the other 59 tokens of each, and nothing else.
  const Worker& prompt = *cluster.workers("prompt")[0];
  const Worker& token = *cluster.workers("token")[0];
  EXPECT_EQ(worker_metric(prompt, "splitwise_worker_tokens_total", kPrefill), 2 * 5);
  EXPECT_EQ(worker_metric(prompt, "splitwise_worker_tokens_total", kDecode), 0);
  EXPECT_EQ(worker_metric(token, "splitwise_worker_tokens_total", kPrefill), 0);
  EXPECT_EQ(worker_metric(token, "splitwise_worker_tokens_total", kDecode), 2 * 59);
  const double sent =
      worker_metric(prompt, "splitwise_worker_kv_handoff_bytes_total", {{"direction", "sent"}});
  const double received =
      worker_metric(token, "splitwise_worker_kv_handoff_bytes_total", {{"direction", "received"}});
  EXPECT_GT(sent, 0);
  EXPECT_EQ(sent, received);
  EXPECT_TRUE(cluster.wait_kv_released()) << cluster.logs();
}

TEST(Cluster, ConcurrentRequestsMatchAlone) {
  SW_REQUIRE_SHARED(model, kModel);
  Cluster cluster(model);
  ASSERT_EQ(cluster.start(), "");

  const char* starts[] = {kOnce,
                          "Once upon a time there was",
                          "Once upon a time, a little",
                          "Once upon a time in a big forest, there lived a",
                          "Once",
                          "Once upon a time Lily and Ben went to the park. They",
                          "Once upon a time the sun",
                          "Once upon a time a dog named"};
  const char* ends[] = {"", " happy", " little", " big red", " old", " kind", " funny", " tall"};
  constexpr int kRequests = 64;
  std::vector<json> bodies;
  for (int i = 0; i < kRequests; ++i) {
    json b = request(std::string(starts[i % 8]) + ends[i / 8], 20 + (i * 7) % 21);
    if (i % 3 == 0) b.update({{"temperature", 0.8}, {"seed", 1000 + i}});
    if (i % 6 == 3) b["top_p"] = 0.9;
    bodies.push_back(b);
  }
  auto run = [&](int i) {
    return i % 4 == 1 ? complete_streamed(cluster.router(), bodies[i])
                      : complete(cluster.router(), bodies[i]);
  };
  std::vector<Completion> alone, together(kRequests);
  for (int i = 0; i < kRequests; ++i) alone.push_back(run(i));

  std::latch go(kRequests);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i)
    threads.emplace_back([&, i] {
      go.arrive_and_wait();  // all at once, so that they share batches
      together[i] = run(i);
    });
  for (std::thread& t : threads) t.join();

  for (int i = 0; i < kRequests; ++i) {
    SCOPED_TRACE("request " + std::to_string(i) + ": " + bodies[i].dump());
    ASSERT_EQ(alone[i].status, 200) << alone[i].error;
    EXPECT_EQ(together[i].status, 200) << together[i].error;
    EXPECT_EQ(together[i].text, alone[i].text);
    EXPECT_EQ(together[i].finish, alone[i].finish);
    EXPECT_FALSE(alone[i].text.empty());
  }
  // Alone, every decode step holds one token; steps of more prove the requests overlapped.
  const Worker& token = *cluster.workers("token")[0];
  const auto steps = token.metric("splitwise_worker_batch_size_tokens_count");
  const auto single = token.metric("splitwise_worker_batch_size_tokens_bucket", {{"le", "1"}});
  ASSERT_TRUE(steps && single);
  EXPECT_GT(*steps - *single, 0) << "no decode step batched two requests";
  EXPECT_TRUE(cluster.wait_kv_released()) << cluster.logs();
}

// One try: true when the kill landed while the request was being decoded.
bool kill_token_worker_mid_stream(const std::filesystem::path& model) {
  Cluster cluster(model, pools(1, 2, 0));
  EXPECT_EQ(cluster.start(), "");
  if (::testing::Test::HasFailure()) return true;
  // Greedy "Once upon a time" ends itself (a BOS) after 342 tokens: ~50 ms of decode.
  json body = request(kOnce, 507);
  body["stream_options"] = {{"include_usage", true}};
  const Completion calm = complete_streamed(cluster.router(), body);
  EXPECT_TRUE(calm.done && calm.error.empty()) << calm.error;
  EXPECT_GT(calm.events, 100);
  EXPECT_GT(calm.usage.value("completion_tokens", 0), 100) << calm.usage;
  EXPECT_TRUE(cluster.wait_kv_released());
  const double failovers = cluster.router_metric("splitwise_router_failovers_total").value_or(-1);

  Worker* victim = nullptr;
  const Completion hit = complete_streamed(cluster.router(), body, [&](int n) {
    if (n != 3) return;
    for (Worker* w : cluster.workers("token"))
      if (w->used_kv_blocks() > 0) victim = w;
    if (victim) victim->process->kill9();
  });
  if (!victim) return false;  // it had finished: try again
  EXPECT_TRUE(WIFSIGNALED(victim->process->wait_status()));
  EXPECT_TRUE(hit.done && hit.error.empty()) << hit.error << cluster.logs();
  EXPECT_EQ(hit.text, calm.text);
  EXPECT_EQ(hit.finish, calm.finish);
  EXPECT_EQ(hit.usage, calm.usage);  // tokens made before the failover count once
  EXPECT_GT(cluster.router_metric("splitwise_router_failovers_total").value_or(-1), failovers);
  EXPECT_TRUE(cluster.wait_kv_released()) << cluster.logs();
  return true;
}

TEST(Cluster, TokenWorkerKilledMidStream) {
  SW_REQUIRE_SHARED(model, kModel);
  for (int attempt = 1; attempt <= 5; ++attempt)
    if (kill_token_worker_mid_stream(model)) return RecordProperty("kill_tries", attempt);
  FAIL() << "in 5 tries the request always finished before its token worker could be killed";
}

TEST(Cluster, BadInputIsRejectedAndServerKeepsServing) {
  SW_REQUIRE_SHARED(model, kModel);
  Cluster cluster(model);
  ASSERT_EQ(cluster.start(), "");

  std::string words, big;
  for (int i = 0; i < 3000; ++i) words += "dog ";
  big.assign((1 << 20) + 4096, 'a');
  const std::string completions = "/v1/completions", chat = "/v1/chat/completions";
  const std::string too_long = "context_length_exceeded";
  struct Bad {
    Bad(const char* n, std::string p, std::string b, int st = 400, std::string c = "")
        : name(n), path(std::move(p)), body(std::move(b)), status(st), code(std::move(c)) {}
    const char* name;
    std::string path, body;
    int status;
    std::string code;  // error.code when it must be one
  };
  const std::vector<Bad> cases = {
      {"malformed JSON", completions, R"({"prompt": "Once", "max_tokens": )"},
      {"not an object", completions, R"(["Once"])"},
      {"missing prompt", completions, R"({"max_tokens": 5})"},
      {"max_tokens of the wrong type", completions, R"({"prompt": "Once", "max_tokens": "ten"})"},
      {"prompt of the wrong type", completions, R"({"prompt": 42})"},
      {"huge max_tokens", completions, R"({"prompt": "Once", "max_tokens": 1e12})"},
      {"huge integer max_tokens", completions,
       R"({"prompt": "Once", "max_tokens": 1000000000000})"},
      {"max_tokens past the context", completions, R"({"prompt": "Once", "max_tokens": 600})", 400,
       too_long},
      {"zero max_tokens", completions, R"({"prompt": "Once", "max_tokens": 0})"},
      {"negative temperature", completions, R"({"prompt": "Once", "temperature": -0.5})"},
      {"invalid UTF-8", completions, "{\"prompt\": \"Once \xff\xfe upon\"}"},
      {"lone surrogate", completions, R"({"prompt": "Once \ud800 upon"})"},
      {"prompt over the context", completions, json{{"prompt", words}, {"max_tokens", 1}}.dump(),
       400, too_long},
      {"unknown field", completions, R"({"prompt": "Once", "frobnicate": true})"},
      {"n = 2", completions, R"({"prompt": "Once", "n": 2})"},
      {"body over 1 MiB", completions, json{{"prompt", big}}.dump(), 413},
      {"chat: messages not an array", chat, R"({"messages": "hi"})"},
      {"chat: unknown role", chat, R"({"messages": [{"role": "wizard", "content": "hi"}]})"},
  };
  for (const Bad& bad : cases) {
    SCOPED_TRACE(bad.name);
    const HttpResult r = http_post(cluster.router(), bad.path, bad.body);
    EXPECT_EQ(r.status, bad.status) << r.error << r.body;
    const json j = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error") && j["error"].is_object()) << r.body;
    const json& e = j["error"];
    EXPECT_TRUE(e["message"].is_string() && !e["message"].empty()) << r.body;
    EXPECT_TRUE(e["type"].is_string() && !e["type"].empty()) << r.body;
    if (!bad.code.empty()) {
      EXPECT_EQ(e.value("code", json()), bad.code) << r.body;
    }
  }

  const Completion ok = complete(cluster.router(), request(kOnce, 20));
  EXPECT_EQ(ok.status, 200) << ok.error;
  EXPECT_EQ(ok.usage["completion_tokens"], 20);
  // Validation is the router's: nothing invalid reached a worker.
  EXPECT_EQ(worker_metric(*cluster.workers("prompt")[0], "splitwise_worker_tokens_total", kPrefill),
            5);
  EXPECT_TRUE(cluster.wait_kv_released()) << cluster.logs();
}

TEST(Cluster, ClientDisconnectCancels) {
  SW_REQUIRE_SHARED(model, kModel);
  Cluster cluster(model);
  ASSERT_EQ(cluster.start(), "");
  const Labels cancelled{{"outcome", "cancelled"}};
  const Worker& token = *cluster.workers("token")[0];

  json body = request(kOnce, 400);
  body["stream"] = true;
  int events = 0;
  const SseResult r = http_post_sse(cluster.router(), "/v1/completions", body.dump(),
                                    [&](const std::string&) { return ++events < 3; });
  EXPECT_TRUE(r.disconnected) << r.error << r.body;
  EXPECT_EQ(r.events.size(), 3u);

  // Counters appear at their first increment: absent reads as 0.
  auto counts_within_5s = [](const auto& read) {
    return poll_until([&] { return read().value_or(0) >= 1; }, 5s);
  };
  EXPECT_TRUE(counts_within_5s([&] {
    return cluster.router_metric("splitwise_router_requests_total", cancelled);
  })) << cluster.logs();
  // The router passed the cancel on: the token worker stopped the sequence, not finished it.
  EXPECT_TRUE(counts_within_5s([&] {
    return token.metric("splitwise_worker_requests_total", cancelled);
  })) << cluster.logs();
  EXPECT_TRUE(cluster.wait_kv_released(5s)) << cluster.logs();
  EXPECT_EQ(cluster.router_metric("splitwise_router_inflight_requests"), 0);

  const Completion after = complete(cluster.router(), request(kOnce, 10));
  EXPECT_EQ(after.status, 200) << after.error;
}

TEST(Cluster, MixedPoolServes) {
  SW_REQUIRE_SHARED(model, kModel);
  SW_REQUIRE_SHARED(golden_path, kGolden);
  const std::string golden = splitwise::testing::read_file(golden_path);
  Cluster cluster(model, pools(0, 0, 1));
  ASSERT_EQ(cluster.start(), "");

  const Completion whole = complete(cluster.router(), request(kOnce, 60));
  ASSERT_EQ(whole.status, 200) << whole.error;
  EXPECT_EQ(kOnce + whole.text + "\n", golden);
  EXPECT_EQ(whole.finish, "length");
  const Completion streamed = complete_streamed(cluster.router(), request(kOnce, 60));
  EXPECT_TRUE(streamed.done && streamed.error.empty()) << streamed.error;
  EXPECT_EQ(kOnce + streamed.text + "\n", golden);

  const Worker& mixed = *cluster.workers("mixed")[0];
  EXPECT_EQ(worker_metric(mixed, "splitwise_worker_tokens_total", kPrefill), 2 * 5);
  EXPECT_EQ(worker_metric(mixed, "splitwise_worker_tokens_total", kDecode), 2 * 59);
  EXPECT_EQ(worker_metric(mixed, "splitwise_worker_kv_handoff_bytes_total", {}), 0);
  EXPECT_TRUE(cluster.wait_kv_released()) << cluster.logs();
}

}  // namespace
