# Stream ids (proto/stream_id.c), the worker's slot map (workers/slot_map.c), the
# completion watermark (workers/watermark.c) and the intake state machine
# (workers/intake.c, driven by scripted facts): no Redis needed. The worker as
# a whole is tested against real Redis by tests/integration/test_worker_*.py.
foreach(t test_stream_id test_slot_map test_watermark test_intake)
  inv_unit_test(${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/${t}.c
                LIBS inval_worker_lib)
endforeach()

# The UNLINK pipeline over a fake connection: the test defines the one
# connection call the unlinker makes (inv_redis_command_formatted), so it
# links unlinker.c alone, not the Redis client, and answers each command
# with TRYAGAIN, MOVED, ASK, CROSSSLOT or a transient error as it needs.
inv_unit_test(test_unlinker
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_unlinker.c
          ${PROJECT_SOURCE_DIR}/workers/unlinker.c
  LIBS inval_regen inval_cluster_reply inval_base PkgConfig::LIBUV
       PkgConfig::HIREDIS)

# The scanner's close order, against an in-process silent fake server on
# loopback (workers/scanner.c with a command that is never answered).
inv_unit_test(test_scanner_close
              SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_scanner_close.c
              LIBS inval_worker_lib)
