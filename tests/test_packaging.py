"""A non-editable install (the Dockerfile's `pip install .`) carries every file the gateway serves."""
import subprocess
import sys
import zipfile

from harness import ROOT


def test_wheel_holds_banner_dashboard_and_translations(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("consentgate-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for pattern in
                ("banner/*.js", "banner/*.css", "banner/i18n/*.json", "gateway/dashboard/static/*")
                for p in ROOT.glob(pattern)}
    assert expected and expected <= names, sorted(expected - names)
    assert not any(n.startswith(("tests/", "bench/", "node_modules/")) for n in names)
