# A stand-in for libnvidia-ml.so.1 that gpu_metrics_test loads by path, so GpuMetrics is
# tested through the same dlopen/dlsym path as on a GPU node, on machines with no driver.
# Included from tests/CMakeLists.txt after the loop that creates gpu_metrics_test.
add_library(splitwise_fake_nvml SHARED ${CMAKE_CURRENT_LIST_DIR}/fake_nvml.cpp)
if(TARGET gpu_metrics_test)
  add_dependencies(gpu_metrics_test splitwise_fake_nvml)
  target_compile_definitions(gpu_metrics_test PRIVATE
    SPLITWISE_FAKE_NVML="$<TARGET_FILE:splitwise_fake_nvml>")
  # dlopen lives in libdl before glibc 2.34.
  target_link_libraries(gpu_metrics_test PRIVATE ${CMAKE_DL_LIBS})
endif()
