// The example InferenceClusters shipped in crds/examples, as JSON, for the operator tests.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "controller/api/yaml_json.h"
#include "tests/test_util.h"

namespace splitwise::controller {

// crds/examples/<file> parsed; a null Json (with the failure recorded) when it cannot be.
inline Json load_example(const std::string& file) {
  const auto path = std::filesystem::path(SPLITWISE_SOURCE_DIR) / "crds/examples" / file;
  auto j = yaml_to_json(testing::read_file(path));
  if (!j.ok()) {
    ADD_FAILURE() << path << ": " << j.status().message();
    return Json();
  }
  return *j;
}

}  // namespace splitwise::controller
