#pragma once

// Protobuf messages that travel between actors of one peer. CAF 0.17 wants an inspect()
// for every message type; protobuf types have none, and between local actors they are
// moved, never serialized, so they are allowed as they are. (Messages that cross peers
// are serialized protobuf bytes instead.)

#include "chroom/admin/v1/admin_service.pb.h"
#include "chroom/medianode/v1/media_node.pb.h"

#include <caf/allowed_unsafe_message_type.hpp>

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::medianode::v1::Register)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::medianode::v1::Stats)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::medianode::v1::Command)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::medianode::v1::Event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::admin::v1::NodeInfo)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::admin::v1::NodeEvent)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::admin::v1::ListNodesRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(chroom::admin::v1::ListNodesResponse)
