"""The config file: ``load_config()`` finds and validates config.yaml into a ``Config``.

``schema.py`` assembles the sections each layer owns (its table says which); ``loader.py``
finds the file and resolves paths relative to it. This package sits above every layer
whose section it assembles and below the service and the commands, its only users: a
driver never loads alert policies (docs/architecture.md, tests/test_rooms_layers.py).
"""

from .loader import LoadedConfig, find_config, load_config
from .schema import Config

__all__ = ["Config", "LoadedConfig", "find_config", "load_config"]
