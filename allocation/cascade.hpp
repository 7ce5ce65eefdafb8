#pragma once

// Cascade planning: the relays that link the nodes a room spans. The links form a tree
// (every part reachable, no loops that would echo media), grown by attaching each new part
// to the existing part nearest to it (placement decides which), and mended when a part
// leaves: its links are detached and the parts it connected are joined again by the
// shortest links among them (Prim's algorithm over the orphaned neighbours).

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace chroom::allocation {

/// A relay between two nodes of a room; `a` < `b`.
struct relay_link {
  std::string a;
  std::string b;

  relay_link() = default;
  relay_link(std::string x, std::string y);
  bool touches(std::string_view node) const { return a == node || b == node; }
  /// The end that is not `node`.
  const std::string& other(std::string_view node) const { return a == node ? b : a; }
  bool operator==(const relay_link&) const = default;
};

/// Relays to set up and tear down.
struct relay_changes {
  std::vector<relay_link> attach;
  std::vector<relay_link> detach;
};

class relay_tree {
public:
  /// Round trip between two nodes, milliseconds (placement's node_rtt_ms).
  using rtt_function = std::function<double(const std::string&, const std::string&)>;

  /// Adds `node`, linked to `link_to` when that is a node of the tree, else (placement
  /// chose a part that left meanwhile, or none) to the node nearest by `rtt` (without
  /// `rtt`: the first node), so the tree stays one piece. The first node has no link.
  /// Returns the link to attach, if any.
  relay_changes add(const std::string& node, const std::string& link_to = {},
                    const rtt_function& rtt = {});

  /// Removes `node` and mends the tree among the nodes it linked.
  relay_changes remove(const std::string& node, const rtt_function& rtt);

  bool contains(std::string_view node) const;
  /// Nodes linked to `node`.
  std::vector<std::string> neighbours(std::string_view node) const;
  const std::vector<relay_link>& links() const { return links_; }
  const std::vector<std::string>& nodes() const { return nodes_; }

private:
  std::vector<std::string> nodes_;
  std::vector<relay_link> links_;
};

} // namespace chroom::allocation
