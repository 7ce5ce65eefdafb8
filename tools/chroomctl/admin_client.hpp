// The connection to one peer's chroom.admin.v1.AdminService: channel (h2c or TLS), per-call
// deadline and bearer token, and the two failures a call can end in (the server answered
// with an error; the server could not be reached).
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include <grpcpp/grpcpp.h>

#include "chroom/admin/v1/admin_service.grpc.pb.h"

namespace chroom::ctl {

// How to reach the peer (global flags and their environment defaults).
struct connection_options {
  // "host:port"
  std::string server;
  // Where server came from, for error messages: "--server", "CHROOM_SERVER" or "default".
  std::string server_source;
  // Sent as "authorization: Bearer <token>" when not empty.
  std::string token;
  bool tls = false;
  // PEM roots to verify the peer with; empty: the system's.
  std::string ca_file;
  // Deadline of each call.
  std::chrono::milliseconds timeout{10000};
};

// What to say when a call's answer is NOT_FOUND: how to find valid ids.
struct call_hints {
  std::string not_found;
};

// The server answered with a non-OK status.
struct rpc_failure : std::runtime_error {
  rpc_failure(std::string method, grpc::Status status, call_hints hints)
      : std::runtime_error(status.error_message()), method(std::move(method)),
        status(std::move(status)), hints(std::move(hints)) {}
  std::string method;
  grpc::Status status;
  call_hints hints;
};

// No answer: the peer could not be connected to (or the connection broke before it
// answered).
struct unreachable_failure : std::runtime_error {
  unreachable_failure(std::string method, grpc::Status status)
      : std::runtime_error(status.error_message()), method(std::move(method)),
        status(std::move(status)) {}
  std::string method;
  grpc::Status status;
};

// A local problem before any call (unreadable --ca-file): a usage error.
struct setup_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class admin_client {
public:
  using stub = chroom::admin::v1::AdminService::Stub;

  // Creates the channel (it connects on the first call). Throws setup_failure.
  explicit admin_client(connection_options options);

  const connection_options& options() const { return options_; }

  // Calls one unary method; the answer, or throws rpc_failure / unreachable_failure.
  //   client.call("GetNode", &stub::GetNode, request, {.not_found = "..."})
  template <class Request, class Response>
  Response call(const char* method,
                grpc::Status (stub::*fn)(grpc::ClientContext*, const Request&, Response*),
                const Request& request, const call_hints& hints = {}) {
    Response response;
    grpc::ClientContext context;
    prepare(context);
    grpc::Status status = ((*stub_).*fn)(&context, request, &response);
    if (!status.ok())
      fail(method, std::move(status), hints);
    return response;
  }

  // Calls a paged list method until its last page; `merge(all, page)` moves a page's items
  // (and totals) into the answer. The caller sets request.page_size.
  template <class Request, class Response, class Merge>
  Response call_all_pages(const char* method,
                          grpc::Status (stub::*fn)(grpc::ClientContext*, const Request&, Response*),
                          Request request, Merge merge, const call_hints& hints = {}) {
    // A server handing out page tokens forever must not hang us.
    constexpr int max_pages = 100'000;
    Response all;
    for (int page = 0; page < max_pages; ++page) {
      auto reply = call(method, fn, request, hints);
      merge(all, reply);
      if (reply.next_page_token().empty() || reply.next_page_token() == request.page_token())
        break;
      request.set_page_token(reply.next_page_token());
    }
    return all;
  }

private:
  void prepare(grpc::ClientContext& context) const;
  [[noreturn]] void fail(const char* method, grpc::Status status, const call_hints& hints);

  connection_options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<stub> stub_;
};

} // namespace chroom::ctl
