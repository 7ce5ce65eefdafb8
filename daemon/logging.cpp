#include "daemon/logging.hpp"

#include "observability/request_id.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace chroom::daemon {

namespace {

/// Appends `text` JSON-escaped (quotes, backslashes and control characters), so "json"
/// lines stay valid whatever a message contains.
void append_json_escaped(std::string_view text, spdlog::memory_buf_t& dest) {
  static constexpr char hex[] = "0123456789abcdef";
  for (char c : text) {
    switch (c) {
      case '"':
        dest.append(std::string_view{"\\\""});
        break;
      case '\\':
        dest.append(std::string_view{"\\\\"});
        break;
      case '\n':
        dest.append(std::string_view{"\\n"});
        break;
      case '\t':
        dest.append(std::string_view{"\\t"});
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[] = {'\\', 'u', '0', '0', hex[(c >> 4) & 0xF], hex[c & 0xF]};
          dest.append(escaped, escaped + sizeof escaped);
        } else {
          dest.push_back(c);
        }
    }
  }
}

/// %j: the log message as a JSON string body.
class json_escaped_message : public spdlog::custom_flag_formatter {
public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    append_json_escaped({msg.payload.data(), msg.payload.size()}, dest);
  }

  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<json_escaped_message>();
  }
};

/// The request id of the call being handled (observability/request_id.hpp), if any: %q
/// writes " request_id=<id>" (text), %Q writes ,"request_id":"<id>" (JSON).
class request_id_field : public spdlog::custom_flag_formatter {
public:
  explicit request_id_field(bool json) : json_(json) {}

  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    auto id = observability::current_request_id();
    if (id.empty())
      return;
    if (json_) {
      dest.append(std::string_view{",\"request_id\":\""});
      append_json_escaped(id, dest);
      dest.push_back('"');
    } else {
      dest.append(std::string_view{" request_id="});
      dest.append(id);
    }
  }

  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<request_id_field>(json_);
  }

private:
  bool json_;
};

} // namespace

void setup_logging(const std::string& level, const std::string& format,
                   const std::string& peer_id) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("chroom", sink);
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (format == "json") {
    // Peer ids are [A-Za-z0-9._-] (validated): no escaping needed.
    formatter->add_flag<json_escaped_message>('j')
      .add_flag<request_id_field>('Q', true)
      .set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","peer":")" + peer_id +
                   R"(","thread":%t,"msg":"%j"%Q})");
  } else {
    formatter->add_flag<request_id_field>('q', false)
      .set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v%q");
  }
  logger->set_formatter(std::move(formatter));
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

} // namespace chroom::daemon
