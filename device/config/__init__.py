"""The unit's settings on disk: ``callbox.toml`` and the endpoint's identity keys.

The file is parsed and validated as a whole into a `CallboxConfig` (`load_config`,
`parse_config`; a refusal is a `ConfigError` naming the file, key and reason), changed in
place by `ConfigStore`, and each section declares how a change to it is applied by a
running daemon (`Apply`, `apply_of`, `config_keys`). The identity lives under the state directory
(`load_or_create_identity`).
"""

from device.config._apply import Apply
from device.config._errors import ConfigError
from device.config._file import (
    DEFAULT_CONFIG_PATH,
    FIRST_BOOT_PATH,
    CallboxConfig,
    apply_of,
    config_keys,
    load_config,
    parse_config,
)
from device.config._keystore import (
    KeystoreError,
    identity_path,
    keys_dir,
    load_or_create_identity,
    public_keys_of,
)
from device.config._models import DisplayConfig, Name
from device.config._panel import panel_settings
from device.config._rtsp import rtsp_password
from device.config._rules import MIN_DISPLAY_SIZE
from device.config._store import ConfigStore
from device.config._system import AdminConfig, UserName

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "FIRST_BOOT_PATH",
    "MIN_DISPLAY_SIZE",
    "AdminConfig",
    "Apply",
    "CallboxConfig",
    "ConfigError",
    "ConfigStore",
    "DisplayConfig",
    "KeystoreError",
    "Name",
    "UserName",
    "apply_of",
    "config_keys",
    "identity_path",
    "keys_dir",
    "load_config",
    "load_or_create_identity",
    "panel_settings",
    "parse_config",
    "public_keys_of",
    "rtsp_password",
]
