# Tests of the Helm chart's Grafana dashboards and Prometheus alert rules. Included from
# tests/CMakeLists.txt after SPLITWISE_SHARED_DIR, splitwise_testutil and
# splitwise_e2e_harness exist. The sources are not *_test.cpp, so that the glob there does
# not build them a second time: these binaries need a fixture and links of their own.
#
#   Observability.InstallPrometheus  fixture: installs Debian's `prometheus` (promtool and
#                                    the server) when missing; never fails
#   observability_static             promtool check/test rules, dashboard queries parse,
#                                    every metric name is defined (a few seconds)
#   observability_live               a real Prometheus scrapes router + workers on
#                                    stories260K and splitwise-controller on the fake API
#                                    server; every query must return data (~30-60 s)
# Both skip (not pass) without promtool/prometheus; the live test also without the model.

add_test(NAME Observability.InstallPrometheus
         COMMAND ${CMAKE_CURRENT_LIST_DIR}/install_prometheus.sh)
set_tests_properties(Observability.InstallPrometheus PROPERTIES
  FIXTURES_SETUP prometheus LABELS cpu TIMEOUT 300)

add_library(splitwise_obs_queries STATIC ${CMAKE_CURRENT_LIST_DIR}/obs_queries.cpp)
target_include_directories(splitwise_obs_queries PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(splitwise_obs_queries PUBLIC nlohmann_json::nlohmann_json yaml-cpp)
target_compile_definitions(splitwise_obs_queries PRIVATE
  SPLITWISE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")

add_executable(observability_static_test ${CMAKE_CURRENT_LIST_DIR}/observability_static.cpp)
target_link_libraries(observability_static_test PRIVATE splitwise_obs_queries
                      splitwise_testutil GTest::gtest_main)
gtest_discover_tests(observability_static_test
  PROPERTIES LABELS cpu FIXTURES_REQUIRED prometheus TIMEOUT 30
             SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]"
  DISCOVERY_TIMEOUT 60)

add_executable(observability_live_test ${CMAKE_CURRENT_LIST_DIR}/observability_live.cpp)
add_dependencies(observability_live_test splitwise-worker splitwise-router splitwise-controller)
target_link_libraries(observability_live_test PRIVATE splitwise_obs_queries splitwise_testutil
                      splitwise_e2e_harness splitwise_fake_apiserver splitwise_controller
                      splitwise_net GTest::gtest_main)
target_compile_definitions(observability_live_test PRIVATE
  SPLITWISE_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
  SPLITWISE_CONTROLLER_BIN="$<TARGET_FILE:splitwise-controller>")
gtest_discover_tests(observability_live_test
  PROPERTIES LABELS cpu FIXTURES_REQUIRED prometheus TIMEOUT 150
             SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]"
  DISCOVERY_TIMEOUT 60)
