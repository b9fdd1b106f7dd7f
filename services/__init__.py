"""What the device does, hardware-free: Call API, signaling, media, intercom and UI."""
