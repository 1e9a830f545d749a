# The publisher's batcher (service/batcher.c) against a fake sink on a real
# libuv loop: deadlines, ordering, per-request completion, abandonment after
# the timeout, the pressure hook and the topology wait. No Redis, no network.
inv_unit_test(test_batcher
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_batcher.c
  LIBS inval_publisher_lib)
