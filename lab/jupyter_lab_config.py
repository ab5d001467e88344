# JupyterLab for the kit's chapters (`make lab`, and tests/test_lab_browser.py): offline and quiet.
from pathlib import Path

c = get_config()  # noqa: F821 (traitlets provides it)

c.ServerApp.allow_root = True                  # containers and CI run as root
c.LabApp.news_url = None                       # no news feed ...
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"   # ... no update check,
c.LabApp.extension_manager = "readonly"        # ... no extension search on PyPI: nothing leaves the machine
c.LabApp.app_settings_dir = str(Path(__file__).resolve().parent / "settings")   # settings/overrides.json
