# Unit tests for the wire codec (proto/codec.c) and events/payloads
# (proto/event.c). They need no Redis.
inv_unit_test(test_codec SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_codec.c
              LIBS inval_codec)
inv_unit_test(test_event SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_event.c
              LIBS inval_codec)
inv_unit_test(test_log_shard SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_log_shard.c
              LIBS inval_codec)
