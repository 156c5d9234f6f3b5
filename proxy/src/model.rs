//! Services + EndpointSlices + this node -> the desired IPVS virtual servers (pure).
