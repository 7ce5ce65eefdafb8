// Raw client bytes into a server-side grpc_connection, as nghttp2's own fuzz target feeds a
// server session: the 4-byte header of fuzz_server.hpp, then what a client sends. The
// seeds (make_seeds) are real clients' bytes of gRPC and JSON calls; the bytes reach the
// server in pieces the input chooses, and the server answers between pieces.
#include "fuzz/fuzz_server.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  chroom::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chroom::fuzz;
  byte_reader in{data, size};
  auto options = read_server_options(in);
  {
    fuzz_server server{options};
    server.feed(in.rest());
    server.drain();
    // The owner's socket backlog counts too: a client that stops reading.
    server.set_socket_backlog(options.seed * 4096u);
    server.set_socket_backlog(0);
  }
  return 0;
}
