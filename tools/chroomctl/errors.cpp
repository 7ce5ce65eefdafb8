#include "tools/chroomctl/errors.hpp"

#include <ostream>

namespace chroom::ctl {

namespace {

// What to try next, by the code the server answered with.
std::string hint_for(const rpc_failure& failure, const connection_options& connection) {
  using grpc::StatusCode;
  switch (failure.status.error_code()) {
    case StatusCode::NOT_FOUND:
      return failure.hints.not_found;
    case StatusCode::UNAUTHENTICATED:
      return connection.token.empty()
               ? "the peer requires an admin token: set CHROOM_ADMIN_TOKEN or pass --token"
               : "the peer refused the admin token given (--token or CHROOM_ADMIN_TOKEN): check "
                 "it against the peer's configured admin tokens";
    case StatusCode::PERMISSION_DENIED:
      return "the admin token given may not do this: use a token with more rights";
    case StatusCode::UNIMPLEMENTED:
      return std::string("the peer at ") + connection.server + " does not implement " +
             failure.method + ": it is older than this chroomctl, upgrade it";
    case StatusCode::INVALID_ARGUMENT:
      return "fix the field the message names (see the command's --help)";
    case StatusCode::ALREADY_EXISTS:
      return "pick another id, or look at the existing one with `chroomctl apps get ID`";
    case StatusCode::FAILED_PRECONDITION:
      return "the request cannot be applied in the current state: the message says why";
    case StatusCode::RESOURCE_EXHAUSTED:
      return "the peer is at a limit: try again later";
    case StatusCode::DEADLINE_EXCEEDED:
      return "the peer did not answer in time: try again, or raise --timeout";
    case StatusCode::UNAVAILABLE:
      return "the peer could not complete the call now (shutting down, or a node or peer it "
             "needed did not answer): try again, or another peer with --server";
    case StatusCode::INTERNAL:
    case StatusCode::UNKNOWN:
    case StatusCode::DATA_LOSS:
      return "a fault in the peer: its log says more";
    default:
      return {};
  }
}

} // namespace

const char* code_name(grpc::StatusCode code) {
  using grpc::StatusCode;
  switch (code) {
    case StatusCode::OK:
      return "OK";
    case StatusCode::CANCELLED:
      return "CANCELLED";
    case StatusCode::UNKNOWN:
      return "UNKNOWN";
    case StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case StatusCode::ABORTED:
      return "ABORTED";
    case StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case StatusCode::INTERNAL:
      return "INTERNAL";
    case StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

int report(std::ostream& err, const rpc_failure& failure, const connection_options& connection) {
  err << "chroomctl: " << code_name(failure.status.error_code()) << ": "
      << failure.status.error_message() << '\n';
  auto hint = hint_for(failure, connection);
  if (!hint.empty())
    err << "hint: " << hint << '\n';
  return exit_server_error;
}

int report(std::ostream& err, const unreachable_failure& failure,
           const connection_options& connection) {
  const char* how = connection.tls || !connection.ca_file.empty() ? "TLS" : "h2c";
  bool timed_out = failure.status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
  err << "chroomctl: cannot reach " << connection.server << " (" << how << ", from "
      << connection.server_source << "): "
      << (timed_out ? std::string("no connection within --timeout ") +
                        std::to_string(connection.timeout.count()) + " ms"
                    : failure.status.error_message())
      << '\n';
  err << "hint: is a peer listening there? Point chroomctl at one with --server HOST:PORT or "
         "CHROOM_SERVER";
  if (connection.tls || !connection.ca_file.empty())
    err << "; check --ca-file matches the peer's certificate, or drop --tls for an h2c peer";
  else
    err << "; add --tls if the peer serves TLS";
  err << '\n';
  return exit_unreachable;
}

int report(std::ostream& err, const usage_error& error) {
  err << "chroomctl: " << error.what() << '\n';
  err << usage_line(error.command, error.command ? nullptr : error.group) << '\n';
  if (error.command)
    err << "Run `chroomctl " << error.command->path() << " --help` for its flags.\n";
  else if (error.group)
    err << "Run `chroomctl " << error.group->name << " --help` for its commands.\n";
  else
    err << "Run `chroomctl --help` for the commands.\n";
  return exit_usage;
}

} // namespace chroom::ctl
