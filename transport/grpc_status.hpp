#pragma once

// gRPC status codes and the status a call ends with. Shared by the gateway and the
// actors that handle calls; the mapping of internal errors to codes is done by callers
// through these values only.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chroom::transport {

/// Custom metadata: lowercase keys; values of keys ending in "-bin" are raw bytes
/// (the gateway base64-encodes them on the wire).
using metadata = std::vector<std::pair<std::string, std::string>>;

/// The canonical gRPC status codes.
enum class grpc_code : int {
  ok = 0,
  cancelled = 1,
  unknown = 2,
  invalid_argument = 3,
  deadline_exceeded = 4,
  not_found = 5,
  already_exists = 6,
  permission_denied = 7,
  resource_exhausted = 8,
  failed_precondition = 9,
  aborted = 10,
  out_of_range = 11,
  unimplemented = 12,
  internal = 13,
  unavailable = 14,
  data_loss = 15,
  unauthenticated = 16,
};

/// "OK", "NOT_FOUND", ...; "UNKNOWN" for values outside the enum.
std::string_view to_string(grpc_code code);

/// Maps an integer from the wire or from a request field; out-of-range → unknown.
grpc_code grpc_code_from_int(int64_t value);

/// The HTTP status a JSON (non-gRPC) client sees for a gRPC status, per google.rpc's
/// HTTP mapping (OK → 200, NOT_FOUND → 404, UNAVAILABLE → 503, ...).
int http_status_for(grpc_code code);

/// The trailer that carries a status's details (google.rpc.Status, base64 on the wire).
inline constexpr std::string_view status_details_key = "grpc-status-details-bin";

/// How a call ended: code, developer-facing message, optional trailing metadata, and
/// optional machine-readable details (transport/status_details.hpp).
struct grpc_status {
  grpc_code code = grpc_code::ok;
  std::string message;
  metadata trailers;
  /// A serialized google.rpc.Status with the same code and message, or empty; sent as
  /// grpc-status-details-bin (a reserved key, which `trailers` may not use).
  std::string details;

  static grpc_status ok() { return {}; }
  bool is_ok() const { return code == grpc_code::ok; }
};

inline grpc_status make_status(grpc_code code, std::string message) {
  return grpc_status{code, std::move(message), {}, {}};
}

} // namespace chroom::transport
