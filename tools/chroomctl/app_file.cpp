#include "tools/chroomctl/app_file.hpp"

#include "daemon/config.hpp"

#include <google/protobuf/util/json_util.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <stdexcept>

namespace chroom::ctl {

namespace {

std::string read_text(const std::string& path) {
  if (path == "-")
    return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error(path + ": cannot read (" + std::strerror(errno) + ")");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

bool looks_like_json(const std::string& path, const std::string& text) {
  if (path.ends_with(".json"))
    return true;
  if (path.ends_with(".yaml") || path.ends_with(".yml"))
    return false;
  auto first = text.find_first_not_of(" \t\r\n");
  return first != std::string::npos && text[first] == '{';
}

} // namespace

chroom::config::v1::AppConfig read_app_file(const std::string& path) {
  std::string name = path == "-" ? std::string("<stdin>") : path;
  std::string text = read_text(path);
  chroom::config::v1::AppConfig app;
  if (!looks_like_json(path, text)) {
    if (text.find_first_not_of(" \t\r\n") == std::string::npos)
      throw std::runtime_error(name + ": empty: an app needs at least app_id");
    try {
      // The config file's own reader: the same keys, types and messages as an app in a
      // peer's config file.
      daemon::decode_yaml(text, name, app);
    } catch (const daemon::config_error& e) {
      throw std::runtime_error(e.what());
    }
    return app;
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(text, &app, options);
  if (!status.ok())
    throw std::runtime_error(name + ": " + std::string(status.message()));
  return app;
}

} // namespace chroom::ctl
