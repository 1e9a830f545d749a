# Fuzzing the glob functions (tests/fuzz/fuzz_glob.c): inv_glob_match() as
# a differential against a port of Redis's stringmatchlen(), and the rules
# built on it (check, flush, witness byte, literal prefix, pinned slot).
# inv_fuzz_target() (fuzz.cmake) makes the CTest test fuzz.glob_replay and,
# with clang and -DINV_FUZZ=ON, the libFuzzer binary fuzz_glob.
inv_fuzz_target(glob SOURCES ${INV_FUZZ_DIR}/fuzz_glob.c
  LIBS inval_base
  ITERATIONS 50000
  INSTRUMENT ${PROJECT_SOURCE_DIR}/common/base/glob.c ${PROJECT_SOURCE_DIR}/common/base/slot.c)
