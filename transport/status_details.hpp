#pragma once

// Machine-readable details of an error (docs/errors.md): what a client program branches on
// besides the code, as gRPC's richer error model carries them. The gateway sends them in the
// `grpc-status-details-bin` trailer: a serialized google.rpc.Status whose code and message
// are the call's grpc-status and grpc-message, with these details packed as Any:
//   google.rpc.ErrorInfo   a stable reason (UPPER_SNAKE_CASE) in domain error_domain, and
//                          metadata naming what the reason is about (an app, a policy)
//   google.rpc.RetryInfo   when a retry may succeed (quotas, rate limits)
//   google.rpc.BadRequest  the request fields that are invalid, and why
// Pure: builds bytes, no I/O. The human message stays what it was.

#include "transport/grpc_status.hpp"

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace chroom::transport {

/// ErrorInfo.domain of every Chroom error.
inline constexpr std::string_view error_domain = "chroom.dev";

struct field_violation {
  /// The field's path in the request, as protobuf JSON would name it ("location.latitude").
  std::string field;
  /// Why it is invalid.
  std::string description;
};

struct error_details {
  /// ErrorInfo.reason: stable, UPPER_SNAKE_CASE, listed in docs/errors.md.
  std::string reason;
  /// ErrorInfo.metadata: what the reason is about ("app_id", "policy", "limit", ...).
  std::map<std::string, std::string> metadata;
  /// RetryInfo.retry_delay, when set.
  std::optional<std::chrono::milliseconds> retry_delay;
  /// BadRequest.field_violations, when any.
  std::vector<field_violation> field_violations;
};

/// The serialized google.rpc.Status for a call that ends with `code` and `message` and
/// carries `details` (raw bytes; the gateway base64-encodes it on the wire).
std::string serialize_status_details(grpc_code code, const std::string& message,
                                     const error_details& details);

/// `status` with its details attached (status.details), built from its code and message:
/// attach them last, once the message is final.
grpc_status with_details(grpc_status status, const error_details& details);

/// `status` with an ErrorInfo (`reason`, `metadata`) and, when `retry_delay` is set, a
/// RetryInfo: the common case of with_details.
grpc_status with_error_info(grpc_status status, std::string reason,
                            std::map<std::string, std::string> metadata = {},
                            std::optional<std::chrono::milliseconds> retry_delay = std::nullopt);

/// A status ending a call whose request has invalid fields: INVALID_ARGUMENT with
/// `message`, ErrorInfo reason `reason` and the BadRequest violations.
grpc_status invalid_fields(std::string message, std::string reason,
                           std::vector<field_violation> violations);

} // namespace chroom::transport
