#include "transport/node_credentials.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace chroom::transport {

std::string node_credentials::derive_secret(std::string_view key, std::string_view node_id) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(node_id.data()), node_id.size(), digest, &length);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 0xF]);
  }
  return out;
}

bool node_credentials::knows(std::string_view node_id) const {
  return secrets_.count(node_id) > 0 || !secret_key_.empty();
}

std::string node_credentials::secret_of(std::string_view node_id) const {
  if (auto it = secrets_.find(node_id); it != secrets_.end())
    return it->second;
  if (!secret_key_.empty())
    return derive_secret(secret_key_, node_id);
  return {};
}

bool node_credentials::verify(std::string_view node_id, std::string_view credential) const {
  std::string expected = secret_of(node_id);
  if (expected.empty())
    return false;
  if (expected.size() != credential.size())
    return false;
  return CRYPTO_memcmp(expected.data(), credential.data(), expected.size()) == 0;
}

} // namespace chroom::transport
