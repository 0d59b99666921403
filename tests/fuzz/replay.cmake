# Fuzz targets replayed in every build (tests/fuzz/README.md).  Included
# from tests/tests.cmake.
#
# fuzz_replay_TARGET links the target's LLVMFuzzerTestOneInput() with
# driver.c instead of libFuzzer; the test fuzz_replay_TARGET runs it over
# tests/fuzz/regressions/TARGET and the seed corpus seeds.py assembles, so
# every crash once found stays fixed in the gcc and the sanitizer builds.
set(IRP_FUZZ_TARGETS playbook expr inputs journal answers scenario)

foreach(t ${IRP_FUZZ_TARGETS})
  add_executable(fuzz_replay_${t} ${CMAKE_CURRENT_LIST_DIR}/fuzz_${t}.c
                 ${CMAKE_CURRENT_LIST_DIR}/fuzz_common.c ${CMAKE_CURRENT_LIST_DIR}/driver.c)
  target_link_libraries(fuzz_replay_${t} PRIVATE irpcore)
  irp_script_test(fuzz_replay_${t} bash ${CMAKE_CURRENT_LIST_DIR}/replay.sh ${t}
                  $<TARGET_FILE:fuzz_replay_${t}>)
endforeach()
