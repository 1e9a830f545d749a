# The publisher's tenants (service/tenants.c): the file format, credentials,
# namespace rules and token buckets. Pure code; no Redis, no loop.
inv_unit_test(test_tenants
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_tenants.c
  LIBS inval_publisher_lib)
