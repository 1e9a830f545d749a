# Unit tests and test tools for inval_base (common/: errors, log, buf, slot,
# glob, latency, stats, config) and the header-only queue (common/base/queue.h).
foreach(t errors buf slot glob latency stats config queue)
  inv_unit_test(test_${t}
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_${t}.c
    LIBS inval_base)
endforeach()

# Helpers for tests/integration/test_slot_glob.py, which compares them with
# a live Redis: slot_tool prints inv_key_slot() of each stdin line and
# glob_tool prints inv_glob_match() of each "pattern<TAB>key" line.
add_executable(slot_tool ${CMAKE_CURRENT_SOURCE_DIR}/tools/slot_tool.c)
target_link_libraries(slot_tool PRIVATE inval_base)
add_executable(glob_tool ${CMAKE_CURRENT_SOURCE_DIR}/tools/glob_tool.c)
target_link_libraries(glob_tool PRIVATE inval_base)
