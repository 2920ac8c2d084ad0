"""Live streams over WebSocket (`/ws/v1`, docs/streams.md): the consumer, the engine's
publisher and the relay between them."""
