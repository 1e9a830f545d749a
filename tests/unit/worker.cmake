# The worker's parsing and persistence pieces (workers/stream_id.c,
# workers/slot_map.c, workers/state_file.c) and the completion watermark
# (workers/watermark.c): no Redis needed. The worker as
# a whole is tested against real Redis by tests/integration/test_worker_*.py.
foreach(t test_stream_id test_slot_map test_state_file test_watermark)
  inv_unit_test(${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/${t}.c
                LIBS inval_worker_lib)
endforeach()
