# Fuzzing the glob functions (tests/fuzz/fuzz_glob.c): inv_glob_match() as
# a differential against a port of Redis's stringmatchlen(), and the rules
# built on it (check, flush, witness byte, literal prefix, pinned slot).
#
# The replay driver fuzz_glob_replay is always built and registered as the
# CTest test fuzz.glob_replay: it runs the corpus tests/fuzz/corpus/glob and
# then 50,000 deterministic mutations of it, in every build tree (the
# sanitizer tree included).
#
# With clang and -DINV_FUZZ=ON, fuzz_glob is also built as a libFuzzer
# binary, with the glob and slot sources compiled in so that they carry the
# fuzzer's coverage instrumentation. Run it as:
#   build-fuzz/tests/fuzz_glob -max_total_time=300 NEWDIR tests/fuzz/corpus/glob
set(INV_FUZZ_GLOB_SRC ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_glob.c)
set(INV_FUZZ_GLOB_CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/glob)

add_executable(fuzz_glob_replay ${INV_FUZZ_GLOB_SRC})
target_compile_definitions(fuzz_glob_replay PRIVATE INV_FUZZ_REPLAY)
target_link_libraries(fuzz_glob_replay PRIVATE inval_base)
add_test(NAME fuzz.glob_replay
         COMMAND fuzz_glob_replay ${INV_FUZZ_GLOB_CORPUS} 50000)
set_tests_properties(fuzz.glob_replay PROPERTIES TIMEOUT 300 LABELS fuzz)

if(INV_FUZZ AND CMAKE_C_COMPILER_ID MATCHES "Clang")
  add_executable(fuzz_glob ${INV_FUZZ_GLOB_SRC}
                 ${PROJECT_SOURCE_DIR}/common/glob.c
                 ${PROJECT_SOURCE_DIR}/common/slot.c)
  target_include_directories(fuzz_glob PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_options(fuzz_glob PRIVATE
    -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer
    -fno-sanitize-recover=undefined)
  target_link_options(fuzz_glob PRIVATE -fsanitize=fuzzer,address,undefined)
endif()
