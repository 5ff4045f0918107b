"""setup.cfg lists its packages by hand: every package in the tree must be there, or a non-editable install
(``pip install .``) silently leaves it out and ``import`` fails only on the user's machine."""
import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed_in_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = {line.strip() for line in cfg["options"]["packages"].splitlines() if line.strip()}
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "tinyconv").rglob("__init__.py")}
    found |= {"tinyconv_kernels"} if (ROOT / "kernels" / "__init__.py").exists() else set()
    assert found - listed == set(), f"packages missing from setup.cfg [options] packages: {sorted(found - listed)}"
    assert listed - found == set(), f"setup.cfg lists packages that do not exist: {sorted(listed - found)}"
