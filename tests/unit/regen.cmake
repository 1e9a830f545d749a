find_package(Threads REQUIRED)
# The regeneration key contract and embedded scripts (proto/keyname.c,
# proto/scripts.c): no Redis needed. The read path and the worker's hard
# and soft behaviour are tested against real Redis by
# tests/integration/test_regen_*.py, through the cache_check driver.
inv_unit_test(test_keyname SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_keyname.c
              LIBS inval_regen)
target_compile_definitions(test_keyname PRIVATE
                           INV_SOURCE_DIR="${PROJECT_SOURCE_DIR}")

# cache_check drives the C read path (proto/client/cache.c) against real Redis for
# the test_regen_*.py integration tests.
add_executable(cache_check ${CMAKE_CURRENT_SOURCE_DIR}/tools/cache_check.c)
target_link_libraries(cache_check PRIVATE inval_cache Threads::Threads)
