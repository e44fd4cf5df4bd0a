// Helpers shared by tests: where ../shared lives, and skipping when it is absent.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace splitwise::testing {

// Root of the shared models/data folder: $SPLITWISE_SHARED, else ../shared beside the repo.
std::filesystem::path shared_dir();

// Path under shared_dir(); empty when it does not exist (callers skip on empty).
std::filesystem::path shared_path(const std::string& relative);

std::string read_file(const std::filesystem::path& path);

// An empty directory of the running test's own (named after suite and test), so files
// written by one test never leak into another.
std::filesystem::path fresh_temp_dir();

}  // namespace splitwise::testing

// Skips the current test with a message naming the missing file.
#define SW_REQUIRE_SHARED(var, relative)                                                \
  const std::filesystem::path var = ::splitwise::testing::shared_path(relative);        \
  if (var.empty()) {                                                                    \
    GTEST_SKIP() << "shared data not found: " << relative << " (set SPLITWISE_SHARED)"; \
  }
