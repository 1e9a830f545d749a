# Fuzzing the wire codec (tests/fuzz/fuzz_codec.c).
#
# The replay driver is always built and registered: the same target code
# compiled with -DINV_FUZZ_REPLAY gets a main() that runs every corpus file
# and then 200,000 deterministic mutations of them, checking the same
# invariants as the fuzzer. It runs in every build, the sanitizer build
# included, as the CTest test fuzz.codec_replay.
#
# With clang and -DINV_FUZZ=ON, fuzz_codec is also built as a libFuzzer
# binary. The codec sources are compiled into it directly (not through the
# inval_codec library) so that they carry the fuzzer's coverage
# instrumentation. Run it as:
#   build/tests/fuzz_codec -max_total_time=300 NEWDIR tests/fuzz/corpus
option(INV_FUZZ "Build the libFuzzer target fuzz_codec (clang only)" OFF)

set(INV_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)

add_executable(fuzz_codec_replay ${INV_FUZZ_DIR}/fuzz_codec.c)
target_compile_definitions(fuzz_codec_replay PRIVATE INV_FUZZ_REPLAY
  INV_FUZZ_CORPUS_DIR="${INV_FUZZ_DIR}/corpus")
target_link_libraries(fuzz_codec_replay PRIVATE inval_codec)
add_test(NAME fuzz.codec_replay
         COMMAND fuzz_codec_replay ${INV_FUZZ_DIR}/corpus 200000)
set_tests_properties(fuzz.codec_replay PROPERTIES TIMEOUT 300 LABELS fuzz)

if(INV_FUZZ)
  if(CMAKE_C_COMPILER_ID MATCHES "Clang")
    add_executable(fuzz_codec ${INV_FUZZ_DIR}/fuzz_codec.c
                   ${PROJECT_SOURCE_DIR}/proto/codec.c
                   ${PROJECT_SOURCE_DIR}/proto/event.c)
    target_compile_options(fuzz_codec PRIVATE
      -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer
      -fno-sanitize-recover=undefined)
    target_link_options(fuzz_codec PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_codec PRIVATE inval_base PkgConfig::MSGPACK)
  else()
    message(WARNING "INV_FUZZ=ON needs clang (libFuzzer); fuzz_codec is not built")
  endif()
endif()
