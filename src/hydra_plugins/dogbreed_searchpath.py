"""Hydra finds the config groups that ship inside the dogbreed package (dogbreed/conf: the rules group).

A library's configs reach Hydra's search path through a SearchPathPlugin (Hydra's plugin discovery imports
every module of the `hydra_plugins` namespace package): `hydra.searchpath` would have to be set in each
primary config, and train.yaml cannot carry it because tune.yaml includes it. Appended last, so an
application's own configs always win.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class DogbreedSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="dogbreed", path="pkg://dogbreed.conf")
