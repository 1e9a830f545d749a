# Unit tests for the worker heartbeat record (proto/heartbeat.c): round
# trip and the length checks of its decoder. No Redis needed.
inv_unit_test(test_heartbeat
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_heartbeat.c
  LIBS inval_heartbeat)
