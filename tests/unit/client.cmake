# The client library's test driver: tests/integration/test_client_lib.py
# runs it against a real publisher (it needs Redis, so it is no unit test).
add_executable(client_check ${CMAKE_CURRENT_SOURCE_DIR}/tools/client_check.c)
target_link_libraries(client_check PRIVATE inval_client)
