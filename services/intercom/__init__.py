"""The call service: HAL events -> Call API; ring groups, LEDs, relay, call log, snapshots."""
