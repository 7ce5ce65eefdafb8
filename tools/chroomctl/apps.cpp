// chroomctl apps list|get|create|rotate-key|delete|reload
#include <ostream>

#include <google/protobuf/util/json_util.h>

#include "tools/chroomctl/app_file.hpp"
#include "tools/chroomctl/commands.hpp"
#include "tools/chroomctl/output.hpp"

namespace chroom::ctl {

namespace {

namespace v1 = chroom::admin::v1;
using stub = admin_client::stub;

std::string auth_text(const config::v1::AppConfig& app) {
  std::string text = std::to_string(app.keys_size()) + (app.keys_size() == 1 ? " key" : " keys");
  if (app.allow_unauthenticated())
    text += ", open";
  return text;
}

std::string or_default(const std::string& value, const char* fallback) {
  return value.empty() ? std::string(fallback) : value;
}

void print_app_details(std::ostream& out, const v1::App& app) {
  const auto& config = app.config();
  field_list fields;
  fields.add("App", config.app_id());
  fields.add("Source", app.source());
  fields.add("Description", config.description());
  fields.add("Strategy", or_default(config.strategy(), "balanced (default)"));
  fields.add("Media profile", or_default(config.media_profile(), "video (default)"));
  fields.add("Priority", or_default(config.priority(), "normal (default)"));
  fields.add("Admission", or_default(config.admission(), "open (default)"));
  fields.add("Credentials", auth_text(config));
  fields.add("Updated", human_time(app.updated_unix_ms()) + " by " + app.updated_by());
  fields.print(out);
  if (config.keys_size() > 0) {
    out << '\n';
    table keys({"key id", "created", "expires"});
    for (const auto& key : config.keys())
      keys.add_row({key.key_id(), human_time(key.created_unix_ms()),
                    key.expires_unix_ms() ? human_time(key.expires_unix_ms()) + " (" +
                                              human_age(key.expires_unix_ms()) + ")"
                                          : std::string("never")});
    keys.print(out, true);
  }
  // Everything else: the whole definition, as `apps create -f` reads it.
  config::v1::AppConfig rest = config;
  rest.clear_keys();
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(rest, &json, options);
  out << "\nConfiguration (secrets and keys left out):\n" << json;
}

// The secret of a key the peer just made: printed once, with a warning on stderr.
void print_new_key(command_context& context, const config::v1::AppKey& key,
                   const std::string& app_id) {
  if (context.format == output_format::table) {
    field_list fields;
    fields.add("Key id", key.key_id());
    fields.add("Secret", key.secret());
    fields.print(*context.out);
  }
  if (context.format == output_format::name)
    *context.err << "warning: the secret of the new key " << key.key_id() << " of " << app_id
                 << " is not printed with -o name and can never be shown again; use -o table "
                    "or -o json to see a new key's secret\n";
  else
    *context.err << "warning: store this secret now: it is shown only this once, the peer cannot "
                    "show it again\n";
}

} // namespace

int run_apps_list(command_context& context, const invocation&) {
  auto reply = context.client().call("ListApps", &stub::ListApps, v1::ListAppsRequest{});
  auto& out = *context.out;
  if (context.format == output_format::json) {
    print_json(out, reply);
    return exit_ok;
  }
  if (context.format == output_format::name) {
    for (const auto& app : reply.apps())
      out << app.config().app_id() << '\n';
    return exit_ok;
  }
  table rows({"app", "source", "strategy", "credentials", "updated", "by", "description"});
  for (const auto& app : reply.apps())
    rows.add_row({app.config().app_id(), app.source(),
                  or_default(app.config().strategy(), "balanced"), auth_text(app.config()),
                  human_age(app.updated_unix_ms()), app.updated_by(), app.config().description()});
  if (rows.empty() && context.headers)
    *context.err << "no apps\n";
  else
    rows.print(out, context.headers);
  return exit_ok;
}

int run_apps_get(command_context& context, const invocation& call) {
  v1::GetAppRequest request;
  request.set_app_id(call.args[0]);
  auto reply = context.client().call("GetApp", &stub::GetApp, request, app_hints());
  if (context.format == output_format::json)
    print_json(*context.out, reply);
  else if (context.format == output_format::name)
    *context.out << reply.app().config().app_id() << '\n';
  else
    print_app_details(*context.out, reply.app());
  return exit_ok;
}

int run_apps_create(command_context& context, const invocation& call) {
  if (!call.has("--file"))
    throw usage_error("`chroomctl apps create` needs -f FILE", call.command);
  v1::CreateAppRequest request;
  try {
    *request.mutable_app() = read_app_file(call.value("--file"));
  } catch (const std::runtime_error& error) {
    throw usage_error(error.what(), call.command);
  }
  auto reply = context.client().call("CreateApp", &stub::CreateApp, request, app_hints());
  const auto& app_id = reply.app().config().app_id();
  if (context.format == output_format::json)
    print_json(*context.out, reply);
  else if (context.format == output_format::name)
    *context.out << app_id << '\n';
  else
    *context.out << "app " << app_id << " created (" << auth_text(reply.app().config()) << ")\n";
  if (!reply.key().secret().empty())
    print_new_key(context, reply.key(), app_id);
  return exit_ok;
}

int run_apps_rotate_key(command_context& context, const invocation& call) {
  v1::RotateAppKeyRequest request;
  request.set_app_id(call.args[0]);
  if (call.has("--grace-ms"))
    request.set_grace_ms(parse_uint32_flag(call, "--grace-ms"));
  auto reply = context.client().call("RotateAppKey", &stub::RotateAppKey, request, app_hints());
  const auto& app_id = reply.app().config().app_id();
  if (context.format == output_format::json) {
    print_json(*context.out, reply);
  } else if (context.format == output_format::name) {
    *context.out << reply.key().key_id() << '\n';
  } else {
    *context.out << "app " << app_id << ": new key " << reply.key().key_id() << '\n';
    for (const auto& key : reply.app().config().keys())
      if (key.key_id() != reply.key().key_id() && key.expires_unix_ms() != 0)
        *context.out << "the previous key " << key.key_id() << " works until "
                     << human_time(key.expires_unix_ms()) << '\n';
  }
  print_new_key(context, reply.key(), app_id);
  return exit_ok;
}

int run_apps_delete(command_context& context, const invocation& call) {
  v1::DeleteAppRequest request;
  request.set_app_id(call.args[0]);
  auto reply = context.client().call("DeleteApp", &stub::DeleteApp, request, app_hints());
  if (context.format == output_format::json)
    print_json(*context.out, reply);
  else if (context.format == output_format::name)
    *context.out << request.app_id() << '\n';
  else
    *context.out << "app " << request.app_id() << " deleted\n";
  return exit_ok;
}

int run_apps_reload(command_context& context, const invocation&) {
  auto reply = context.client().call("ReloadApps", &stub::ReloadApps, v1::ReloadAppsRequest{});
  auto& out = *context.out;
  if (context.format == output_format::json) {
    print_json(out, reply);
    return exit_ok;
  }
  struct change {
    const char* what;
    const google::protobuf::RepeatedPtrField<std::string>& ids;
  };
  const change changes[] = {{"created", reply.created()},
                            {"updated", reply.updated()},
                            {"deleted", reply.deleted()},
                            {"unchanged", reply.unchanged()}};
  if (context.format == output_format::name) {
    for (const auto& [what, ids] : changes)
      if (std::string_view(what) != "unchanged")
        for (const auto& id : ids)
          out << id << '\n';
    return exit_ok;
  }
  table rows({"app", "change"});
  for (const auto& [what, ids] : changes)
    for (const auto& id : ids)
      rows.add_row({id, what});
  if (rows.empty() && context.headers)
    *context.err << "the config file lists no apps\n";
  else
    rows.print(out, context.headers);
  return exit_ok;
}

} // namespace chroom::ctl
