"""Every package folder ships: setup.cfg lists packages by hand (a missing one is absent from a wheel install)."""

import configparser
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_package_folder_is_listed_in_setup_cfg():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    listed = set(config["options"]["packages"].split())
    mapped = {
        "mftlab": "mftlab",
        "analysis": "mftlab.analysis",
        "recipes": "mftlab.recipes",
        "figures": "mftlab.figures",
        "cli": "mftlab.cli",
    }
    found = set()
    for top, name in mapped.items():
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            if "__init__.py" in files:
                rel = os.path.relpath(folder, os.path.join(ROOT, top))
                found.add(name if rel == "." else f"{name}.{rel.replace(os.sep, '.')}")
    assert found - listed == set(), "add these to [options] packages in setup.cfg"
