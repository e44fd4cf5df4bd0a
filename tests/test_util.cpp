#include "tests/test_util.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace splitwise::testing {

std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("SPLITWISE_SHARED"); env && *env) return env;
  return SPLITWISE_SHARED_DIR;
}

std::filesystem::path shared_path(const std::string& relative) {
  auto path = shared_dir() / relative;
  return std::filesystem::exists(path) ? path : std::filesystem::path();
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::filesystem::path fresh_temp_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  auto dir = std::filesystem::path(::testing::TempDir()) /
             (std::string("splitwise_") + info->test_suite_name() + "_" + info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace splitwise::testing
