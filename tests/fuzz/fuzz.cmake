# libFuzzer targets (tests/fuzz/README.md; tests/fuzz/run.sh drives them).
# Included from CMakeLists.txt when IRP_FUZZ=ON and the compiler is clang.
#
# The core gets libFuzzer's coverage instrumentation (fuzzer-no-link), and
# it and everything linked with it AddressSanitizer (LeakSanitizer with it)
# and UndefinedBehaviorSanitizer, which abort on the first report so
# libFuzzer counts it as a crash.  Each fuzz_TARGET links libFuzzer, which
# brings main().
set(IRP_FUZZ_SANITIZERS -fsanitize=address,undefined -fno-sanitize-recover=undefined
                        -fno-omit-frame-pointer)
target_compile_options(irpcore PUBLIC ${IRP_FUZZ_SANITIZERS}
                       PRIVATE -fsanitize=fuzzer-no-link)
target_link_options(irpcore INTERFACE -fsanitize=address,undefined)

foreach(t playbook expr inputs journal answers scenario)
  add_executable(fuzz_${t} ${CMAKE_CURRENT_LIST_DIR}/fuzz_${t}.c
                 ${CMAKE_CURRENT_LIST_DIR}/fuzz_common.c)
  target_compile_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
  target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(fuzz_${t} PRIVATE irpcore)
endforeach()
