# The shared serving layer (inval_server: proto/server/rpc_server.c, tls.c,
# metrics_http.c, daemon.c). The unit tests run the servers in-process on a
# libuv loop against loopback clients; the TLS test pairs the engine with an
# in-memory OpenSSL client. No Redis is needed.
inv_unit_test(test_tls SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_tls.c
              LIBS inval_server)
inv_unit_test(test_rpc_server
              SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_rpc_server.c
              LIBS inval_server)
inv_unit_test(test_metrics_http
              SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_metrics_http.c
              LIBS inval_server)

# The test daemon that tests/integration/test_rpc_server.py drives.
add_executable(rpc_echo_server ${CMAKE_CURRENT_SOURCE_DIR}/tools/rpc_echo_server.c)
target_link_libraries(rpc_echo_server PRIVATE inval_server)
