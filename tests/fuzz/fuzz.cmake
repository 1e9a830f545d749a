# Fuzz targets (tests/fuzz/fuzz_*.c), each built two ways by
# inv_fuzz_target():
#
#   fuzz_NAME_replay  always built: the target linked with replay_main.c.
#                     The CTest test fuzz.NAME_replay (label fuzz) runs every
#                     file of tests/fuzz/corpus/NAME/ and then ITERATIONS
#                     deterministic mutations of them, checking the target's
#                     invariants, in every build tree (the sanitizer one
#                     included).
#   fuzz_NAME         with clang and -DINV_FUZZ=ON only: the libFuzzer binary
#                     (ASan + UBSan). The sources named by INSTRUMENT are
#                     compiled into it directly, not taken from their
#                     library, so that they carry the fuzzer's coverage
#                     instrumentation. tests/fuzz/run.sh SECONDS builds and
#                     runs every one of them.
#
# Adding a target: write tests/fuzz/fuzz_NAME.c (LLVMFuzzerTestOneInput with
# FUZZ_ASSERT invariants, see fuzz.h), commit seeds in tests/fuzz/corpus/NAME/
# and call inv_fuzz_target() from a fragment tests/fuzz/NAME.cmake or below.
option(INV_FUZZ "Build the libFuzzer binaries fuzz_* (clang only)" OFF)

set(INV_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
if(INV_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(WARNING "INV_FUZZ=ON needs clang (libFuzzer); only the replay drivers are built")
endif()

# inv_fuzz_target(NAME SOURCES src... LIBS lib... [INSTRUMENT src...]
#                 [ITERATIONS n])
# SOURCES are the target's own files (fuzz_NAME.c), LIBS what both binaries
# link, INSTRUMENT the product sources under test, ITERATIONS the replay's
# mutation count (default 100000; keep the replay to a few seconds).
function(inv_fuzz_target name)
  cmake_parse_arguments(F "" "ITERATIONS" "SOURCES;LIBS;INSTRUMENT" ${ARGN})
  if(NOT F_ITERATIONS)
    set(F_ITERATIONS 100000)
  endif()
  set(corpus ${INV_FUZZ_DIR}/corpus/${name})

  add_executable(fuzz_${name}_replay ${F_SOURCES} ${INV_FUZZ_DIR}/replay_main.c)
  target_link_libraries(fuzz_${name}_replay PRIVATE ${F_LIBS})
  add_test(NAME fuzz.${name}_replay
           COMMAND fuzz_${name}_replay ${corpus} ${F_ITERATIONS})
  set_tests_properties(fuzz.${name}_replay PROPERTIES TIMEOUT 300 LABELS fuzz)

  if(INV_FUZZ AND CMAKE_C_COMPILER_ID MATCHES "Clang")
    # The instrumented copies come first, so the linker takes no archive
    # member that would define the same functions again.
    add_executable(fuzz_${name} ${F_SOURCES} ${F_INSTRUMENT})
    target_compile_options(fuzz_${name} PRIVATE
      -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer
      -fno-sanitize-recover=undefined)
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_${name} PRIVATE ${F_LIBS})
  endif()
endfunction()

# The wire codec: framer, message decoder, event rules, payload decoder.
inv_fuzz_target(codec SOURCES ${INV_FUZZ_DIR}/fuzz_codec.c
  LIBS inval_codec
  INSTRUMENT ${PROJECT_SOURCE_DIR}/proto/codec.c ${PROJECT_SOURCE_DIR}/proto/event.c
  ITERATIONS 200000)

# What a worker runs on whatever arrives on the channels and in the log:
# the payload decoder, then the id and each event's keys and patterns.
inv_fuzz_target(payload SOURCES ${INV_FUZZ_DIR}/fuzz_payload.c
  LIBS inval_worker_lib
  INSTRUMENT ${PROJECT_SOURCE_DIR}/proto/event.c ${PROJECT_SOURCE_DIR}/proto/codec.c
             ${PROJECT_SOURCE_DIR}/proto/keyname.c ${PROJECT_SOURCE_DIR}/common/base/glob.c
             ${PROJECT_SOURCE_DIR}/common/base/slot.c ${PROJECT_SOURCE_DIR}/proto/stream_id.c)

# Stream ids from replies, payloads, heartbeats and the state file.
inv_fuzz_target(sid SOURCES ${INV_FUZZ_DIR}/fuzz_sid.c
  LIBS inval_worker_lib
  INSTRUMENT ${PROJECT_SOURCE_DIR}/proto/stream_id.c)

# Heartbeat records from the hash cache:invalidation:workers.
inv_fuzz_target(heartbeat SOURCES ${INV_FUZZ_DIR}/fuzz_heartbeat.c
  LIBS inval_heartbeat
  INSTRUMENT ${PROJECT_SOURCE_DIR}/proto/heartbeat.c ${PROJECT_SOURCE_DIR}/proto/codec.c)

# The config parser on an arbitrary file body, addresses included.
inv_fuzz_target(config SOURCES ${INV_FUZZ_DIR}/fuzz_config.c
  LIBS inval_base
  INSTRUMENT ${PROJECT_SOURCE_DIR}/common/base/config.c ${PROJECT_SOURCE_DIR}/common/base/addr.c
  ITERATIONS 50000)
