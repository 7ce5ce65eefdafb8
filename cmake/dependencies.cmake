# Every third-party dependency comes from Debian packages (scripts/setup installs them).
find_package(Threads REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(NGHTTP2 REQUIRED IMPORTED_TARGET libnghttp2)

# Debian's CAF 0.17 ships no CMake package config: find headers and libraries ourselves.
find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
foreach(component core io openssl)
  find_library(CAF_${component}_LIBRARY caf_${component} REQUIRED)
  add_library(caf::${component} UNKNOWN IMPORTED)
  set_target_properties(caf::${component} PROPERTIES
    IMPORTED_LOCATION ${CAF_${component}_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${CAF_INCLUDE_DIR})
endforeach()
set_property(TARGET caf::io APPEND PROPERTY INTERFACE_LINK_LIBRARIES caf::core Threads::Threads)
set_property(TARGET caf::openssl APPEND PROPERTY INTERFACE_LINK_LIBRARIES caf::io OpenSSL::SSL)

find_path(DOCTEST_INCLUDE_DIR doctest/doctest.h REQUIRED)
find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

# Applications (apps/): Lua 5.4 for hooks, SQLite for the app store, cpp-httplib for webhooks.
# GLOBAL: chroom_apps' link interface names them, so every directory linking it must see them.
pkg_check_modules(LUA REQUIRED IMPORTED_TARGET GLOBAL lua5.4)
pkg_check_modules(SQLITE REQUIRED IMPORTED_TARGET GLOBAL sqlite3)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET GLOBAL cpp-httplib)
# Operations: Prometheus metrics (the registry and text format of prometheus-cpp's core;
# the admin HTTP port serves them through cpp-httplib).
find_package(prometheus-cpp CONFIG REQUIRED)
