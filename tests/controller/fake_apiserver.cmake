# Fake Kubernetes API server for the operator's tests (no real apiserver can run here).
file(GLOB FAKE_APISERVER_SOURCES CONFIGURE_DEPENDS
     ${CMAKE_CURRENT_LIST_DIR}/fake_apiserver.cpp ${CMAKE_CURRENT_LIST_DIR}/fake_apiserver_*.cpp)
list(FILTER FAKE_APISERVER_SOURCES EXCLUDE REGEX ".*_test\\.cpp$")
add_library(splitwise_fake_apiserver STATIC ${FAKE_APISERVER_SOURCES})
target_include_directories(splitwise_fake_apiserver PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(splitwise_fake_apiserver PUBLIC splitwise_net nlohmann_json::nlohmann_json
                      spdlog::spdlog)
foreach(t fake_apiserver_test manager_test leader_election_test reconciler_test operator_e2e_test
        autoscale_reconcile_test)
  if(TARGET ${t})
    target_link_libraries(${t} PRIVATE splitwise_fake_apiserver)
  endif()
endforeach()
