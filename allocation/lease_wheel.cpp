#include "allocation/lease_wheel.hpp"

namespace chroom::allocation {

lease_wheel::lease_wheel(clock::duration tick) : tick_(tick) {}

void lease_wheel::renew(const std::string& lease_id, clock::time_point expires_at) {
  due_at_[lease_id] = expires_at;
  // Filed one tick late, so that expire(now) of the tick the lease is due in never sees it
  // early: it is processed once its whole tick has passed.
  filed_[tick_of(expires_at) + 1].push_back(lease_id);
}

void lease_wheel::forget(std::string_view lease_id) {
  if (auto it = due_at_.find(std::string{lease_id}); it != due_at_.end())
    due_at_.erase(it);
}

std::vector<std::string> lease_wheel::expire(clock::time_point now) {
  std::vector<std::string> expired;
  auto current = tick_of(now);
  while (!filed_.empty() && filed_.begin()->first <= current) {
    for (auto& lease_id : filed_.begin()->second) {
      auto it = due_at_.find(lease_id);
      if (it == due_at_.end() || it->second > now)
        continue; // forgotten, or renewed and filed again
      due_at_.erase(it);
      expired.push_back(std::move(lease_id));
    }
    filed_.erase(filed_.begin());
  }
  return expired;
}

std::optional<lease_wheel::clock::time_point>
lease_wheel::expires_at(std::string_view lease_id) const {
  auto it = due_at_.find(std::string{lease_id});
  if (it == due_at_.end())
    return std::nullopt;
  return it->second;
}

} // namespace chroom::allocation
