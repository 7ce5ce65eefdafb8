// Tests of allocation/ip_locator.hpp against Debian's geoip-database (a 2019 snapshot,
// pinned by the package, so the countries below do not drift). Tests that need the
// database print a message and pass when it is not installed.
#include "allocation/ip_locator.hpp"

#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

namespace {

using chroom::allocation::geo_point;
using chroom::allocation::ip_locator;

constexpr const char* ipv4_database = "/usr/share/GeoIP/GeoIP.dat";
constexpr const char* ipv6_database = "/usr/share/GeoIP/GeoIPv6.dat";

bool readable(const char* path) {
  return ::access(path, R_OK) == 0;
}

// The locator with both databases, or nothing (with a message) when they are absent.
std::optional<ip_locator> open_locator() {
  if (!readable(ipv4_database)) {
    MESSAGE("skipped: ", ipv4_database, " is not installed (Debian package geoip-database)");
    return std::nullopt;
  }
  ip_locator locator;
  const auto error = locator.open(ipv4_database, ip_locator::ipv6_database_beside(ipv4_database));
  REQUIRE_MESSAGE(!error, *error);
  return locator;
}

std::string country_of(const ip_locator& locator, std::string_view ip) {
  const auto located = locator.locate(ip);
  return located ? located->country : "<none>";
}

// A file in the temp directory, removed at scope exit.
class temp_file {
public:
  temp_file(std::string_view stem, std::string_view contents)
      : path_(std::filesystem::temp_directory_path() /
              ("chroom-ip-locator-test-" + std::to_string(::getpid()) + "-" + std::string(stem))) {
    std::ofstream(path_, std::ios::binary) << contents;
  }
  ~temp_file() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;

  std::string path() const { return path_.string(); }

private:
  std::filesystem::path path_;
};

} // namespace

TEST_SUITE_BEGIN("ip_locator");

TEST_CASE("public addresses get their country and its centre") {
  auto locator = open_locator();
  if (!locator)
    return;
  // Operators whose address blocks have stayed in one country for decades (checked with
  // geoiplookup against the same database).
  CHECK(country_of(*locator, "193.0.6.139") == "NL");   // RIPE NCC, Amsterdam
  CHECK(country_of(*locator, "8.8.8.8") == "US");       // Google Public DNS
  CHECK(country_of(*locator, "80.156.86.78") == "DE");  // Deutsche Telekom
  CHECK(country_of(*locator, "133.242.0.1") == "JP");   // Sakura Internet
  CHECK(country_of(*locator, "200.160.2.3") == "BR");   // NIC.br
  CHECK(country_of(*locator, "212.58.244.20") == "GB"); // BBC

  const auto located = locator->locate("193.0.6.139");
  REQUIRE(located);
  const auto centre = ip_locator::country_centre("NL");
  REQUIRE(centre);
  CHECK(located->point.latitude_deg == centre->latitude_deg);
  CHECK(located->point.longitude_deg == centre->longitude_deg);

  SUBCASE("IPv4 inside IPv6: mapped (dual-stack sockets) and NAT64") {
    CHECK(country_of(*locator, "::ffff:193.0.6.139") == "NL");
    CHECK(country_of(*locator, "::ffff:c100:68b") == "NL");
    CHECK(country_of(*locator, "64:ff9b::193.0.6.139") == "NL");
    CHECK(country_of(*locator, "::ffff:10.0.0.1") == "<none>");
  }
  SUBCASE("IPv6, when GeoIPv6.dat is installed") {
    if (!locator->has_ipv6()) {
      MESSAGE("skipped: ", ipv6_database, " is not installed");
      return;
    }
    CHECK(country_of(*locator, "2001:4860:4860::8888") == "US");     // Google Public DNS
    CHECK(country_of(*locator, "2a00:1450:4001:81a::200e") == "DE"); // Google, Frankfurt
    CHECK(country_of(*locator, "2001:dc0:2001:11::194") == "AU");    // APNIC, Brisbane
  }
}

TEST_CASE("addresses that are not public are located nowhere") {
  auto locator = open_locator();
  if (!locator)
    return;
  for (const char* ip : {"10.1.2.3",
                         "172.16.0.1",
                         "172.31.255.255",
                         "192.168.1.1",
                         "127.0.0.1",
                         "127.255.0.1",
                         "169.254.10.20",
                         "100.64.0.1",
                         "0.0.0.0",
                         "255.255.255.255",
                         "224.0.0.251",
                         "240.0.0.1",
                         "192.0.2.1",
                         "198.51.100.7",
                         "203.0.113.9",
                         "198.18.0.1",
                         "::",
                         "::1",
                         "fe80::1",
                         "fc00::1",
                         "fd12:3456::1",
                         "ff02::1",
                         "2001:db8::1",
                         "::ffff:127.0.0.1",
                         "::ffff:192.168.0.1",
                         "64:ff9b::10.0.0.1",
                         "::10.0.0.1",
                         "100::1"}) {
    CAPTURE(ip);
    CHECK(ip_locator::valid_ip(ip));
    CHECK_FALSE(locator->locate(ip).has_value());
  }
}

TEST_CASE("text that is not an address is located nowhere, and is not valid") {
  auto locator = open_locator();
  for (const std::string& text :
       {std::string(), std::string(" "), std::string("garbage"), std::string("193.0.6"),
        std::string("193.0.6.139.1"), std::string("193.0.6.256"), std::string("193.0.6.139 "),
        std::string(" 193.0.6.139"), std::string("0x7f.0.0.1"), std::string("[::1]"),
        std::string("fe80::1%eth0"), std::string("193.0.6.139:443"), std::string(":::"),
        std::string("1:2:3:4:5:6:7:8:9"), std::string("193.0.6.139\0", 12), std::string(200, '1'),
        std::string("example.org")}) {
    CAPTURE(text);
    CHECK_FALSE(ip_locator::valid_ip(text));
    if (locator)
      CHECK_FALSE(locator->locate(text).has_value());
  }
  CHECK(ip_locator::valid_ip("193.0.6.139"));
  CHECK(ip_locator::valid_ip("2001:67c:2e8:22::c100:68b"));
  CHECK(ip_locator::valid_ip("::ffff:193.0.6.139"));
}

TEST_CASE("country centres") {
  // The centre of Germany lies within its bounding box.
  const auto de = ip_locator::country_centre("DE");
  REQUIRE(de);
  CHECK(de->latitude_deg > 47.27);
  CHECK(de->latitude_deg < 55.06);
  CHECK(de->longitude_deg > 5.87);
  CHECK(de->longitude_deg < 15.04);
  // Countries across the antimeridian: a mean of longitudes would put Fiji and Kiribati
  // near longitude 0, and Russia (with Chukotka) far from where its people live.
  const auto fj = ip_locator::country_centre("FJ");
  REQUIRE(fj);
  CHECK(fj->latitude_deg < -15);
  CHECK(fj->latitude_deg > -20);
  CHECK((fj->longitude_deg > 176 || fj->longitude_deg < -178));
  const auto ki = ip_locator::country_centre("KI");
  REQUIRE(ki);
  CHECK((ki->longitude_deg > 160 || ki->longitude_deg < -150));
  const auto ru = ip_locator::country_centre("RU");
  REQUIRE(ru);
  CHECK(ru->longitude_deg > 30);
  CHECK(ru->longitude_deg < 90);
  // The US centre of population is in the Midwest (Missouri), not in the Pacific.
  const auto us = ip_locator::country_centre("US");
  REQUIRE(us);
  CHECK(us->latitude_deg > 35);
  CHECK(us->latitude_deg < 42);
  CHECK(us->longitude_deg > -100);
  CHECK(us->longitude_deg < -85);

  CHECK_FALSE(ip_locator::country_centre("").has_value());
  CHECK_FALSE(ip_locator::country_centre("de").has_value());
  CHECK_FALSE(ip_locator::country_centre("XX").has_value());
  CHECK_FALSE(ip_locator::country_centre("EU").has_value());
  CHECK_FALSE(ip_locator::country_centre("DEU").has_value());
  CHECK(ip_locator::country_centre("AD").has_value()); // the first row
  CHECK(ip_locator::country_centre("ZW").has_value()); // the last row
}

TEST_CASE("open") {
  SUBCASE("before open, or after a failed one, nothing is located") {
    ip_locator locator;
    CHECK_FALSE(locator.is_open());
    CHECK_FALSE(locator.locate("193.0.6.139").has_value());
    const auto error = locator.open("/nonexistent/GeoIP.dat");
    REQUIRE(error);
    CHECK(*error ==
          "cannot open the IPv4 GeoIP database \"/nonexistent/GeoIP.dat\": No such file or "
          "directory");
    CHECK_FALSE(locator.is_open());
  }
  SUBCASE("a file that is not a database") {
    const temp_file text("not-a-database.dat", "this is not a GeoIP database\n");
    ip_locator locator;
    const auto error = locator.open(text.path());
    REQUIRE(error);
    CHECK(*error == "\"" + text.path() + "\" is not a GeoIP legacy database (or it is corrupt)");
  }
  SUBCASE("a database whose search tree points past the end of the file") {
    if (!readable(ipv4_database)) {
      MESSAGE("skipped: the GeoIP database is not installed");
      return;
    }
    std::ifstream in(ipv4_database, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(bytes.size() > 6);
    // The root's left record (3 bytes, little-endian): a node number far beyond the file,
    // yet below the first country id, so that a lookup would follow it.
    bytes[0] = '\xFE';
    bytes[1] = '\xFF';
    bytes[2] = '\x7F';
    const temp_file corrupt("corrupt.dat", bytes);
    ip_locator locator;
    const auto error = locator.open(corrupt.path());
    REQUIRE(error);
    CHECK(*error == "\"" + corrupt.path() + "\" is not a GeoIP legacy database (or it is corrupt)");
    CHECK_FALSE(locator.is_open());
  }
  SUBCASE("a directory") {
    ip_locator locator;
    const auto error = locator.open("/tmp");
    REQUIRE(error);
    CHECK(error->rfind("\"/tmp\"", 0) == 0);
  }
  SUBCASE("the IPv6 database is not an IPv4 one, nor the other way round") {
    if (!readable(ipv4_database) || !readable(ipv6_database)) {
      MESSAGE("skipped: the GeoIP databases are not installed");
      return;
    }
    ip_locator locator;
    auto error = locator.open(ipv6_database);
    REQUIRE(error);
    CHECK(error->find("is not an IPv4 country database") != std::string::npos);
    error = locator.open(ipv4_database, ipv4_database);
    REQUIRE(error);
    CHECK(error->find("is not an IPv6 country database") != std::string::npos);
    CHECK_FALSE(locator.is_open());
  }
  SUBCASE("IPv4 only: IPv6 addresses are located nowhere") {
    if (!readable(ipv4_database)) {
      MESSAGE("skipped: the GeoIP database is not installed");
      return;
    }
    ip_locator locator;
    REQUIRE_FALSE(locator.open(ipv4_database));
    CHECK(locator.is_open());
    CHECK_FALSE(locator.has_ipv6());
    CHECK(country_of(locator, "193.0.6.139") == "NL");
    CHECK(country_of(locator, "::ffff:193.0.6.139") == "NL");
    CHECK(country_of(locator, "2001:4860:4860::8888") == "<none>");
    // Moved, it still works.
    ip_locator moved = std::move(locator);
    CHECK(country_of(moved, "193.0.6.139") == "NL");
  }
  SUBCASE("ipv6_database_beside") {
    CHECK(ip_locator::ipv6_database_beside("/nonexistent/GeoIP.dat").empty());
    if (readable(ipv6_database))
      CHECK(ip_locator::ipv6_database_beside(ipv4_database) == ipv6_database);
  }
}

TEST_CASE("lookups from several threads at once agree") {
  auto locator = open_locator();
  if (!locator)
    return;
  const std::vector<std::pair<std::string, std::string>> expected = {
    {"193.0.6.139", "NL"}, {"8.8.8.8", "US"}, {"133.242.0.1", "JP"}, {"10.0.0.1", "<none>"}};
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const auto& [ip, country] = expected[static_cast<std::size_t>(i + t) % expected.size()];
        if (country_of(*locator, ip) != country)
          ++mismatches[static_cast<std::size_t>(t)];
      }
    });
  }
  for (auto& thread : threads)
    thread.join();
  CHECK(mismatches == std::vector<int>(4, 0));
}

TEST_SUITE_END();
