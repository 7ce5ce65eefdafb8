#pragma once

// The dashboard page (dashboard/src, bundled by esbuild at build time) embedded in the
// binary: the admin HTTP server serves these bytes, so the page needs no files at run time
// and no internet (docs/dashboard.md).

#include <string_view>

namespace chroom::dashboard {

/// One bundled file. All three views point into static storage: they live as long as the
/// process.
struct asset {
  /// URL path: "/index.html", "/assets/app.js", "/assets/app.css".
  std::string_view path;
  /// The Content-Type to answer with, e.g. "text/javascript; charset=utf-8".
  std::string_view content_type;
  /// The file's bytes.
  std::string_view body;
};

/// The bundled file at `path` ("/" means "/index.html"); null if none. `path` is the URL
/// path alone: the caller strips any query string.
const asset* find_asset(std::string_view path);

} // namespace chroom::dashboard
