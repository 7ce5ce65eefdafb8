#include "tools/chroomctl/admin_client.hpp"

#include <fstream>
#include <sstream>

#ifndef CHROOMCTL_VERSION
#define CHROOMCTL_VERSION "0.0.0"
#endif

namespace chroom::ctl {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw setup_failure(std::string("cannot read --ca-file ") + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::shared_ptr<grpc::ChannelCredentials> credentials_of(const connection_options& options) {
  if (!options.tls && options.ca_file.empty())
    return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  if (!options.ca_file.empty())
    ssl.pem_root_certs = read_file(options.ca_file);
  return grpc::SslCredentials(ssl);
}

} // namespace

admin_client::admin_client(connection_options options) : options_(std::move(options)) {
  grpc::ChannelArguments arguments;
  arguments.SetUserAgentPrefix(std::string("chroomctl/") + CHROOMCTL_VERSION);
  // One attempt per command: a refused connection must fail the call at once (exit 3), not
  // be retried in the background until the deadline.
  arguments.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  channel_ = grpc::CreateCustomChannel(options_.server, credentials_of(options_), arguments);
  stub_ = chroom::admin::v1::AdminService::NewStub(channel_);
}

void admin_client::prepare(grpc::ClientContext& context) const {
  context.set_deadline(std::chrono::system_clock::now() + options_.timeout);
  if (!options_.token.empty())
    context.AddMetadata("authorization", std::string("Bearer ") + options_.token);
}

void admin_client::fail(const char* method, grpc::Status status, const call_hints& hints) {
  // UNAVAILABLE and DEADLINE_EXCEEDED come from the server itself too (a node command
  // given up, a call forwarded to a dead peer). They mean "unreachable" only when this
  // channel holds no connection: it never connected, or lost it.
  auto code = status.error_code();
  bool transport =
    code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED;
  if (transport && channel_->GetState(false) != GRPC_CHANNEL_READY)
    throw unreachable_failure(method, std::move(status));
  throw rpc_failure(method, std::move(status), hints);
}

} // namespace chroom::ctl
