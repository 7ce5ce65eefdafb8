#pragma once

// Request ids. Every gRPC call gets one at the gateway that accepts it (the client's own
// `x-request-id` when it sent a usable one); it travels in the call's metadata to whichever
// peer handles the call, comes back in the response headers, and the log lines written
// while handling the call carry it (text: "request_id=...", JSON: a "request_id" field), so
// one grep follows a call across peers.

#include <string>
#include <string_view>

namespace chroom::observability {

inline constexpr std::string_view request_id_key = "x-request-id";
inline constexpr size_t max_request_id_length = 128;

/// 1..128 characters of A-Z a-z 0-9 . _ : -
bool usable_request_id(std::string_view id);

/// A fresh id: 12 hex digits, random.
std::string new_request_id();

/// The request id of the call this thread is handling now (empty: none).
std::string_view current_request_id();

/// Makes `id` this thread's current request id until the scope ends.
class request_scope {
public:
  explicit request_scope(std::string_view id);
  ~request_scope();
  request_scope(const request_scope&) = delete;
  request_scope& operator=(const request_scope&) = delete;

private:
  std::string previous_;
};

} // namespace chroom::observability
