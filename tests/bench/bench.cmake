# Benchmark helpers (tests/bench/README.md).  Included from tests/tests.cmake.
#
# irp_yaml_pull: the peer of `irp validate` in tests/bench/run.sh; it only
# pulls libyaml events, so it is the floor under any loader built on libyaml.
add_executable(irp_yaml_pull ${CMAKE_CURRENT_LIST_DIR}/yaml_pull.c)
target_link_libraries(irp_yaml_pull PRIVATE PkgConfig::YAML)

# The harness's own checks (harness_test.py): the generated inputs make irp
# and every peer do the same work, the descriptor probe agrees with a run
# under the same limit, run.sh reports and fails as documented.  Small and
# timing-free, so it runs in every build; a missing peer is skipped.
irp_script_test(bench_harness python3 ${CMAKE_CURRENT_LIST_DIR}/harness_test.py)

# The harness itself, in its quick form, as an opt-in test: timings on
# shared CI machines are noise, so this only proves the harness still runs
# and that every run of every workload exits 0.  The quick sizes still
# spawn thousands of processes and run ansible: minutes on a busy machine.
option(IRP_BENCH_SMOKE "Add a test running tests/bench/run.sh --quick" OFF)
if(IRP_BENCH_SMOKE)
  add_test(NAME bench_quick
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/run.sh --quick ${PROJECT_BINARY_DIR})
  set_tests_properties(bench_quick PROPERTIES TIMEOUT 1800
    ENVIRONMENT "IRP=$<TARGET_FILE:irp>;IRP_YAML_PULL=$<TARGET_FILE:irp_yaml_pull>")
endif()
