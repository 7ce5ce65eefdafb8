set(CHROOM_PROTO_ROOT ${PROJECT_SOURCE_DIR}/messages)
set(CHROOM_GENERATED_DIR ${CMAKE_BINARY_DIR}/generated)
file(MAKE_DIRECTORY ${CHROOM_GENERATED_DIR})

# chroom_add_protos(TARGET <lib> [ROOT <dir>] PROTOS <paths under ROOT>)
# Compiles .proto files into a static library of protobuf messages. ROOT defaults to
# messages/; another one is for standard protos a Debian package ships (grpc-proto).
function(chroom_add_protos)
  cmake_parse_arguments(arg "" "TARGET;ROOT" "PROTOS" ${ARGN})
  if(NOT arg_ROOT)
    set(arg_ROOT ${CHROOM_PROTO_ROOT})
  endif()
  set(sources)
  foreach(proto ${arg_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" stem ${proto})
    set(outputs ${CHROOM_GENERATED_DIR}/${stem}.pb.cc ${CHROOM_GENERATED_DIR}/${stem}.pb.h)
    add_custom_command(
      OUTPUT ${outputs}
      COMMAND protobuf::protoc --proto_path=${arg_ROOT}
              --cpp_out=${CHROOM_GENERATED_DIR} ${arg_ROOT}/${proto}
      DEPENDS ${arg_ROOT}/${proto} protobuf::protoc
      COMMENT "protoc --cpp_out ${proto}")
    list(APPEND sources ${outputs})
  endforeach()
  add_library(${arg_TARGET} STATIC ${sources})
  target_include_directories(${arg_TARGET} PUBLIC ${CHROOM_GENERATED_DIR})
  target_link_libraries(${arg_TARGET} PUBLIC protobuf::libprotobuf)
  target_compile_options(${arg_TARGET} PRIVATE -w) # generated code is not ours to fix
endfunction()

# chroom_add_grpc_stubs(TARGET <lib> MESSAGES <message lib> PROTOS <paths under messages/>)
# grpc++ stubs for the same protos. Only tests and benchmarks link them: the
# orchestrator serves gRPC with its own gateway, stock grpc++ is the independent client.
function(chroom_add_grpc_stubs)
  cmake_parse_arguments(arg "" "TARGET;MESSAGES" "PROTOS" ${ARGN})
  set(sources)
  foreach(proto ${arg_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" stem ${proto})
    set(outputs ${CHROOM_GENERATED_DIR}/${stem}.grpc.pb.cc ${CHROOM_GENERATED_DIR}/${stem}.grpc.pb.h)
    add_custom_command(
      OUTPUT ${outputs}
      COMMAND protobuf::protoc --proto_path=${CHROOM_PROTO_ROOT}
              --grpc_out=${CHROOM_GENERATED_DIR}
              --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN} ${CHROOM_PROTO_ROOT}/${proto}
      DEPENDS ${CHROOM_PROTO_ROOT}/${proto} protobuf::protoc
      COMMENT "protoc --grpc_out ${proto}")
    list(APPEND sources ${outputs})
  endforeach()
  add_library(${arg_TARGET} STATIC ${sources})
  target_link_libraries(${arg_TARGET} PUBLIC ${arg_MESSAGES} gRPC::grpc++)
  target_compile_options(${arg_TARGET} PRIVATE -w)
endfunction()
