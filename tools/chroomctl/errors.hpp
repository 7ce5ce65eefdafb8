// The one place failures become messages, hints and exit codes.
#pragma once

#include <iosfwd>

#include "tools/chroomctl/admin_client.hpp"
#include "tools/chroomctl/cli.hpp"

namespace chroom::ctl {

// "chroomctl: NOT_FOUND: no node 'x'" and a hint; returns exit_server_error.
int report(std::ostream& err, const rpc_failure& failure, const connection_options& connection);
// "chroomctl: cannot reach 127.0.0.1:7443 (...)" and a hint; returns exit_unreachable.
int report(std::ostream& err, const unreachable_failure& failure,
           const connection_options& connection);
// The message and the relevant usage; returns exit_usage.
int report(std::ostream& err, const usage_error& error);

// The canonical name of a status code: "NOT_FOUND".
const char* code_name(grpc::StatusCode code);

} // namespace chroom::ctl
