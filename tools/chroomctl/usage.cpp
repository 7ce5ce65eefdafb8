// chroomctl usage APP [--from TIME] [--to TIME]
#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>
#include <optional>
#include <ostream>

#include "tools/chroomctl/commands.hpp"
#include "tools/chroomctl/output.hpp"

namespace chroom::ctl {

namespace {

namespace v1 = chroom::admin::v1;

bool all_digits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::optional<int> number(std::string_view text) {
  int value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || !all_digits(text))
    return std::nullopt;
  return value;
}

// RFC 3339 ("2024-05-01T12:00:00Z", "2024-05-01T14:00:00.250+02:00", "2024-05-01 12:00:00Z"),
// a date ("2024-05-01": midnight UTC), or Unix milliseconds.
std::optional<std::int64_t> parse_time(std::string_view text) {
  if (all_digits(text)) {
    std::int64_t ms = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), ms);
    if (error != std::errc{} || end != text.data() + text.size())
      return std::nullopt;
    return ms;
  }
  if (text.size() < 10 || text[4] != '-' || text[7] != '-')
    return std::nullopt;
  auto year = number(text.substr(0, 4)), month = number(text.substr(5, 2)),
       day = number(text.substr(8, 2));
  if (!year || !month || !day || *month < 1 || *month > 12 || *day < 1 || *day > 31)
    return std::nullopt;
  std::tm tm{};
  tm.tm_year = *year - 1900;
  tm.tm_mon = *month - 1;
  tm.tm_mday = *day;
  std::int64_t millis = 0;
  std::int64_t offset_s = 0;
  std::string_view rest = text.substr(10);
  if (!rest.empty()) {
    if ((rest[0] != 'T' && rest[0] != 't' && rest[0] != ' ') || rest.size() < 9 || rest[3] != ':' ||
        rest[6] != ':')
      return std::nullopt;
    auto hour = number(rest.substr(1, 2)), minute = number(rest.substr(4, 2)),
         second = number(rest.substr(7, 2));
    if (!hour || !minute || !second || *hour > 23 || *minute > 59 || *second > 60)
      return std::nullopt;
    tm.tm_hour = *hour;
    tm.tm_min = *minute;
    tm.tm_sec = *second;
    rest.remove_prefix(9);
    if (!rest.empty() && rest[0] == '.') {
      std::size_t digits = 1;
      while (digits < rest.size() && std::isdigit(static_cast<unsigned char>(rest[digits])))
        ++digits;
      std::string fraction(rest.substr(1, digits - 1));
      if (fraction.empty())
        return std::nullopt;
      fraction.resize(3, '0');
      millis = *number(fraction.substr(0, 3));
      rest.remove_prefix(digits);
    }
    if (rest == "Z" || rest == "z") {
      rest = {};
    } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
      auto hours = number(rest.substr(1, 2)), minutes = number(rest.substr(4, 2));
      if (!hours || !minutes)
        return std::nullopt;
      offset_s = (*hours * 3600 + *minutes * 60) * (rest[0] == '+' ? 1 : -1);
      rest = {};
    }
    if (!rest.empty())
      return std::nullopt;
  }
  std::int64_t seconds = timegm(&tm);
  return (seconds - offset_s) * 1000 + millis;
}

std::int64_t time_flag(const invocation& call, std::string_view flag) {
  auto text = call.value(flag);
  auto parsed = parse_time(text);
  if (!parsed)
    throw usage_error(std::string(flag) +
                        " needs an RFC 3339 time (2024-05-01T12:00:00Z), a date (2024-05-01) or "
                        "Unix milliseconds, not '" +
                        text + "'",
                      call.command);
  return *parsed;
}

std::vector<std::string> counter_cells(const apps::v1::UsageCounters& usage) {
  return {human_number(usage.participant_minutes(), 2), std::to_string(usage.rooms()),
          std::to_string(usage.relay_links()), human_bytes(usage.bytes_in()),
          human_bytes(usage.bytes_out())};
}

} // namespace

int run_usage(command_context& context, const invocation& call) {
  v1::GetUsageRequest request;
  request.set_app_id(call.args[0]);
  if (call.has("--from"))
    request.set_from_unix_ms(time_flag(call, "--from"));
  if (call.has("--to"))
    request.set_to_unix_ms(time_flag(call, "--to"));
  auto reply =
    context.client().call("GetUsage", &admin_client::stub::GetUsage, request, app_hints());
  auto& out = *context.out;
  if (context.format == output_format::json) {
    print_json(out, reply);
    return exit_ok;
  }
  if (context.format == output_format::name) {
    for (const auto& epoch : reply.epochs())
      out << epoch.epoch_start_unix_ms() << '\n';
    return exit_ok;
  }
  table rows({"epoch start", "length", "participant-min", "rooms", "relay links", "bytes in",
              "bytes out", "peers"});
  for (const auto& epoch : reply.epochs()) {
    auto cells = counter_cells(epoch.usage());
    std::string peers;
    for (const auto& peer : epoch.peers()) {
      if (!peers.empty())
        peers += ',';
      peers += peer;
    }
    std::vector<std::string> row = {human_time(epoch.epoch_start_unix_ms()),
                                    human_duration_ms(epoch.epoch_ms())};
    row.insert(row.end(), cells.begin(), cells.end());
    row.push_back(peers);
    rows.add_row(std::move(row));
  }
  std::vector<std::string> total = {"TOTAL", std::to_string(reply.epochs_size()) +
                                               (reply.epochs_size() == 1 ? " epoch" : " epochs")};
  auto cells = counter_cells(reply.total());
  total.insert(total.end(), cells.begin(), cells.end());
  rows.add_row(std::move(total));
  rows.print(out, context.headers);
  return exit_ok;
}

} // namespace chroom::ctl
