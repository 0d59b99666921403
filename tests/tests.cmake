# Test registration.  Every test gets a timeout so a hang fails, never stalls CI.
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)

# irp_unit_test(NAME): tests/unit/test_NAME.c, a cmocka program linked to the core.
function(irp_unit_test name)
  add_executable(test_${name} tests/unit/test_${name}.c)
  target_link_libraries(test_${name} PRIVATE irpcore PkgConfig::CMOCKA)
  target_include_directories(test_${name} PRIVATE runner)
  target_compile_definitions(test_${name} PRIVATE
    IRP_SOURCE_DIR="${PROJECT_SOURCE_DIR}" IRP_BINARY_DIR="${PROJECT_BINARY_DIR}")
  add_test(NAME unit_${name} COMMAND test_${name})
  set_tests_properties(unit_${name} PROPERTIES TIMEOUT 120)
endfunction()

# irp_script_test(NAME SCRIPT [ARGS...]): an end-to-end test driving the real binary.
function(irp_script_test name script)
  add_test(NAME ${name} COMMAND ${script} ${ARGN})
  set_tests_properties(${name} PROPERTIES TIMEOUT 600
    ENVIRONMENT "IRP=$<TARGET_FILE:irp>;IRP_SOURCE_DIR=${PROJECT_SOURCE_DIR};IRP_BINARY_DIR=${PROJECT_BINARY_DIR}")
endfunction()

irp_unit_test(diag)
irp_unit_test(timeutil)
irp_unit_test(value)
irp_unit_test(expr)
irp_unit_test(template)
include(tests/bench/bench.cmake)
irp_unit_test(journal)
irp_unit_test(proc)
irp_unit_test(node)
irp_unit_test(validate)
irp_script_test(e2e_example_playbooks ${PROJECT_SOURCE_DIR}/tests/e2e/example_playbooks.sh)
irp_script_test(e2e_diag_golden bash ${PROJECT_SOURCE_DIR}/tests/e2e/diag_golden.sh)
irp_script_test(e2e_yaml_corpus python3 ${PROJECT_SOURCE_DIR}/tests/e2e/yaml_corpus.py)
irp_script_test(e2e_limits bash ${PROJECT_SOURCE_DIR}/tests/e2e/limits.sh)
set_tests_properties(e2e_limits PROPERTIES SKIP_RETURN_CODE 77)
irp_unit_test(clock)
irp_script_test(e2e_run python3 ${PROJECT_SOURCE_DIR}/tests/e2e/run_engine.py)
irp_script_test(e2e_resume python3 ${PROJECT_SOURCE_DIR}/tests/e2e/resume.py)
irp_script_test(e2e_status_report python3 ${PROJECT_SOURCE_DIR}/tests/e2e/status_report.py)
irp_script_test(e2e_notify python3 ${PROJECT_SOURCE_DIR}/tests/e2e/notify.py)
irp_script_test(e2e_evidence python3 ${PROJECT_SOURCE_DIR}/tests/e2e/evidence.py)
irp_script_test(e2e_verify_note python3 ${PROJECT_SOURCE_DIR}/tests/e2e/verify_note.py)
irp_unit_test(arena)
