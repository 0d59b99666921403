# Benchmark helpers (tests/bench/README.md).  Included from tests/tests.cmake.
#
# irp_yaml_pull: the peer of `irp validate` in tests/bench/run.sh; it only
# pulls libyaml events, so it is the floor under any loader built on libyaml.
add_executable(irp_yaml_pull ${CMAKE_CURRENT_LIST_DIR}/yaml_pull.c)
target_link_libraries(irp_yaml_pull PRIVATE PkgConfig::YAML)

# The harness itself, in its quick form, as an opt-in test: timings on
# shared CI machines are noise, so this only proves the harness still runs
# and that `irp validate` accepts the generated playbook.
option(IRP_BENCH_SMOKE "Add a test running tests/bench/run.sh --quick" OFF)
if(IRP_BENCH_SMOKE)
  add_test(NAME bench_quick
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/run.sh --quick ${PROJECT_BINARY_DIR})
  set_tests_properties(bench_quick PROPERTIES TIMEOUT 600
    ENVIRONMENT "IRP=$<TARGET_FILE:irp>;IRP_YAML_PULL=$<TARGET_FILE:irp_yaml_pull>")
endif()
