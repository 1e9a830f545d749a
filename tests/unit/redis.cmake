# Redis client (inval_redis). redis_check drives real Redis servers from
# tests/integration/test_redis_client.py, so it is a plain executable; only
# its "parse" scenario needs no server and runs as a unit test.
add_executable(redis_check ${CMAKE_CURRENT_SOURCE_DIR}/tools/redis_check.c)
target_link_libraries(redis_check PRIVATE inval_redis)
add_test(NAME unit.redis_parse COMMAND redis_check parse)
set_tests_properties(unit.redis_parse PROPERTIES TIMEOUT 60 LABELS unit)

# The CLUSTER SLOTS and MOVED/ASK parsers (common/redis/cluster_reply.c), on reply
# trees built by hand: no Redis needed.
inv_unit_test(test_cluster_reply
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_cluster_reply.c
  LIBS inval_cluster_reply)
