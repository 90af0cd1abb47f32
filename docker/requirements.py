"""Prints the requirements `pip install '.[EXTRAS]'` installs (pyproject.toml's dependencies and the named
extras), one a line: docker/build.sh gathers their wheels on the host when the build cannot reach an index."""

import sys
from pathlib import Path

import tomllib

project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
extras = [name for name in sys.argv[1].split(",") if name] if len(sys.argv) > 1 else []
requirements = list(project["dependencies"])
for extra in extras:
    requirements += project["optional-dependencies"][extra]
print("\n".join(requirements))
