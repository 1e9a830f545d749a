# Stream ids (proto/stream_id.c), the worker's slot map (workers/slot_map.c), the
# completion watermark (workers/watermark.c) and the intake state machine
# (workers/intake.c, driven by scripted facts): no Redis needed. The worker as
# a whole is tested against real Redis by tests/integration/test_worker_*.py.
foreach(t test_stream_id test_slot_map test_watermark test_intake)
  inv_unit_test(${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/${t}.c
                LIBS inval_worker_lib)
endforeach()
