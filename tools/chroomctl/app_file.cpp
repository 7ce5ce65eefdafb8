#include "tools/chroomctl/app_file.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include "tools/chroomctl/cli.hpp"

namespace chroom::ctl {

namespace {

namespace pb = google::protobuf;

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string lower(std::string text) {
  for (auto& c : text)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// YAML to the JSON of one message type, field by field: keys are checked against the
// message's fields (so a typo is reported at its line), scalars are typed by the field
// (`description: 123` stays a string, `max_room_size: "8"` a number).
class yaml_to_json {
public:
  explicit yaml_to_json(std::string file) : file_(std::move(file)) {}

  std::string message(const YAML::Node& node, const pb::Descriptor& type, const std::string& path) {
    if (!node.IsMap())
      fail(node, (path.empty() ? std::string("the file") : "'" + path + "'") +
                   " must be a mapping of " + type.name() + " fields");
    std::string out = "{";
    for (const auto& entry : node) {
      const YAML::Node& key_node = entry.first;
      std::string key = key_node.Scalar();
      std::string key_path = path.empty() ? key : path + "." + key;
      const pb::FieldDescriptor* field = type.FindFieldByName(key);
      if (!field)
        field = type.FindFieldByCamelcaseName(key);
      if (!field) {
        std::vector<std::string> names;
        for (int i = 0; i < type.field_count(); ++i)
          names.push_back(type.field(i)->name());
        std::vector<std::string_view> views(names.begin(), names.end());
        auto best = closest(key, views);
        fail(key_node,
             std::string("unknown key '") + key_path + "' (" + type.name() + " has no field '" +
               key + "'" +
               (best ? std::string("; did you mean '") + *best + "'?)" : std::string(")")));
      }
      const YAML::Node& value = entry.second;
      if (value.IsNull())
        continue;
      if (out.size() > 1)
        out += ',';
      out += json_string(field->name());
      out += ':';
      if (field->is_map())
        out += map(value, *field, key_path);
      else if (field->is_repeated())
        out += list(value, *field, key_path);
      else
        out += single(value, *field, key_path);
    }
    out += '}';
    return out;
  }

private:
  [[noreturn]] void fail(const YAML::Node& node, const std::string& what) const {
    auto mark = node.Mark();
    std::string where = file_;
    if (!mark.is_null()) {
      where += ':';
      where += std::to_string(mark.line + 1);
      where += ':';
      where += std::to_string(mark.column + 1);
    }
    throw std::runtime_error(where + ": " + what);
  }

  std::string list(const YAML::Node& node, const pb::FieldDescriptor& field,
                   const std::string& path) {
    if (!node.IsSequence())
      fail(node, std::string("'") + path + "' must be a list");
    std::string out = "[";
    for (std::size_t i = 0; i < node.size(); ++i) {
      if (i > 0)
        out += ',';
      out += single(node[i], field, path + "[" + std::to_string(i) + "]");
    }
    out += ']';
    return out;
  }

  std::string map(const YAML::Node& node, const pb::FieldDescriptor& field,
                  const std::string& path) {
    if (!node.IsMap())
      fail(node, std::string("'") + path + "' must be a mapping");
    const auto* value_field = field.message_type()->FindFieldByName("value");
    std::string out = "{";
    for (const auto& entry : node) {
      if (out.size() > 1)
        out += ',';
      out += json_string(entry.first.Scalar());
      out += ':';
      out += single(entry.second, *value_field, path + "." + entry.first.Scalar());
    }
    out += '}';
    return out;
  }

  std::string single(const YAML::Node& node, const pb::FieldDescriptor& field,
                     const std::string& path) {
    if (field.cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE)
      return message(node, *field.message_type(), path);
    if (!node.IsScalar())
      fail(node, std::string("'") + path + "' must be a single value, not a " +
                   (node.IsMap() ? "mapping" : "list"));
    const std::string& text = node.Scalar();
    switch (field.cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING:
        return json_string(text);
      case pb::FieldDescriptor::CPPTYPE_BOOL: {
        auto word = lower(text);
        if (word == "true" || word == "yes" || word == "on")
          return "true";
        if (word == "false" || word == "no" || word == "off")
          return "false";
        fail(node, std::string("'") + path + "' must be true or false, not '" + text + "'");
      }
      case pb::FieldDescriptor::CPPTYPE_INT32:
      case pb::FieldDescriptor::CPPTYPE_INT64:
      case pb::FieldDescriptor::CPPTYPE_UINT32:
      case pb::FieldDescriptor::CPPTYPE_UINT64: {
        bool is_signed = field.cpp_type() == pb::FieldDescriptor::CPPTYPE_INT32 ||
                         field.cpp_type() == pb::FieldDescriptor::CPPTYPE_INT64;
        std::size_t start = is_signed && !text.empty() && text[0] == '-' ? 1 : 0;
        bool digits =
          text.size() > start && text.find_first_not_of("0123456789", start) == std::string::npos;
        if (!digits)
          fail(node, std::string("'") + path + "' must be " +
                       (is_signed ? "an integer" : "a whole number") + ", not '" + text + "'");
        // 64-bit values as JSON strings: exact, whatever the JSON parser does with numbers.
        return json_string(text);
      }
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      case pb::FieldDescriptor::CPPTYPE_FLOAT: {
        char* end = nullptr;
        errno = 0;
        std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || errno != 0)
          fail(node, std::string("'") + path + "' must be a number, not '" + text + "'");
        return text;
      }
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        const auto* value = field.enum_type()->FindValueByName(text);
        if (!value) {
          std::string names;
          for (int i = 0; i < field.enum_type()->value_count(); ++i) {
            names += i ? ", " : "";
            names += field.enum_type()->value(i)->name();
          }
          fail(node,
               std::string("'") + path + "' must be one of " + names + ", not '" + text + "'");
        }
        return json_string(text);
      }
      default:
        fail(node, std::string("'") + path + "' has a type chroomctl cannot read");
    }
  }

  std::string file_;
};

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
  std::string json;
  if (looks_like_json(path, text)) {
    json = std::move(text);
  } else {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& error) {
      throw std::runtime_error(name + ":" + std::to_string(error.mark.line + 1) + ":" +
                               std::to_string(error.mark.column + 1) + ": not YAML: " + error.msg);
    }
    if (!root || root.IsNull())
      throw std::runtime_error(name + ": empty: an app needs at least app_id");
    json = yaml_to_json(name).message(root, *chroom::config::v1::AppConfig::descriptor(), "");
  }
  chroom::config::v1::AppConfig app;
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = pb::util::JsonStringToMessage(json, &app, options);
  if (!status.ok())
    throw std::runtime_error(name + ": " + std::string(status.message()));
  return app;
}

} // namespace chroom::ctl
