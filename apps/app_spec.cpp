#include "apps/app_spec.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <openssl/rand.h>
#include <set>

namespace chroom::apps {
namespace {

constexpr size_t max_app_id_length = 64;
// As Register.location.region: a longer name can match no node.
constexpr size_t max_region_length = 256;
constexpr size_t max_description_length = 1024;
// A hook is a few functions; a quarter megabyte bounds what every peer keeps per app.
constexpr size_t max_hook_script_bytes = 256 * 1024;
constexpr uint32_t min_lease_ttl_ms = 1000;
constexpr uint32_t max_lease_ttl_ms = 3'600'000;
// Beyond 10 s no interactive medium is usable: a larger budget is a typo.
constexpr uint32_t max_latency_budget_ms = 10'000;
constexpr uint32_t max_room_size_limit = 1'000'000;
constexpr uint32_t max_cascade_setting = 10'000;
constexpr double max_load_weight_ms = 10'000;
constexpr double max_health_weight = 100;
constexpr double max_allocation_rate = 1'000'000;
constexpr uint32_t max_webhook_attempts = 100;
constexpr size_t max_url_length = 2048;

// Hook limits (HookConfig): 0 means the default, see docs/hooks.md for why these.
constexpr uint32_t min_hook_instructions = 1000;
constexpr uint32_t max_hook_instructions = 1'000'000'000;
constexpr uint32_t min_hook_memory_kib = 64;
constexpr uint32_t max_hook_memory_kib = 1024 * 1024;
constexpr uint32_t max_hook_time_ms = 10'000;

bool is_app_id_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool is_country_code(std::string_view code) {
  return code.size() == 2 && code[0] >= 'A' && code[0] <= 'Z' && code[1] >= 'A' && code[1] <= 'Z';
}

template <size_t N>
bool one_of(std::string_view value, const std::array<std::string_view, N>& choices) {
  return std::find(choices.begin(), choices.end(), value) != choices.end();
}

template <size_t N> std::string choices_text(const std::array<std::string_view, N>& choices) {
  std::string out;
  for (auto choice : choices)
    out += (out.empty() ? "" : ", ") + std::string{choice};
  return out;
}

std::string indexed(std::string_view field, int i) {
  return std::string{field} + "[" + std::to_string(i) + "]";
}

class problems {
public:
  void add(std::string field, std::string problem) {
    list_.push_back({std::move(field), std::move(problem)});
  }

  void name(const std::string& field, std::string_view value, size_t min_length,
            size_t max_length) {
    if (value.size() < min_length || value.size() > max_length) {
      add(field, "must be " + std::to_string(min_length) + " to " + std::to_string(max_length) +
                   " characters long, got " + std::to_string(value.size()));
      return;
    }
    if (!std::all_of(value.begin(), value.end(), is_app_id_char))
      add(field, "must use only A-Z a-z 0-9 . _ -, got " + quoted(value));
  }

  template <size_t N>
  void choice(const std::string& field, std::string_view value,
              const std::array<std::string_view, N>& choices) {
    if (!one_of(value, choices))
      add(field, "must be one of " + choices_text(choices) + ", got " + quoted(value));
  }

  void range(const std::string& field, double value, double low, double high) {
    // Written so that NaN fails too.
    if (!(value >= low && value <= high))
      add(field,
          "must be between " + number(low) + " and " + number(high) + ", got " + number(value));
  }

  /// 0 (the default) or low..high.
  void zero_or_range(const std::string& field, uint64_t value, uint64_t low, uint64_t high) {
    if (value != 0 && (value < low || value > high))
      add(field, "must be 0 (the default) or between " + std::to_string(low) + " and " +
                   std::to_string(high) + ", got " + std::to_string(value));
  }

  void at_most(const std::string& field, uint64_t value, uint64_t high) {
    if (value > high)
      add(field, "must be at most " + std::to_string(high) + ", got " + std::to_string(value));
  }

  void places(const std::string& field,
              const google::protobuf::RepeatedPtrField<std::string>& names, bool countries) {
    for (int i = 0; i < names.size(); ++i) {
      const auto& name = names[i];
      if (countries) {
        if (!is_country_code(name)) {
          std::string problem =
            "must be an ISO 3166-1 alpha-2 country code in upper case (e.g. DE), got " +
            quoted(name);
          std::string upper = name;
          std::transform(upper.begin(), upper.end(), upper.begin(),
                         [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
          if (is_country_code(upper))
            problem += "; did you mean '" + upper + "'?";
          add(indexed(field, i), problem);
        }
      } else if (name.empty()) {
        add(indexed(field, i), "must not be empty (a node region, e.g. eu-west)");
      } else if (name.size() > max_region_length) {
        add(indexed(field, i), "must be at most " + std::to_string(max_region_length) +
                                 " characters long (as node regions are), got " +
                                 std::to_string(name.size()));
      }
    }
  }

  void secret(const std::string& field, std::string_view value) {
    // Never shown, not even in part: error messages end up in logs.
    if (value.size() < min_app_secret_length)
      add(field, "must be at least " + std::to_string(min_app_secret_length) +
                   " characters long, got " + std::to_string(value.size()));
  }

  std::vector<field_problem> take() { return std::move(list_); }

private:
  static std::string number(double value) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%g", value);
    return buffer;
  }

  std::vector<field_problem> list_;
};

std::string url_problem(std::string_view url) {
  if (url.size() > max_url_length)
    return "must be at most " + std::to_string(max_url_length) + " characters long";
  std::string_view rest;
  if (url.starts_with("http://"))
    rest = url.substr(7);
  else if (url.starts_with("https://"))
    rest = url.substr(8);
  else
    return "must start with http:// or https://, got " + quoted(url);
  auto authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.empty())
    return "has no host: " + quoted(url);
  if (authority.find('@') != std::string_view::npos)
    return "must not carry user information (put secrets in webhook.secret)";
  for (char c : url)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
      return "must not contain spaces or control characters";
  return {};
}

void check_keys(const cfg::AppConfig& app, problems& out) {
  if (app.keys().empty() && !app.allow_unauthenticated())
    out.add("keys", "an app needs an API key, or allow_unauthenticated: true (development only)");
  if (static_cast<size_t>(app.keys_size()) > max_live_keys)
    out.add("keys", "at most " + std::to_string(max_live_keys) +
                      " keys (the current one and the one it replaces), got " +
                      std::to_string(app.keys_size()));
  std::set<std::string_view> seen;
  for (int i = 0; i < app.keys_size(); ++i) {
    const auto& key = app.keys(i);
    const std::string path = indexed("keys", i);
    out.name(path + ".key_id", key.key_id(), min_key_id_length, max_key_id_length);
    if (!seen.insert(key.key_id()).second)
      out.add(path + ".key_id", "duplicate key_id " + quoted(key.key_id()));
    out.secret(path + ".secret", key.secret());
    if (key.expires_unix_ms() < 0)
      out.add(path + ".expires_unix_ms", "must not be negative");
    if (key.created_unix_ms() < 0)
      out.add(path + ".created_unix_ms", "must not be negative");
  }
}

void check_roles(const cfg::AppConfig& app, problems& out) {
  std::set<std::string_view> seen;
  for (int i = 0; i < app.roles_size(); ++i) {
    const auto& role = app.roles(i);
    const std::string path = indexed("roles", i);
    out.choice(path + ".role", role.role(), role_names);
    if (!seen.insert(role.role()).second)
      out.add(path + ".role", "role " + quoted(role.role()) + " is listed twice");
    std::set<std::string_view> kinds;
    for (int j = 0; j < role.publish_size(); ++j) {
      out.choice(indexed(path + ".publish", j), role.publish(j), media_kinds);
      if (!kinds.insert(role.publish(j)).second)
        out.add(indexed(path + ".publish", j), "listed twice");
    }
    out.at_most(path + ".max_per_room", role.max_per_room(), max_room_size_limit);
  }
  if (app.admission() == "host" && !app.roles().empty() &&
      std::none_of(app.roles().begin(), app.roles().end(),
                   [](const cfg::RolePolicy& role) { return role.role() == "host"; }))
    out.add("admission", "\"host\" needs the host role, which roles does not list");
}

void check_hooks(const cfg::HookConfig& hooks, problems& out) {
  if (!hooks.script().empty() && !hooks.script_file().empty())
    out.add("hooks.script_file", "give script or script_file, not both");
  if (hooks.script().size() > max_hook_script_bytes)
    out.add("hooks.script", "must be at most " + std::to_string(max_hook_script_bytes) +
                              " bytes, got " + std::to_string(hooks.script().size()));
  out.zero_or_range("hooks.max_instructions", hooks.max_instructions(), min_hook_instructions,
                    max_hook_instructions);
  out.zero_or_range("hooks.max_memory_kib", hooks.max_memory_kib(), min_hook_memory_kib,
                    max_hook_memory_kib);
  out.zero_or_range("hooks.max_time_ms", hooks.max_time_ms(), 1, max_hook_time_ms);
}

void check_webhook(const cfg::WebhookConfig& webhook, problems& out) {
  if (webhook.url().empty()) {
    if (!webhook.secret().empty() || !webhook.events().empty() || webhook.max_attempts() != 0)
      out.add("webhook.url", "must be set when other webhook fields are");
    return;
  }
  if (auto problem = url_problem(webhook.url()); !problem.empty())
    out.add("webhook.url", problem);
  out.secret("webhook.secret", webhook.secret());
  for (int i = 0; i < webhook.events_size(); ++i)
    out.choice(indexed("webhook.events", i), webhook.events(i), webhook_events);
  out.at_most("webhook.max_attempts", webhook.max_attempts(), max_webhook_attempts);
}

/// Media the profile lets anyone send.
bool profile_allows(std::string_view profile, std::string_view kind) {
  if (profile == "audio_only")
    return kind == "audio";
  if (profile == "video")
    return kind == "audio" || kind == "video";
  return true; // screen_share
}

/// What a role sends when the app does not say: hosts, presenters and participants all the
/// profile allows, viewers nothing.
std::vector<std::string> default_publish(std::string_view role, std::string_view profile) {
  std::vector<std::string> kinds;
  if (role == "viewer")
    return kinds;
  for (auto kind : media_kinds)
    if (profile_allows(profile, kind))
      kinds.emplace_back(kind);
  return kinds;
}

allocation::priority_class priority_of(std::string_view name) {
  if (name == "high")
    return allocation::priority_class::high;
  if (name == "low")
    return allocation::priority_class::low;
  return allocation::priority_class::normal;
}

std::string random_text(size_t length, std::string_view alphabet) {
  std::string bytes(length, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(length)) != 1)
    throw std::runtime_error("OpenSSL RAND_bytes failed: no randomness for a new API key");
  std::string out;
  out.reserve(length);
  // Alphabets of 32 and 64 characters divide 256: no modulo bias.
  for (unsigned char byte : bytes)
    out += alphabet[byte % alphabet.size()];
  return out;
}

} // namespace

// A value as it appears in a message: quoted, escaped, and cut short so that a stray
// multi-line block does not flood the terminal.
std::string quoted(std::string_view text) {
  constexpr std::size_t max_shown = 60;
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size() && i < max_shown; ++i) {
    const char c = text[i];
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\x%02x", static_cast<unsigned char>(c));
      out += buffer;
    } else {
      out += c;
    }
  }
  if (text.size() > max_shown)
    out += "...";
  out += '"';
  return out;
}

void apply_app_defaults(cfg::AppConfig& app) {
  if (app.strategy().empty())
    app.set_strategy("balanced");
  if (app.media_profile().empty())
    app.set_media_profile("video");
  if (app.priority().empty())
    app.set_priority("normal");
  if (app.admission().empty())
    app.set_admission("open");
}

std::vector<field_problem> app_problems(const cfg::AppConfig& original) {
  cfg::AppConfig app = original;
  apply_app_defaults(app);
  problems out;
  out.name("app_id", app.app_id(), 1, max_app_id_length);
  out.choice("strategy", app.strategy(),
             std::array<std::string_view, 3>{"latency", "balanced", "pack"});
  out.places("allowed_regions", app.allowed_regions(), false);
  out.places("allowed_countries", app.allowed_countries(), true);
  out.places("denied_regions", app.denied_regions(), false);
  out.places("denied_countries", app.denied_countries(), true);
  check_keys(app, out);
  out.at_most("max_room_size", app.max_room_size(), max_room_size_limit);
  out.choice("media_profile", app.media_profile(), media_profiles);
  out.choice("priority", app.priority(), priorities);
  out.choice("admission", app.admission(), admissions);
  check_roles(app, out);
  std::string feature_problem;
  if (!allocation::parse_features({app.required_features().begin(), app.required_features().end()},
                                  feature_problem))
    out.add("required_features", feature_problem);
  out.range("weights.load_ms", app.weights().load_ms(), 0, max_load_weight_ms);
  out.range("weights.health", app.weights().health(), 0, max_health_weight);
  out.at_most("latency_budget_ms", app.latency_budget_ms(), max_latency_budget_ms);
  out.at_most("cascade.max_room_nodes", app.cascade().max_room_nodes(), max_cascade_setting);
  out.at_most("cascade.max_relay_depth", app.cascade().max_relay_depth(), max_cascade_setting);
  out.at_most("cascade.fan_out_after", app.cascade().fan_out_after(), max_room_size_limit);
  out.zero_or_range("lease_ttl_ms", app.lease_ttl_ms(), min_lease_ttl_ms, max_lease_ttl_ms);
  out.at_most("quotas.max_rooms", app.quotas().max_rooms(), max_room_size_limit);
  out.at_most("quotas.max_participants", app.quotas().max_participants(),
              100 * max_room_size_limit);
  out.range("quotas.allocations_per_second", app.quotas().allocations_per_second(), 0,
            max_allocation_rate);
  out.at_most("quotas.allocation_burst", app.quotas().allocation_burst(), max_room_size_limit);
  check_hooks(app.hooks(), out);
  check_webhook(app.webhook(), out);
  if (app.description().size() > max_description_length)
    out.add("description", "must be at most " + std::to_string(max_description_length) +
                             " characters long, got " + std::to_string(app.description().size()));
  return out.take();
}

const role_rules* app_definition::role(std::string_view name) const {
  auto it = roles.find(name);
  return it == roles.end() ? nullptr : &it->second;
}

std::shared_ptr<const app_definition> compile_app(cfg::AppConfig app, std::string hook_script) {
  apply_app_defaults(app);
  auto out = std::make_shared<app_definition>();
  auto& policy = out->placement;
  policy.app_id = app.app_id();
  policy.placement_strategy =
    allocation::parse_strategy(app.strategy()).value_or(allocation::strategy::balanced);
  policy.allowed_regions = {app.allowed_regions().begin(), app.allowed_regions().end()};
  policy.allowed_countries = {app.allowed_countries().begin(), app.allowed_countries().end()};
  policy.denied_regions = {app.denied_regions().begin(), app.denied_regions().end()};
  policy.denied_countries = {app.denied_countries().begin(), app.denied_countries().end()};
  policy.load_weight_ms = app.weights().load_ms();
  policy.health_weight = app.weights().health() > 0 ? app.weights().health() : 1.0;
  policy.latency_budget_ms = app.latency_budget_ms();
  policy.priority = priority_of(app.priority());
  policy.max_room_nodes = app.cascade().max_room_nodes();
  policy.fan_out_after = app.cascade().fan_out_after();
  policy.max_relay_depth = app.cascade().max_relay_depth();
  std::string ignored;
  out->required_features =
    allocation::parse_features({app.required_features().begin(), app.required_features().end()},
                               ignored)
      .value_or(allocation::feature_needs{});
  for (auto name : role_names) {
    role_rules rules;
    rules.publish = default_publish(name, app.media_profile());
    rules.allowed = app.roles().empty();
    out->roles.emplace(std::string{name}, std::move(rules));
  }
  for (const auto& role : app.roles()) {
    auto& rules = out->roles[role.role()];
    rules.allowed = true;
    rules.publish.clear();
    for (const auto& kind : role.publish())
      if (profile_allows(app.media_profile(), kind))
        rules.publish.push_back(kind);
    rules.max_per_room = role.max_per_room();
    rules.spread = role.spread();
  }
  out->lease_ttl = std::chrono::milliseconds{app.lease_ttl_ms()};
  out->hook_script = app.hooks().script().empty() ? std::move(hook_script) : app.hooks().script();
  out->config = std::move(app);
  return out;
}

cfg::AppConfig redacted(cfg::AppConfig app) {
  for (auto& key : *app.mutable_keys())
    key.clear_secret();
  app.mutable_webhook()->clear_secret();
  return app;
}

cfg::AppKey make_app_key(int64_t now_unix_ms) {
  cfg::AppKey key;
  key.set_key_id("ck_" + random_text(16, "abcdefghijklmnopqrstuvwxyz234567"));
  key.set_secret(
    random_text(43, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"));
  key.set_created_unix_ms(now_unix_ms);
  return key;
}

size_t live_keys(const cfg::AppConfig& app, int64_t now_unix_ms) {
  return std::count_if(app.keys().begin(), app.keys().end(), [&](const cfg::AppKey& key) {
    return key.expires_unix_ms() == 0 || key.expires_unix_ms() > now_unix_ms;
  });
}

} // namespace chroom::apps
