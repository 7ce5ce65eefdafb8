#pragma once

// How an answered Allocate is counted, wherever it is answered (the allocation service for
// refusals, a room for calls handed to it whole, an allocation_request for hooked apps).

#include "transport/call_protocol.hpp"
#include "transport/grpc_status.hpp"

#include <chrono>
#include <string>

namespace chroom::actors {

/// chroom_allocations_total{app, result}, the latency histogram and a debug line for an
/// Allocate answered here. `app_id` empty: the call named no known app.
void count_allocation(const transport::call_context& call, const std::string& app_id,
                      transport::grpc_code code, std::chrono::steady_clock::time_point started);

} // namespace chroom::actors
