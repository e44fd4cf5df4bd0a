// A test fixture holding stories260K's weights, loaded from ../shared (skips when absent).
#pragma once

#include <gtest/gtest.h>

#include "tests/test_util.h"
#include "workers/engine/weights.h"

namespace splitwise::engine {

struct StoriesFixture : ::testing::Test {
  void SetUp() override {
    const auto path = testing::shared_path("models/stories260K/stories260K.bin");
    if (path.empty()) GTEST_SKIP() << "shared data not found: models/stories260K/stories260K.bin";
    auto w = load_model(path);
    ASSERT_TRUE(w.ok()) << w.status().message();
    weights = std::move(w.value());
  }
  ModelWeights weights;
};

}  // namespace splitwise::engine
