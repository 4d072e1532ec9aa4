"""WebSocket proxying: the upgrade handshake upstream, the tunnel that carries the frames
afterwards, and the few frame rules the gateway needs (a close on shutdown, idle pings)."""
