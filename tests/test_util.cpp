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

}  // namespace splitwise::testing
