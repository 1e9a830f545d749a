# Installs libinval_client (proto/CMakeLists.txt) for applications:
#   include/inval/{client,cache,errors,event}.h   the public headers
#   lib/libinval_client.so.<soversion> (+ links)  inval::client
#   lib/libinval_client.a                         inval::client_static
#   lib/cmake/inval/inval-config.cmake            find_package(inval)
#     with inval-config-version.cmake and inval-targets*.cmake
#   lib/pkgconfig/inval-client.pc                 pkg-config inval-client
#     (pkg-config --static for libinval_client.a)
# No internal library or header is installed: applications see only
# include/inval/, and the libraries carry the internal objects they need.

include(CMakePackageConfigHelpers)

set(INV_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/inval)

install(FILES ${PROJECT_SOURCE_DIR}/include/inval/client.h
              ${PROJECT_SOURCE_DIR}/include/inval/cache.h
              ${PROJECT_SOURCE_DIR}/include/inval/errors.h
              ${PROJECT_SOURCE_DIR}/include/inval/event.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/inval)
install(TARGETS inval_client_shared inval_client_static EXPORT inval-targets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} NAMELINK_COMPONENT Unspecified
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT inval-targets NAMESPACE inval:: FILE inval-targets.cmake
        DESTINATION ${INV_CMAKE_DIR})

configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/inval-config.cmake.in
  ${PROJECT_BINARY_DIR}/package/inval-config.cmake
  INSTALL_DESTINATION ${INV_CMAKE_DIR})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/package/inval-config-version.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY ${INV_COMPATIBILITY})
install(FILES ${PROJECT_BINARY_DIR}/package/inval-config.cmake
              ${PROJECT_BINARY_DIR}/package/inval-config-version.cmake
        DESTINATION ${INV_CMAKE_DIR})

# The pkg-config file names the prefix, which may be changed at install
# time (cmake --install DIR --prefix P), so it is written then, from
# cmake/inval-client.pc.in.
set(INV_PC_TEMPLATE ${CMAKE_CURRENT_LIST_DIR}/inval-client.pc.in)
set(INV_PC_STAGE ${PROJECT_BINARY_DIR}/package/inval-client.pc)
install(CODE "
  set(INV_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  set(INV_PC_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")
  set(INV_PC_INCLUDEDIR \"${CMAKE_INSTALL_INCLUDEDIR}\")
  set(_libdir \"\${INV_PC_LIBDIR}\")
  if(NOT IS_ABSOLUTE \"\${_libdir}\")
    set(_libdir \"\${CMAKE_INSTALL_PREFIX}/\${_libdir}\")
    set(INV_PC_LIBDIR \"\\\${prefix}/\${INV_PC_LIBDIR}\")
  endif()
  if(NOT IS_ABSOLUTE \"\${INV_PC_INCLUDEDIR}\")
    set(INV_PC_INCLUDEDIR \"\\\${prefix}/\${INV_PC_INCLUDEDIR}\")
  endif()
  set(PROJECT_VERSION \"${PROJECT_VERSION}\")
  configure_file(\"${INV_PC_TEMPLATE}\" \"${INV_PC_STAGE}\" @ONLY)
  file(INSTALL \"${INV_PC_STAGE}\" DESTINATION \"\${_libdir}/pkgconfig\")
")
