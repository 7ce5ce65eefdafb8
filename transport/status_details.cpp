#include "transport/status_details.hpp"

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace chroom::transport {

std::string serialize_status_details(grpc_code code, const std::string& message,
                                     const error_details& details) {
  google::rpc::Status status;
  status.set_code(static_cast<int32_t>(code));
  status.set_message(message);
  if (!details.reason.empty()) {
    google::rpc::ErrorInfo info;
    info.set_reason(details.reason);
    info.set_domain(std::string{error_domain});
    for (const auto& [key, value] : details.metadata)
      (*info.mutable_metadata())[key] = value;
    status.add_details()->PackFrom(info);
  }
  if (details.retry_delay) {
    google::rpc::RetryInfo retry;
    auto ms = std::max<int64_t>(0, details.retry_delay->count());
    retry.mutable_retry_delay()->set_seconds(ms / 1000);
    retry.mutable_retry_delay()->set_nanos(static_cast<int32_t>(ms % 1000) * 1'000'000);
    status.add_details()->PackFrom(retry);
  }
  if (!details.field_violations.empty()) {
    google::rpc::BadRequest bad;
    for (const auto& violation : details.field_violations) {
      auto* out = bad.add_field_violations();
      out->set_field(violation.field);
      out->set_description(violation.description);
    }
    status.add_details()->PackFrom(bad);
  }
  return status.SerializeAsString();
}

grpc_status with_details(grpc_status status, const error_details& details) {
  status.details = serialize_status_details(status.code, status.message, details);
  return status;
}

grpc_status with_error_info(grpc_status status, std::string reason,
                            std::map<std::string, std::string> metadata,
                            std::optional<std::chrono::milliseconds> retry_delay) {
  error_details details;
  details.reason = std::move(reason);
  details.metadata = std::move(metadata);
  details.retry_delay = retry_delay;
  return with_details(std::move(status), details);
}

grpc_status invalid_fields(std::string message, std::string reason,
                           std::vector<field_violation> violations) {
  error_details details;
  details.reason = std::move(reason);
  details.field_violations = std::move(violations);
  return with_details(make_status(grpc_code::invalid_argument, std::move(message)), details);
}

} // namespace chroom::transport
