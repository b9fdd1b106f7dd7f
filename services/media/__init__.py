"""Media sessions on aiortc: HAL sources -> tracks -> peer connection -> HAL sinks."""
