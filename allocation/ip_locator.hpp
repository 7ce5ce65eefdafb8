#pragma once

// Where a client is when all we have is its IP address: the country, from a MaxMind GeoIP
// legacy country database (Debian's geoip-database: /usr/share/GeoIP/GeoIP.dat and
// GeoIPv6.dat), and a point for it, the population-weighted centre of that country
// (allocation/country_centres.inc). Country-level only: good enough to pick a continent and
// a region, which is what the RTT model needs when a client sends no point.

#include "allocation/geo.hpp"

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace chroom::allocation {

/// A located address.
struct located_ip {
  /// ISO 3166-1 alpha-2, upper case ("DE").
  std::string country;
  /// Where the country's people are, on average (not its geometric middle).
  geo_point point;
};

/// Looks IP addresses up in the country databases. Open once, then locate() may be called
/// from any number of threads at once.
class ip_locator {
public:
  /// Locates nothing until open() succeeds.
  ip_locator();
  ~ip_locator();
  ip_locator(ip_locator&&) noexcept;
  ip_locator& operator=(ip_locator&&) noexcept;
  ip_locator(const ip_locator&) = delete;
  ip_locator& operator=(const ip_locator&) = delete;

  /// Loads the IPv4 country database at `ipv4_path` into memory and, when `ipv6_path` is not
  /// empty, the IPv6 one at that path. Returns why it failed (a message naming the file and
  /// the reason, for the daemon's log), or nothing on success. On failure nothing is
  /// loaded: the locator locates nothing (a database loaded before is dropped). Not to be
  /// called while other threads use locate().
  std::optional<std::string> open(const std::string& ipv4_path, const std::string& ipv6_path = {});

  /// The IPv6 database geoip-database installs beside `ipv4_path` (GeoIPv6.dat in the same
  /// directory) when that file exists, else empty: the argument for open()'s `ipv6_path`.
  static std::string ipv6_database_beside(const std::string& ipv4_path);

  /// True once open() succeeded.
  bool is_open() const;
  /// True when IPv6 addresses (other than IPv4-mapped ones) can be located.
  bool has_ipv6() const;

  /// The country of `ip` (an IPv4 dotted quad or an IPv6 address, as inet_pton reads them;
  /// an IPv4-mapped IPv6 address counts as IPv4) and its centre. Nothing for text that is
  /// not an address, for addresses that are not public (private, loopback, link-local,
  /// carrier-grade NAT, documentation, multicast, reserved), for addresses the database
  /// does not place in a country (or places in a pseudo-country: anonymous proxies,
  /// satellite providers, "EU"/"AP"), and before open().
  std::optional<located_ip> locate(std::string_view ip) const;

  /// True when `ip` is an IPv4 or IPv6 address in inet_pton's syntax (no port, no
  /// brackets, no zone), public or not: for INVALID_ARGUMENT decisions upstream.
  static bool valid_ip(std::string_view ip);

  /// The population-weighted centre of the country with ISO 3166-1 alpha-2 code `country`
  /// (upper case), or nothing for an unknown code.
  static std::optional<geo_point> country_centre(std::string_view country);

private:
  struct databases;
  std::unique_ptr<databases> databases_;
};

} // namespace chroom::allocation
