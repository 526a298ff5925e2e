"""Running dtesync as an operating-system service.

- `sd_notify`: the systemd notification protocol (READY=1, WATCHDOG=1) for Type=notify units.
- `windows`: the pywin32 Windows service and `dtesync service install|start|stop|remove`;
  the only module that touches pywin32, imported lazily so everything else runs on Linux.
- `linux`: what `dtesync service` says on Linux (systemd does the supervising there).
"""
